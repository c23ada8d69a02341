package chat

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ardanlabs/jinja"
)

// tojsonFilter is the name our tojson goes by. The jinja package resolves
// built-in filters before the render context and its tojson sorts keys
// and escapes HTML when indenting, unlike transformers' (json.dumps with
// ensure_ascii=False, keys in insertion order). rewriteFilters points every
// `| tojson` of a template at this name, which resolves to filterToJSON in
// the context.
const tojsonFilter = "cortex_tojson"

// jinjaSeg is one piece of template source: text or a tag.
type jinjaSeg struct {
	kind byte // 't' text, '{' expression, '%' statement, '#' comment
	// text is the raw text, or the tag's inside without markers.
	text string
	// lmark and rmark are the tag's whitespace markers ('-', '+' or 0).
	lmark, rmark byte
}

// normalizeTemplate applies Jinja2's whitespace control the way
// transformers configures it (trim_blocks and lstrip_blocks on, "-" and
// "+" markers) and hands the jinja package a template on which its own
// whitespace handling is a no-op: markers removed, comments dropped, and
// whitespace at the edges of text moved into string literals. jinja
// v1.8.0 trims across intervening {{ }} tags (`a\n{{ x }}{%- if %}` loses
// the newline), which would change prompts. It also renames the tojson
// filter inside tags (see tojsonFilter).
func normalizeTemplate(src string) (string, error) {
	// Jinja2 reads every line ending as "\n" and, by default
	// (keep_trailing_newline off), drops one final newline.
	src = strings.ReplaceAll(src, "\r\n", "\n")
	src = strings.ReplaceAll(src, "\r", "\n")
	src = strings.TrimSuffix(src, "\n")
	segs, err := scanJinja(src)
	if err != nil {
		return "", err
	}
	isBlock := func(i int) bool { return i >= 0 && i < len(segs) && (segs[i].kind == '%' || segs[i].kind == '#') }
	for i := range segs {
		s := &segs[i]
		if s.kind != 't' {
			continue
		}
		text := s.text
		if i+1 < len(segs) {
			next := segs[i+1]
			switch {
			case next.lmark == '-':
				text = strings.TrimRightFunc(text, unicode.IsSpace)
			case isBlock(i+1) && next.lmark != '+':
				// lstrip_blocks: indentation before a tag that starts its line.
				end := len(text)
				for end > 0 && (text[end-1] == ' ' || text[end-1] == '\t') {
					end--
				}
				if (end == 0 && i == 0) || (end > 0 && text[end-1] == '\n') {
					text = text[:end]
				}
			}
		}
		if i > 0 {
			prev := segs[i-1]
			switch {
			case prev.rmark == '-':
				text = strings.TrimLeftFunc(text, unicode.IsSpace)
			case isBlock(i-1) && prev.rmark != '+':
				// trim_blocks: the newline that ends a block tag's line.
				text = strings.TrimPrefix(text, "\n")
			}
		}
		s.text = text
	}

	var b strings.Builder
	b.Grow(len(src) + len(src)/8)
	for _, s := range segs {
		switch s.kind {
		case 't':
			core := strings.TrimLeftFunc(s.text, unicode.IsSpace)
			lead := s.text[:len(s.text)-len(core)]
			trimmed := strings.TrimRightFunc(core, unicode.IsSpace)
			trail := core[len(trimmed):]
			writeLiteral(&b, lead)
			b.WriteString(trimmed)
			writeLiteral(&b, trail)
		case '#':
		default:
			b.WriteByte('{')
			b.WriteByte(s.kind)
			b.WriteString(renameToJSON(s.text))
			if s.kind == '{' {
				b.WriteString("}}")
			} else {
				b.WriteString("%}")
			}
		}
	}
	return b.String(), nil
}

// writeLiteral writes whitespace as a string-literal expression, which no
// whitespace rule of the jinja package touches.
func writeLiteral(b *strings.Builder, ws string) {
	if ws == "" {
		return
	}
	b.WriteString(`{{ "`)
	b.WriteString(ws) // whitespace only: no quote or backslash to escape
	b.WriteString(`" }}`)
}

// scanJinja splits template source into text and tags, skipping string
// literals inside tags as Jinja2's lexer does.
func scanJinja(src string) ([]jinjaSeg, error) {
	var segs []jinjaSeg
	textStart, i := 0, 0
	for i+1 < len(src) {
		if src[i] != '{' || (src[i+1] != '{' && src[i+1] != '%' && src[i+1] != '#') {
			i++
			continue
		}
		kind := src[i+1]
		if i > textStart {
			segs = append(segs, jinjaSeg{kind: 't', text: src[textStart:i]})
		}
		closer := "}}"
		switch kind {
		case '%':
			closer = "%}"
		case '#':
			closer = "#}"
		}
		start := i
		j := i + 2
		var lmark byte
		if j < len(src) && (src[j] == '-' || src[j] == '+') {
			lmark = src[j]
			j++
		}
		body := j
		end := -1
		for j < len(src) {
			c := src[j]
			if kind != '#' && (c == '\'' || c == '"') {
				k := j + 1
				for k < len(src) && src[k] != c {
					if src[k] == '\\' {
						k++
					}
					k++
				}
				j = k + 1
				continue
			}
			if strings.HasPrefix(src[j:], closer) {
				end = j
				break
			}
			j++
		}
		if end < 0 {
			return nil, fmt.Errorf("unclosed tag at byte %d", start)
		}
		inner := src[body:end]
		var rmark byte
		if n := len(inner); n > 0 && (inner[n-1] == '-' || inner[n-1] == '+') {
			rmark = inner[n-1]
			inner = inner[:n-1]
		}
		segs = append(segs, jinjaSeg{kind: kind, text: inner, lmark: lmark, rmark: rmark})
		i = end + 2
		textStart = i
	}
	if textStart < len(src) {
		segs = append(segs, jinjaSeg{kind: 't', text: src[textStart:]})
	}
	return segs, nil
}

// renameToJSON points `| tojson` inside a tag at tojsonFilter, leaving
// string literals alone.
func renameToJSON(tag string) string {
	if !strings.Contains(tag, "tojson") {
		return tag
	}
	var b strings.Builder
	for i := 0; i < len(tag); {
		c := tag[i]
		switch c {
		case '\'', '"':
			k := i + 1
			for k < len(tag) && tag[k] != c {
				if tag[k] == '\\' {
					k++
				}
				k++
			}
			k = min(k+1, len(tag))
			b.WriteString(tag[i:k])
			i = k
			continue
		case '|':
			j := i + 1
			for j < len(tag) && unicode.IsSpace(rune(tag[j])) {
				j++
			}
			if strings.HasPrefix(tag[j:], "tojson") && (j+6 == len(tag) || !isIdentByte(tag[j+6])) {
				b.WriteString(tag[i:j])
				b.WriteString(tojsonFilter)
				i = j + 6
				continue
			}
		}
		b.WriteByte(c)
		i++
	}
	return b.String()
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// filterToJSON is transformers' tojson: json.dumps(x, ensure_ascii=False,
// indent=None, separators=None, sort_keys=False), every option overridable.
func filterToJSON(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
	if len(args) == 0 {
		return jinja.NewString(""), nil
	}
	enc := pyJSON{itemSep: ", ", keySep: ": "}
	indent := jinja.None()
	if len(args) > 1 {
		indent = args[1]
	}
	if v, ok := kwargs["indent"]; ok {
		indent = v
	}
	switch {
	case indent.IsInt():
		enc.indent, enc.indented = strings.Repeat(" ", int(max(indent.AsInt(), 0))), true
	case indent.IsString():
		enc.indent, enc.indented = indent.AsString(), true
	}
	if enc.indented {
		enc.itemSep = ","
	}
	if v, ok := kwargs["separators"]; ok && v.IsList() && v.AsList().Len() == 2 {
		items := v.AsList().Items
		if items[0].IsString() && items[1].IsString() {
			enc.itemSep, enc.keySep = items[0].AsString(), items[1].AsString()
		}
	}
	if v, ok := kwargs["ensure_ascii"]; ok {
		enc.ensureASCII = v.IsTruthy()
	}
	if v, ok := kwargs["sort_keys"]; ok {
		enc.sortKeys = v.IsTruthy()
	}
	var b strings.Builder
	enc.value(&b, args[0], 0)
	return jinja.NewString(b.String()), nil
}

// pyJSON writes JSON byte for byte as Python's json.dumps does, so prompts
// match what the model was trained on.
type pyJSON struct {
	indent      string
	indented    bool
	itemSep     string
	keySep      string
	ensureASCII bool
	sortKeys    bool
}

func (e *pyJSON) newline(b *strings.Builder, level int) {
	if !e.indented {
		return
	}
	b.WriteByte('\n')
	for range level {
		b.WriteString(e.indent)
	}
}

func (e *pyJSON) value(b *strings.Builder, v jinja.Value, level int) {
	switch {
	case v.IsNone(), v.IsUndefined(), v.IsCallable():
		b.WriteString("null")
	case v.IsBool():
		b.WriteString(strconv.FormatBool(v.AsBool()))
	case v.IsInt():
		b.WriteString(strconv.FormatInt(v.AsInt(), 10))
	case v.IsFloat():
		b.WriteString(pyFloat(v.AsFloat()))
	case v.IsString():
		e.str(b, v.AsString())
	case v.IsList():
		items := v.AsList().Items
		if len(items) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteByte('[')
		for i, it := range items {
			if i > 0 {
				b.WriteString(e.itemSep)
			}
			e.newline(b, level+1)
			e.value(b, it, level+1)
		}
		e.newline(b, level)
		b.WriteByte(']')
	case v.IsDict():
		d := v.AsDict()
		keys := d.Keys
		if e.sortKeys {
			keys = append([]string(nil), keys...)
			sort.Strings(keys)
		}
		if len(keys) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(e.itemSep)
			}
			e.newline(b, level+1)
			e.str(b, k)
			b.WriteString(e.keySep)
			e.value(b, d.Data[k], level+1)
		}
		e.newline(b, level)
		b.WriteByte('}')
	default:
		b.WriteString("null")
	}
}

func (e *pyJSON) str(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
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
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			switch {
			case r < 0x20:
				fmt.Fprintf(b, `\u%04x`, r)
			case r < 0x80 || !e.ensureASCII:
				b.WriteRune(r)
			case r > 0xFFFF:
				r -= 0x10000
				fmt.Fprintf(b, `\u%04x\u%04x`, 0xD800+(r>>10), 0xDC00+(r&0x3FF))
			default:
				fmt.Fprintf(b, `\u%04x`, r)
			}
		}
	}
	b.WriteByte('"')
}

// pyFloat formats like Python's float repr: shortest round-trip digits,
// always a decimal point or exponent, exponent form outside [1e-4, 1e16).
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0:
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	es := strconv.FormatFloat(f, 'e', -1, 64)
	if k := strings.IndexByte(es, 'e'); k >= 0 {
		if exp, err := strconv.Atoi(es[k+1:]); err == nil && (exp < -4 || exp >= 16) {
			return es
		}
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

// strftime formats t with the C/Python directives chat templates use
// (%Y-%m-%d, %d %b %Y, %B %-d, …); "%-X" drops padding as on glibc.
func strftime(t time.Time, format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 >= len(format) {
			b.WriteByte(c)
			continue
		}
		i++
		pad := true
		if format[i] == '-' && i+1 < len(format) {
			pad = false
			i++
		}
		num := func(n, width int) {
			if pad {
				fmt.Fprintf(&b, "%0*d", width, n)
			} else {
				b.WriteString(strconv.Itoa(n))
			}
		}
		switch format[i] {
		case 'Y':
			b.WriteString(strconv.Itoa(t.Year()))
		case 'y':
			num(t.Year()%100, 2)
		case 'm':
			num(int(t.Month()), 2)
		case 'd':
			num(t.Day(), 2)
		case 'e':
			fmt.Fprintf(&b, "%2d", t.Day())
		case 'j':
			num(t.YearDay(), 3)
		case 'H':
			num(t.Hour(), 2)
		case 'I':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			num(h, 2)
		case 'M':
			num(t.Minute(), 2)
		case 'S':
			num(t.Second(), 2)
		case 'p':
			if t.Hour() < 12 {
				b.WriteString("AM")
			} else {
				b.WriteString("PM")
			}
		case 'B':
			b.WriteString(t.Month().String())
		case 'b', 'h':
			b.WriteString(t.Month().String()[:3])
		case 'A':
			b.WriteString(t.Weekday().String())
		case 'a':
			b.WriteString(t.Weekday().String()[:3])
		case 'w':
			b.WriteString(strconv.Itoa(int(t.Weekday())))
		case 'Z':
			name, _ := t.Zone()
			b.WriteString(name)
		case 'z':
			b.WriteString(t.Format("-0700"))
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			if !pad {
				b.WriteByte('-')
			}
			b.WriteByte(format[i])
		}
	}
	return b.String()
}
