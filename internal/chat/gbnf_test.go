package chat

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// A small GBNF recognizer for tests: it checks that the grammars this
// package writes accept what they should and refuse what they should. It
// is not llama.cpp's parser; the real-engine test checks that llama.cpp
// accepts them too.

type gNode interface{}

type gAlt []gSeq
type gSeq []gItem
type gItem struct {
	atom     gNode
	min, max int // max < 0: unbounded
}
type gLit []rune
type gRef string
type gClass struct {
	neg    bool
	ranges [][2]rune
}

type gGrammar struct {
	rules map[string]gAlt
	memo  map[string][]int
	in    []rune
}

func parseGBNF(t *testing.T, src string) *gGrammar {
	t.Helper()
	p := &gParser{src: []rune(src)}
	g := &gGrammar{rules: map[string]gAlt{}}
	for {
		p.skip()
		if p.eof() {
			break
		}
		name := p.ident()
		if name == "" {
			t.Fatalf("grammar: rule name expected at %q", p.rest())
		}
		p.skip()
		if !p.take("::=") {
			t.Fatalf("grammar: ::= expected after %s", name)
		}
		alt, err := p.alt()
		if err != nil {
			t.Fatalf("grammar: rule %s: %v", name, err)
		}
		if _, dup := g.rules[name]; dup {
			t.Fatalf("grammar: rule %s defined twice", name)
		}
		g.rules[name] = alt
	}
	// Every reference must resolve.
	var check func(n gNode)
	check = func(n gNode) {
		switch n := n.(type) {
		case gAlt:
			for _, s := range n {
				for _, it := range s {
					check(it.atom)
				}
			}
		case gRef:
			if _, ok := g.rules[string(n)]; !ok {
				t.Fatalf("grammar: undefined rule %s", n)
			}
		}
	}
	for _, a := range g.rules {
		check(a)
	}
	if _, ok := g.rules["root"]; !ok {
		t.Fatal("grammar: no root")
	}
	return g
}

type gParser struct {
	src []rune
	pos int
}

func (p *gParser) eof() bool    { return p.pos >= len(p.src) }
func (p *gParser) rest() string { return string(p.src[p.pos:min(len(p.src), p.pos+30)]) }
func (p *gParser) skip() {
	for !p.eof() {
		switch p.src[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		case '#':
			for !p.eof() && p.src[p.pos] != '\n' {
				p.pos++
			}
		default:
			return
		}
	}
}
func (p *gParser) take(s string) bool {
	if strings.HasPrefix(string(p.src[p.pos:]), s) {
		p.pos += utf8.RuneCountInString(s)
		return true
	}
	return false
}
func (p *gParser) ident() string {
	start := p.pos
	for !p.eof() && (p.src[p.pos] < 128 && isGBNFWord(byte(p.src[p.pos]))) {
		p.pos++
	}
	return string(p.src[start:p.pos])
}

// atRuleStart reports whether the next tokens are "name ::=".
func (p *gParser) atRuleStart() bool {
	save := p.pos
	defer func() { p.pos = save }()
	if p.ident() == "" {
		return false
	}
	p.skip()
	return p.take("::=")
}

func (p *gParser) alt() (gAlt, error) {
	var a gAlt
	for {
		s, err := p.seq()
		if err != nil {
			return nil, err
		}
		a = append(a, s)
		p.skip()
		if !p.take("|") {
			return a, nil
		}
		// Like llama.cpp, read past the end of the line after "|": a
		// rule that follows would be swallowed, so refuse it.
		p.skip()
		if p.atRuleStart() {
			return nil, fmt.Errorf("the line ends in \"|\": llama.cpp would read the next rule into this one")
		}
	}
}

func (p *gParser) seq() (gSeq, error) {
	var s gSeq
	for {
		p.skip()
		if p.eof() || p.atRuleStart() {
			return s, nil
		}
		var atom gNode
		switch p.src[p.pos] {
		case '|', ')':
			return s, nil
		case '"':
			l, err := p.literal()
			if err != nil {
				return nil, err
			}
			atom = l
		case '[':
			cl, err := p.class()
			if err != nil {
				return nil, err
			}
			atom = cl
		case '(':
			p.pos++
			a, err := p.alt()
			if err != nil {
				return nil, err
			}
			p.skip()
			if !p.take(")") {
				return nil, fmt.Errorf(") expected at %q", p.rest())
			}
			atom = a
		default:
			name := p.ident()
			if name == "" {
				return nil, fmt.Errorf("unexpected %q", p.rest())
			}
			atom = gRef(name)
		}
		it := gItem{atom: atom, min: 1, max: 1}
		if !p.eof() {
			switch p.src[p.pos] {
			case '*':
				it.min, it.max = 0, -1
				p.pos++
			case '+':
				it.min, it.max = 1, -1
				p.pos++
			case '?':
				it.min, it.max = 0, 1
				p.pos++
			case '{':
				end := p.pos
				for end < len(p.src) && p.src[end] != '}' {
					end++
				}
				body := string(p.src[p.pos+1 : end])
				p.pos = end + 1
				lo, hi, comma := strings.Cut(body, ",")
				it.min, _ = strconv.Atoi(strings.TrimSpace(lo))
				it.max = it.min
				if comma {
					it.max = -1
					if strings.TrimSpace(hi) != "" {
						it.max, _ = strconv.Atoi(strings.TrimSpace(hi))
					}
				}
			}
		}
		s = append(s, it)
	}
}

func (p *gParser) escaped() (rune, error) {
	c := p.src[p.pos]
	p.pos++
	if c != '\\' {
		return c, nil
	}
	e := p.src[p.pos]
	p.pos++
	hex := func(n int) (rune, error) {
		v, err := strconv.ParseUint(string(p.src[p.pos:p.pos+n]), 16, 32)
		p.pos += n
		return rune(v), err
	}
	switch e {
	case 'n':
		return '\n', nil
	case 't':
		return '\t', nil
	case 'r':
		return '\r', nil
	case 'x':
		return hex(2)
	case 'u':
		return hex(4)
	case '\\', '"', '[', ']', '-', '^':
		return e, nil
	}
	return 0, fmt.Errorf("unknown escape \\%c", e)
}

func (p *gParser) literal() (gLit, error) {
	p.pos++ // "
	var l gLit
	for !p.eof() && p.src[p.pos] != '"' {
		r, err := p.escaped()
		if err != nil {
			return nil, err
		}
		l = append(l, r)
	}
	if p.eof() {
		return nil, fmt.Errorf("unterminated literal")
	}
	p.pos++
	return l, nil
}

func (p *gParser) class() (gClass, error) {
	p.pos++ // [
	var c gClass
	if !p.eof() && p.src[p.pos] == '^' {
		c.neg = true
		p.pos++
	}
	for !p.eof() && p.src[p.pos] != ']' {
		lo, err := p.escaped()
		if err != nil {
			return c, err
		}
		hi := lo
		if p.pos+1 < len(p.src) && p.src[p.pos] == '-' && p.src[p.pos+1] != ']' {
			p.pos++
			if hi, err = p.escaped(); err != nil {
				return c, err
			}
		}
		c.ranges = append(c.ranges, [2]rune{lo, hi})
	}
	if p.eof() {
		return c, fmt.Errorf("unterminated class")
	}
	p.pos++
	return c, nil
}

// accepts reports whether the whole of s matches root.
func (g *gGrammar) accepts(s string) bool {
	g.in, g.memo = []rune(s), map[string][]int{}
	for _, end := range g.match(gRef("root"), 0) {
		if end == len(g.in) {
			return true
		}
	}
	return false
}

// match returns the positions where n can end when it starts at pos.
func (g *gGrammar) match(n gNode, pos int) []int {
	switch n := n.(type) {
	case gRef:
		key := string(n) + "@" + strconv.Itoa(pos)
		if r, ok := g.memo[key]; ok {
			return r
		}
		g.memo[key] = nil // no left recursion in our grammars
		r := g.match(g.rules[string(n)], pos)
		g.memo[key] = r
		return r
	case gAlt:
		set := map[int]bool{}
		for _, s := range n {
			for _, e := range g.match(s, pos) {
				set[e] = true
			}
		}
		return keys(set)
	case gSeq:
		cur := []int{pos}
		for _, it := range n {
			next := map[int]bool{}
			for _, p := range cur {
				for _, e := range g.repeat(it, p) {
					next[e] = true
				}
			}
			cur = keys(next)
		}
		return cur
	case gLit:
		if pos+len(n) <= len(g.in) && string(g.in[pos:pos+len(n)]) == string(n) {
			return []int{pos + len(n)}
		}
		return nil
	case gClass:
		if pos >= len(g.in) {
			return nil
		}
		r, in := g.in[pos], false
		for _, rg := range n.ranges {
			if r >= rg[0] && r <= rg[1] {
				in = true
			}
		}
		if in != n.neg {
			return []int{pos + 1}
		}
		return nil
	}
	panic(fmt.Sprintf("unknown node %T", n))
}

func (g *gGrammar) repeat(it gItem, pos int) []int {
	set := map[int]bool{}
	if it.min == 0 {
		set[pos] = true
	}
	cur := []int{pos}
	for k := 1; len(cur) > 0 && (it.max < 0 || k <= it.max); k++ {
		next := map[int]bool{}
		for _, p := range cur {
			for _, e := range g.match(it.atom, p) {
				if e != p || k == 1 {
					next[e] = true
				}
			}
		}
		cur = nil
		for e := range next {
			if k >= it.min && !set[e] {
				set[e] = true
				cur = append(cur, e)
			} else if k < it.min {
				cur = append(cur, e)
			}
		}
	}
	return keys(set)
}

func keys(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

func TestGBNFRecognizer(t *testing.T) {
	g := parseGBNF(t, `root ::= "a" b{2,3} ( "x" | [0-9]+ )? [^q]
b ::= "b"`)
	for s, want := range map[string]bool{"abbz": true, "abbbx!": true, "abb12z": true, "abz": false, "abbbbz": false, "abbq": false} {
		if got := g.accepts(s); got != want {
			t.Errorf("accepts(%q) = %v, want %v", s, got, want)
		}
	}
}
