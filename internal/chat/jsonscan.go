package chat

// jsonScanner checks JSON one byte at a time, so a tool call's arguments
// can be validated and streamed as they are generated. It accepts exactly
// RFC 8259 values.
type jsonScanner struct {
	stack  []byte // open containers: '{' or '['
	state  scanState
	isKey  bool   // the string being read is an object key
	lit    string // the rest of true/false/null being read
	hexes  int    // \u digits still expected
	done   bool   // a whole value was read
	failed bool
}

type scanState uint8

const (
	scValue scanState = iota
	scObjKeyOrEnd
	scObjKey
	scColon
	scArrValueOrEnd
	scAfterValue
	scString
	scEscape
	scHex
	scNeg
	scZero
	scInt
	scDot
	scFrac
	scExpMark
	scExpSign
	scExp
	scLiteral
)

// scanResult says what a byte was.
type scanResult uint8

const (
	scanByte  scanResult = iota // part of the value
	scanSpace                   // insignificant whitespace
	scanEnd                     // not consumed: the value ended before it
	scanError                   // not JSON
)

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// afterObjectValue returns a scanner positioned inside an object right
// after a member's value, to read the rest of a call object.
func afterObjectValue() jsonScanner {
	return jsonScanner{stack: []byte{'{'}, state: scAfterValue}
}

func (s *jsonScanner) valueEnded() {
	s.state = scAfterValue
	if len(s.stack) == 0 {
		s.done = true
	}
}

func (s *jsonScanner) step(c byte) scanResult {
	if s.done || s.failed {
		if s.failed {
			return scanError
		}
		return scanEnd
	}
	r := s.step1(c)
	if r == scanError {
		s.failed = true
	}
	return r
}

func (s *jsonScanner) step1(c byte) scanResult {
	switch s.state {
	case scValue, scArrValueOrEnd:
		if isSpace(c) {
			return scanSpace
		}
		if s.state == scArrValueOrEnd && c == ']' {
			s.stack = s.stack[:len(s.stack)-1]
			s.valueEnded()
			return scanByte
		}
		switch {
		case c == '{':
			s.stack = append(s.stack, '{')
			s.state = scObjKeyOrEnd
		case c == '[':
			s.stack = append(s.stack, '[')
			s.state = scArrValueOrEnd
		case c == '"':
			s.state, s.isKey = scString, false
		case c == '-':
			s.state = scNeg
		case c == '0':
			s.state = scZero
		case c >= '1' && c <= '9':
			s.state = scInt
		case c == 't':
			s.state, s.lit = scLiteral, "true"[1:]
		case c == 'f':
			s.state, s.lit = scLiteral, "false"[1:]
		case c == 'n':
			s.state, s.lit = scLiteral, "null"[1:]
		default:
			return scanError
		}
		return scanByte
	case scObjKeyOrEnd, scObjKey:
		if isSpace(c) {
			return scanSpace
		}
		if c == '"' {
			s.state, s.isKey = scString, true
			return scanByte
		}
		if c == '}' && s.state == scObjKeyOrEnd {
			s.stack = s.stack[:len(s.stack)-1]
			s.valueEnded()
			return scanByte
		}
		return scanError
	case scColon:
		if isSpace(c) {
			return scanSpace
		}
		if c == ':' {
			s.state = scValue
			return scanByte
		}
		return scanError
	case scAfterValue:
		if isSpace(c) {
			return scanSpace
		}
		if len(s.stack) == 0 {
			return scanEnd
		}
		top := s.stack[len(s.stack)-1]
		switch {
		case c == ',' && top == '{':
			s.state = scObjKey
		case c == ',' && top == '[':
			s.state = scValue
		case c == '}' && top == '{', c == ']' && top == '[':
			s.stack = s.stack[:len(s.stack)-1]
			s.valueEnded()
		default:
			return scanError
		}
		return scanByte
	case scString:
		switch {
		case c == '"':
			if s.isKey {
				s.state = scColon
			} else {
				s.valueEnded()
			}
		case c == '\\':
			s.state = scEscape
		case c < 0x20:
			return scanError
		}
		return scanByte
	case scEscape:
		switch c {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			s.state = scString
		case 'u':
			s.state, s.hexes = scHex, 4
		default:
			return scanError
		}
		return scanByte
	case scHex:
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return scanError
		}
		if s.hexes--; s.hexes == 0 {
			s.state = scString
		}
		return scanByte
	case scNeg:
		switch {
		case c == '0':
			s.state = scZero
		case c >= '1' && c <= '9':
			s.state = scInt
		default:
			return scanError
		}
		return scanByte
	case scZero, scInt, scFrac, scExp:
		switch {
		case c >= '0' && c <= '9' && s.state != scZero:
			return scanByte
		case c == '.' && (s.state == scZero || s.state == scInt):
			s.state = scDot
			return scanByte
		case (c == 'e' || c == 'E') && s.state != scExp:
			s.state = scExpMark
			return scanByte
		}
		// The number ended; c belongs to what follows.
		s.valueEnded()
		if s.done {
			return scanEnd
		}
		return s.step1(c)
	case scDot:
		if c >= '0' && c <= '9' {
			s.state = scFrac
			return scanByte
		}
		return scanError
	case scExpMark:
		switch {
		case c == '+' || c == '-':
			s.state = scExpSign
		case c >= '0' && c <= '9':
			s.state = scExp
		default:
			return scanError
		}
		return scanByte
	case scExpSign:
		if c >= '0' && c <= '9' {
			s.state = scExp
			return scanByte
		}
		return scanError
	case scLiteral:
		if c != s.lit[0] {
			return scanError
		}
		if s.lit = s.lit[1:]; s.lit == "" {
			s.valueEnded()
		}
		return scanByte
	}
	return scanError
}
