package chat

import (
	"fmt"
	"strings"
)

// gbnf assembles a GBNF grammar from rules; the first rule added is root.
type gbnf struct {
	b     strings.Builder
	names map[string]bool
}

func (g *gbnf) rule(name, body string) {
	if g.names == nil {
		g.names = map[string]bool{}
	}
	if g.names[name] {
		return
	}
	g.names[name] = true
	fmt.Fprintf(&g.b, "%s ::= %s\n", name, body)
}

func (g *gbnf) String() string { return g.b.String() }

// lit is a GBNF string literal for s.
func lit(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\x%02X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// jsonRules adds a generic JSON grammar under prefix and returns the names
// of its value and object rules. Whitespace runs are bounded so a model
// cannot spend its budget on blank lines inside a constrained answer.
func jsonRules(g *gbnf, prefix string) (value, object string) {
	p := prefix
	g.rule(p+"value", fmt.Sprintf("%sobject | %sarray | %sstring | %snumber | (\"true\" | \"false\" | \"null\") %sws", p, p, p, p, p))
	g.rule(p+"object", fmt.Sprintf(`"{" %sws ( %sstring ":" %sws %svalue ( "," %sws %sstring ":" %sws %svalue )* )? "}" %sws`, p, p, p, p, p, p, p, p, p))
	g.rule(p+"array", fmt.Sprintf(`"[" %sws ( %svalue ( "," %sws %svalue )* )? "]" %sws`, p, p, p, p, p))
	g.rule(p+"string", fmt.Sprintf(`"\"" %schar* "\"" %sws`, p, p))
	g.rule(p+"char", `[^"\\\x00-\x1F\x7F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )`)
	g.rule(p+"number", fmt.Sprintf(`"-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )? %sws`, p))
	g.rule(p+"ws", `[ \t\n]{0,20}`)
	return p + "value", p + "object"
}

// notContainingRules adds rule name matching any text that does not
// contain stop (a right-linear grammar of the automaton that finds stop),
// so a think block ends at the first stop and nowhere else.
func notContainingRules(g *gbnf, name, stop string) {
	pat := []rune(stop)
	// fail[i] is the KMP failure function; next(state, r) the automaton.
	fail := make([]int, len(pat)+1)
	fail[0] = -1
	for i := 1; i <= len(pat); i++ {
		k := fail[i-1]
		for k >= 0 && pat[k] != pat[i-1] {
			k = fail[k]
		}
		fail[i] = k + 1
	}
	next := func(state int, r rune) int {
		for state >= 0 && pat[state] != r {
			state = fail[state]
		}
		return state + 1
	}
	distinct := []rune{}
	seen := map[rune]bool{}
	for _, r := range pat {
		if !seen[r] {
			seen[r] = true
			distinct = append(distinct, r)
		}
	}
	var class strings.Builder
	for _, r := range distinct {
		class.WriteString(classChar(r))
	}
	state := func(i int) string { return fmt.Sprintf("%s-%d", name, i) }
	for i := 0; i < len(pat); i++ {
		// The text may end in any state: an empty alternative, first,
		// because llama.cpp reads a line ending in "|" as continued.
		alts := []string{"", fmt.Sprintf("[^%s] %s", class.String(), state(0))}
		for _, r := range distinct {
			if n := next(i, r); n < len(pat) {
				alts = append(alts, fmt.Sprintf("%s %s", lit(string(r)), state(n)))
			}
		}
		body := strings.TrimPrefix(strings.Join(alts, " | "), " ")
		if i == 0 {
			g.rule(name, state(0))
		}
		g.rule(state(i), body)
	}
}

// classChar escapes r for use inside a GBNF character class.
func classChar(r rune) string {
	switch r {
	case ']', '[', '\\', '^', '-':
		return `\` + string(r)
	case '\n':
		return `\n`
	case '\t':
		return `\t`
	case '\r':
		return `\r`
	}
	return string(r)
}

// prefixRules renames every rule defined in grammar (and every reference
// to one) with prefix, so several converted schemas can live in one
// grammar. It skips comments, string literals, character classes and
// repetition counts.
func prefixRules(grammar, prefix string) (string, error) {
	defined := map[string]bool{}
	err := scanGBNF(grammar, func(word string, start int, def bool) {
		if def {
			defined[word] = true
		}
	})
	if err != nil {
		return "", err
	}
	if !defined["root"] {
		return "", fmt.Errorf("grammar has no root rule")
	}
	var b strings.Builder
	last := 0
	_ = scanGBNF(grammar, func(word string, start int, _ bool) {
		if defined[word] {
			b.WriteString(grammar[last:start])
			b.WriteString(prefix)
			b.WriteString(word)
			last = start + len(word)
		}
	})
	b.WriteString(grammar[last:])
	return b.String(), nil
}

func isGBNFWord(c byte) bool {
	return c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

// scanGBNF calls fn for every identifier of a GBNF grammar, saying whether
// it is a rule definition (followed by ::=).
func scanGBNF(g string, fn func(word string, start int, def bool)) error {
	for i := 0; i < len(g); {
		c := g[i]
		switch {
		case c == '#':
			for i < len(g) && g[i] != '\n' {
				i++
			}
		case c == '"' || c == '[':
			closer := byte('"')
			if c == '[' {
				closer = ']'
			}
			j := i + 1
			for j < len(g) && g[j] != closer {
				if g[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(g) {
				return fmt.Errorf("unterminated %q at byte %d", c, i)
			}
			i = j + 1
		case c == '{':
			j := strings.IndexByte(g[i:], '}')
			if j < 0 {
				return fmt.Errorf("unterminated repetition at byte %d", i)
			}
			i += j + 1
		case isGBNFWord(c):
			j := i
			for j < len(g) && isGBNFWord(g[j]) {
				j++
			}
			k := j
			for k < len(g) && (g[k] == ' ' || g[k] == '\t') {
				k++
			}
			fn(g[i:j], i, strings.HasPrefix(g[k:], "::="))
			i = j
		default:
			i++
		}
	}
	return nil
}
