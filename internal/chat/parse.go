package chat

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode"

	"github.com/helexa-ai/cortex/internal/wire/openai"
)

const (
	thinkOpenTag  = "<think>"
	thinkCloseTag = "</think>"
	hermesOpen    = "<tool_call>"
	hermesClose   = "</tool_call>"
	mistralOpen   = "[TOOL_CALLS]"
	mistralArgs   = "[ARGS]"
	mistralCallID = "[CALL_ID]"
	pythonTag     = "<|python_tag|>"

	// maxHeader bounds the text held while deciding whether an object is
	// a call ({"name": "…", "arguments": …); real headers are far shorter.
	maxHeader = 512
)

type parseMode uint8

const (
	modeStart     parseMode = iota // nothing but whitespace yet
	modeReasoning                  // inside <think>
	modeContent
	modeCall // inside a call's syntax
)

// callSyntax is the wrapping of the call being read.
type callSyntax uint8

const (
	syntaxHermes       callSyntax = iota // <tool_call>{…}</tool_call>
	syntaxBare                           // {…} at the start of content, or after <|python_tag|>
	syntaxMistralArray                   // [TOOL_CALLS][{…}, {…}] or a bare [{…}] at the start
	syntaxMistralNamed                   // [TOOL_CALLS]name[ARGS]{…}
)

// callPhase is where in a call object the parser is.
type callPhase uint8

const (
	phaseOpen    callPhase = iota // before the object (or array) starts
	phaseHeader                   // reading {"name": …, "arguments":
	phaseArgs                     // streaming the arguments value
	phaseRest                     // the rest of the object after the arguments
	phaseFull                     // an unusual object: read whole, then decoded
	phaseName                     // Mistral name before [ARGS]
	phaseTrailer                  // after the object: closing tag, separator
)

// callState is the call being read.
type callState struct {
	syntax  callSyntax
	phase   callPhase
	raw     strings.Builder // all text consumed for this call, for giving it back
	header  strings.Builder
	name    string
	started bool // EventToolCallStart was sent
	index   int
	id      string
	scan    jsonScanner
	args    strings.Builder // compact arguments sent so far
	argKind byte            // first byte of the arguments value
	argRaw  strings.Builder // a string or null value, decoded at its end
	inArray bool            // Mistral array: objects until ']'
	// explicit: an opening tag announced the call, so an unusual object
	// is read whole rather than taken for text.
	explicit bool
}

type parserState struct {
	cfg   ParserConfig
	tools map[string]bool
	buf   string
	mode  parseMode
	call  *callState
	out   []Event

	pendingWS   string // whitespace held at the end of text
	dropWS      bool   // leading whitespace is dropped (after a tag)
	atStart     bool   // no text yet in this content section
	sepOK       bool   // a ';' between bare calls may be skipped
	reasonStart bool   // no reasoning yet in an opened block
	nextIndex   int
	finished    bool

	content, reasoning strings.Builder
	calls              []openai.ToolCall
}

func (s *parserState) init(cfg ParserConfig) {
	s.cfg = cfg
	s.tools = map[string]bool{}
	for _, n := range cfg.Tools {
		s.tools[n] = true
	}
	if s.cfg.NewID == nil {
		s.cfg.NewID = newCallID
		if cfg.Format == ToolFormatMistral {
			s.cfg.NewID = newShortID
		}
	}
	if cfg.InReasoning {
		s.mode, s.reasonStart, s.dropWS = modeReasoning, true, true
	}
}

func (s *parserState) feed(text string) []Event {
	if s.finished {
		return nil
	}
	s.out = nil
	s.buf += text
	s.run(false)
	return s.out
}

func (s *parserState) finish() []Event {
	if s.finished {
		return nil
	}
	s.out = nil
	s.run(true)
	s.finished = true
	return s.out
}

func (s *parserState) result() Result {
	return Result{Content: s.content.String(), ReasoningContent: s.reasoning.String(), ToolCalls: s.calls}
}

// callsOpen reports whether another call may start.
func (s *parserState) callsOpen() bool {
	return len(s.tools) > 0 && (s.cfg.MaxCalls == 0 || s.nextIndex < s.cfg.MaxCalls)
}

// run consumes s.buf as far as it can be decided; at the end of the
// output (final) everything is decided.
func (s *parserState) run(final bool) {
	for {
		var progress bool
		switch s.mode {
		case modeStart:
			progress = s.runStart(final)
		case modeReasoning:
			progress = s.runReasoning(final)
		case modeContent:
			progress = s.runContent(final)
		case modeCall:
			progress = s.runCall(final)
		}
		if !progress {
			break
		}
	}
	if final {
		switch s.mode {
		case modeReasoning:
			s.text(EventReasoning, s.buf)
		default:
			s.text(EventContent, s.buf)
		}
		s.buf = ""
		s.flushWS()
	}
}

func (s *parserState) runStart(final bool) bool {
	rest := strings.TrimLeftFunc(s.buf, unicode.IsSpace)
	switch {
	case strings.HasPrefix(rest, thinkOpenTag):
		s.buf = rest[len(thinkOpenTag):]
		s.mode, s.dropWS, s.reasonStart = modeReasoning, true, true
		return true
	case rest == "" && !final, strings.HasPrefix(thinkOpenTag, rest) && !final:
		return false
	}
	s.mode, s.atStart = modeContent, true
	return true
}

func (s *parserState) runReasoning(final bool) bool {
	if s.reasonStart {
		// A model may repeat the <think> its prompt already opened.
		rest := strings.TrimLeftFunc(s.buf, unicode.IsSpace)
		switch {
		case strings.HasPrefix(rest, thinkOpenTag):
			s.buf = rest[len(thinkOpenTag):]
		case (rest == "" || strings.HasPrefix(thinkOpenTag, rest)) && !final:
			return false
		}
		s.reasonStart = false
	}
	if i := strings.Index(s.buf, thinkCloseTag); i >= 0 {
		s.text(EventReasoning, s.buf[:i])
		s.buf = s.buf[i+len(thinkCloseTag):]
		s.tag()
		s.mode, s.atStart = modeContent, true
		return true
	}
	if final {
		return false
	}
	keep := partialSuffix(s.buf, thinkCloseTag)
	s.text(EventReasoning, s.buf[:len(s.buf)-keep])
	s.buf = s.buf[len(s.buf)-keep:]
	return false
}

func (s *parserState) runContent(final bool) bool {
	if !s.callsOpen() {
		s.atStart = false
		s.text(EventContent, s.buf)
		s.buf = ""
		return false
	}
	if s.atStart {
		rest := strings.TrimLeftFunc(s.buf, unicode.IsSpace)
		if s.sepOK && strings.HasPrefix(rest, ";") {
			rest = strings.TrimLeftFunc(rest[1:], unicode.IsSpace)
		}
		if rest == "" && !final {
			return false
		}
		opener := false
		for _, tag := range s.openers() {
			if strings.HasPrefix(rest, tag) {
				opener = true
			} else if strings.HasPrefix(tag, rest) && !final {
				return false // may become a tag
			}
		}
		if !opener && s.cfg.Format == ToolFormatMistral {
			// Mistral's [TOOL_CALLS] and [ARGS] are control tokens an
			// engine may leave out of the text: name{…} is then a call.
			switch s.namedCall(rest, final) {
			case headerNeedMore:
				return false
			case headerMatched:
				s.startCall(syntaxMistralNamed, s.buf[:len(s.buf)-len(rest)], rest)
				s.call.phase = phaseName
				return true
			}
		}
		if !opener && rest != "" && (rest[0] == '{' || rest[0] == '[') {
			// A call without its opening tag (Llama 3 writes them so,
			// Mistral's tag is a special token that may not be in the
			// text, and other models slip): a call if it reads as one.
			syntax := syntaxBare
			if rest[0] == '[' {
				syntax = syntaxMistralArray
			}
			s.startCall(syntax, s.buf[:len(s.buf)-len(rest)], rest)
			return true
		}
		s.atStart, s.sepOK = false, false
	}
	// The earliest opening tag decides.
	best, bestTag := -1, ""
	for _, tag := range s.openers() {
		if i := strings.Index(s.buf, tag); i >= 0 && (best < 0 || i < best) {
			best, bestTag = i, tag
		}
	}
	if best >= 0 {
		s.text(EventContent, s.buf[:best])
		// The whitespace before the tag is not content, unless the call
		// fails and its text is given back.
		opening := s.pendingWS + bestTag
		s.tag()
		rest := s.buf[best+len(bestTag):]
		switch bestTag {
		case hermesOpen:
			s.startCall(syntaxHermes, opening, rest)
		case mistralOpen:
			s.startCall(syntaxMistralNamed, opening, rest)
		case pythonTag:
			s.startCall(syntaxBare, opening, rest)
		}
		return true
	}
	keep := 0
	if !final {
		for _, tag := range s.openers() {
			keep = max(keep, partialSuffix(s.buf, tag))
		}
	}
	s.text(EventContent, s.buf[:len(s.buf)-keep])
	s.buf = s.buf[len(s.buf)-keep:]
	return false
}

// namedCall reports whether rest starts with a tool name directly
// followed by its arguments object.
func (s *parserState) namedCall(rest string, final bool) headerStatus {
	for name := range s.tools {
		switch {
		case strings.HasPrefix(rest, name+"{"), strings.HasPrefix(rest, name+mistralArgs):
			return headerMatched
		case !final && (strings.HasPrefix(name+"{", rest) || strings.HasPrefix(name+mistralArgs, rest)):
			return headerNeedMore
		}
	}
	return headerNotCall
}

// openers are the tags that start calls in the configured format.
func (s *parserState) openers() []string {
	switch s.cfg.Format {
	case ToolFormatMistral:
		return []string{mistralOpen}
	case ToolFormatLlama3:
		return []string{pythonTag}
	default:
		return []string{hermesOpen}
	}
}

// startCall enters a call whose opening (tag or skipped whitespace) was
// consumed; rest is the text after it.
func (s *parserState) startCall(syntax callSyntax, opening, rest string) {
	c := &callState{syntax: syntax, phase: phaseOpen}
	c.explicit = strings.Contains(opening, hermesOpen) || strings.Contains(opening, mistralOpen) || strings.Contains(opening, pythonTag)
	c.raw.WriteString(opening)
	s.call, s.mode, s.buf = c, modeCall, rest
	s.atStart, s.sepOK = false, false
}

// consume moves n bytes of the buffer into the call's raw text.
func (s *parserState) consume(n int) string {
	t := s.buf[:n]
	s.call.raw.WriteString(t)
	s.buf = s.buf[n:]
	return t
}

func (s *parserState) runCall(final bool) bool {
	c := s.call
	switch c.phase {
	case phaseOpen:
		rest := strings.TrimLeftFunc(s.buf, unicode.IsSpace)
		if rest == "" {
			if final {
				s.failCall()
				return true
			}
			return false
		}
		s.consume(len(s.buf) - len(rest))
		switch {
		case c.syntax == syntaxMistralNamed && rest[0] == '[' && !strings.HasPrefix(rest, mistralArgs):
			c.syntax, c.inArray = syntaxMistralArray, true
			s.consume(1)
		case c.syntax == syntaxMistralNamed:
			c.phase = phaseName
			return true
		case c.syntax == syntaxMistralArray && !c.inArray:
			if rest[0] != '[' {
				s.failCall()
				return true
			}
			c.inArray = true
			s.consume(1)
		}
		c.phase = phaseHeader
		return true
	case phaseName:
		return s.runMistralName(final)
	case phaseHeader:
		return s.runHeader(final)
	case phaseArgs:
		return s.runArgs(final)
	case phaseRest, phaseFull:
		return s.runRest(final)
	case phaseTrailer:
		return s.runTrailer(final)
	}
	return false
}

// runMistralName reads "name[ARGS]" (or "name[CALL_ID]id[ARGS]").
func (s *parserState) runMistralName(final bool) bool {
	c := s.call
	head := s.buf[:min(len(s.buf), maxHeader)]
	i, sep := strings.Index(head, mistralArgs), len(mistralArgs)
	if j := strings.IndexByte(head, '{'); j >= 0 && (i < 0 || j < i) {
		i, sep = j, 0 // [ARGS] left out of the text: the object follows the name
	}
	if i < 0 {
		if final || len(s.buf) >= maxHeader {
			s.failCall()
			return true
		}
		return false
	}
	name := s.buf[:i]
	if j := strings.Index(name, mistralCallID); j >= 0 {
		name = name[:j]
	}
	name = strings.TrimSpace(name)
	if !s.tools[name] {
		s.failCall()
		return true
	}
	s.consume(i + sep)
	c.name = name
	s.begin()
	c.phase, c.scan = phaseArgs, jsonScanner{}
	return true
}

// runHeader decides, from the start of an object, whether it is a call,
// and starts streaming its arguments as soon as its name is known. The
// text stays in the buffer until then, so a refusal gives it back intact
// (it may hold the next opening tag), and only its first maxHeader bytes
// count, so the decision does not depend on how the text was split.
func (s *parserState) runHeader(final bool) bool {
	c := s.call
	// Without an opening tag only a plain {"name": …, "arguments": …}
	// counts as a call; inside one, unusual objects are read whole.
	strict := !c.explicit
	text := s.buf[:min(len(s.buf), maxHeader)]
	h := matchHeader(text, s.tools, strict)
	if h.status == headerNeedMore {
		switch {
		case len(text) == maxHeader && !strict:
			h.status = headerFull // an explicit call with a long header: read it whole
		case len(text) == maxHeader || final:
			s.failCall()
			return true
		default:
			return false
		}
	}
	switch h.status {
	case headerNotCall:
		s.failCall()
		return true
	case headerFull:
		c.phase, c.scan = phaseFull, jsonScanner{}
		c.header.Reset()
		return true
	}
	s.consume(h.end)
	c.name = h.name
	s.begin()
	c.phase, c.scan = phaseArgs, jsonScanner{}
	return true
}

// begin announces the call.
func (s *parserState) begin() {
	c := s.call
	c.started, c.index, c.id = true, s.nextIndex, s.cfg.NewID()
	s.nextIndex++
	s.emit(Event{Kind: EventToolCallStart, Index: c.index, ID: c.id, Name: c.name})
}

// runArgs streams the arguments value, compacted.
func (s *parserState) runArgs(final bool) bool {
	c := s.call
	var frag strings.Builder
	i := 0
	for ; i < len(s.buf); i++ {
		b := s.buf[i]
		if c.argKind == 0 {
			if isSpace(b) {
				continue
			}
			c.argKind = b
		}
		r := c.scan.step(b)
		if r == scanError {
			s.consume(i)
			s.sendArgs(frag.String())
			s.failCall()
			return true
		}
		if r == scanEnd {
			break
		}
		switch c.argKind {
		case '{':
			if r == scanByte {
				frag.WriteByte(b)
			}
		default:
			c.argRaw.WriteByte(b)
		}
		if c.scan.done {
			i++
			break
		}
	}
	s.consume(i)
	s.sendArgs(frag.String())
	if !c.scan.done {
		if final {
			s.failCall()
			return true
		}
		return false
	}
	if c.argKind != '{' {
		args, ok := argsFromValue(c.argKind, c.argRaw.String())
		if !ok {
			s.failCall()
			return true
		}
		s.sendArgs(args)
	}
	if c.syntax == syntaxMistralNamed {
		s.endCall()
		return true
	}
	c.phase, c.scan = phaseRest, afterObjectValue()
	return true
}

// argsFromValue turns an arguments value that is not an object into
// arguments: a string holding a JSON object (some models encode them so)
// or null (no arguments).
func argsFromValue(kind byte, raw string) (string, bool) {
	switch kind {
	case 'n':
		return "{}", true
	case '"':
		var inner string
		if json.Unmarshal([]byte(raw), &inner) != nil {
			return "", false
		}
		inner = strings.TrimSpace(inner)
		if inner == "" {
			return "{}", true
		}
		var b bytes.Buffer
		if !strings.HasPrefix(inner, "{") || json.Compact(&b, []byte(inner)) != nil {
			return "", false
		}
		return b.String(), true
	}
	return "", false
}

func (s *parserState) sendArgs(frag string) {
	if frag == "" {
		return
	}
	s.call.args.WriteString(frag)
	s.emit(Event{Kind: EventToolCallArgs, Index: s.call.index, Text: frag})
}

// runRest reads to the end of the call object: the members after the
// arguments, or (phaseFull) a whole object read before deciding.
func (s *parserState) runRest(final bool) bool {
	c := s.call
	i := 0
	for ; i < len(s.buf) && !c.scan.done; i++ {
		if c.scan.step(s.buf[i]) == scanError {
			s.consume(i)
			s.failCall()
			return true
		}
	}
	t := s.consume(i)
	if c.phase == phaseFull {
		c.header.WriteString(t)
	}
	if !c.scan.done {
		if final {
			s.failCall()
			return true
		}
		return false
	}
	if c.phase == phaseFull {
		name, args, ok := decodeCall(c.header.String())
		if !ok || !s.tools[name] {
			s.failCall()
			return true
		}
		c.name = name
		s.begin()
		s.sendArgs(args)
	}
	s.endCall()
	return true
}

// decodeCall reads a whole call object.
func decodeCall(obj string) (name, args string, ok bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal([]byte(obj), &m) != nil {
		return "", "", false
	}
	if json.Unmarshal(m["name"], &name) != nil || name == "" {
		return "", "", false
	}
	raw, found := m["arguments"]
	if !found {
		raw, found = m["parameters"]
	}
	raw = bytes.TrimSpace(raw)
	switch {
	case !found:
		return name, "{}", true
	case len(raw) > 0 && raw[0] == '{':
		var b bytes.Buffer
		if json.Compact(&b, raw) != nil {
			return "", "", false
		}
		return name, b.String(), true
	default:
		args, ok = argsFromValue(raw[0], string(raw))
		return name, args, ok
	}
}

// endCall records a complete call and moves on to what may follow it.
func (s *parserState) endCall() {
	c := s.call
	s.emit(Event{Kind: EventToolCallEnd, Index: c.index})
	s.calls = append(s.calls, openai.ToolCall{ID: c.id, Type: "function",
		Function: openai.FunctionCall{Name: c.name, Arguments: c.args.String()}})
	switch c.syntax {
	case syntaxHermes, syntaxMistralArray:
		c.phase = phaseTrailer
	default:
		s.leaveCall()
		// Llama 3 separates several calls by whitespace or ';'; Mistral
		// writes them back to back, perhaps without their tags.
		s.atStart, s.sepOK = true, c.syntax == syntaxBare
	}
}

// runTrailer reads what closes a call: </tool_call>, or in a Mistral
// array ',' and the next call or ']'. Anything else ends the call
// syntax; the call itself already stands.
func (s *parserState) runTrailer(final bool) bool {
	c := s.call
	rest := strings.TrimLeftFunc(s.buf, unicode.IsSpace)
	if rest == "" {
		if final {
			s.buf = ""
			s.leaveCall()
		}
		return final
	}
	switch c.syntax {
	case syntaxHermes:
		switch {
		case strings.HasPrefix(rest, hermesClose):
			s.buf = rest[len(hermesClose):]
		case strings.HasPrefix(hermesClose, rest) && !final:
			return false
		}
	case syntaxMistralArray:
		switch rest[0] {
		case ',':
			if s.callsOpen() {
				sep := s.buf[:len(s.buf)-len(rest)+1]
				s.buf = rest[1:]
				*c = callState{syntax: syntaxMistralArray, phase: phaseHeader, inArray: true, explicit: c.explicit}
				c.raw.WriteString(sep)
				return true
			}
		case ']':
			s.buf = rest[1:]
		}
	}
	s.leaveCall()
	return true
}

func (s *parserState) leaveCall() {
	s.call = nil
	s.mode = modeContent
	s.tag()
}

// failCall gives a call that turned out not to be one back as content.
// A call already announced is ended first: the stream cannot take it
// back, but Result leaves it out.
func (s *parserState) failCall() {
	c := s.call
	if c.started {
		s.emit(Event{Kind: EventToolCallEnd, Index: c.index})
	}
	s.call = nil
	s.mode = modeContent
	s.atStart, s.sepOK = false, false
	s.pendingWS, s.dropWS = "", false
	s.text(EventContent, c.raw.String())
}

// text emits a content or reasoning delta, holding back trailing
// whitespace (it is dropped if a tag follows) and dropping leading
// whitespace after a tag.
func (s *parserState) text(kind EventKind, t string) {
	if t == "" {
		return
	}
	if s.dropWS {
		t = strings.TrimLeftFunc(t, unicode.IsSpace)
		if t == "" {
			return
		}
		s.dropWS = false
	}
	core := strings.TrimRightFunc(t, unicode.IsSpace)
	if core == "" {
		s.pendingWS += t
		return
	}
	out := s.pendingWS + core
	s.pendingWS = t[len(core):]
	s.emitText(kind, out)
}

func (s *parserState) emitText(kind EventKind, t string) {
	if kind == EventReasoning {
		s.reasoning.WriteString(t)
	} else {
		s.content.WriteString(t)
	}
	s.emit(Event{Kind: kind, Text: t})
}

// tag marks a structural tag: whitespace around it is not text.
func (s *parserState) tag() {
	s.pendingWS, s.dropWS = "", true
}

func (s *parserState) flushWS() {
	if s.pendingWS == "" {
		return
	}
	kind := EventContent
	if s.mode == modeReasoning {
		kind = EventReasoning
	}
	ws := s.pendingWS
	s.pendingWS = ""
	s.emitText(kind, ws)
}

// emit appends an event, merging text deltas of the same kind.
func (s *parserState) emit(e Event) {
	if n := len(s.out); n > 0 && (e.Kind == EventContent || e.Kind == EventReasoning || e.Kind == EventToolCallArgs) {
		last := &s.out[n-1]
		if last.Kind == e.Kind && last.Index == e.Index {
			last.Text += e.Text
			return
		}
	}
	s.out = append(s.out, e)
}

// partialSuffix is the length of the longest suffix of s that is a proper
// prefix of tag: text that may yet become tag.
func partialSuffix(s, tag string) int {
	for n := min(len(s), len(tag)-1); n > 0; n-- {
		if strings.HasSuffix(s, tag[:n]) {
			return n
		}
	}
	return 0
}

type headerStatus uint8

const (
	headerNeedMore headerStatus = iota
	headerMatched               // name known, arguments value starts at end
	headerFull                  // an unusual call object: read it whole
	headerNotCall
)

type headerMatch struct {
	status headerStatus
	strict bool
	name   string
	end    int
}

// matchHeader reads the start of a call object: {"name": "…", then
// "arguments" (or "parameters") and its colon. "type" and "id" members
// may come first. strict (no opening tag) refuses anything unusual;
// otherwise an unusual order or member asks for the whole object.
func matchHeader(s string, tools map[string]bool, strict bool) headerMatch {
	more := headerMatch{status: headerNeedMore, strict: strict}
	no := headerMatch{status: headerNotCall, strict: strict}
	odd := headerMatch{status: headerFull, strict: strict}
	if strict {
		odd = no
	}
	i := skipSpace(s, 0)
	if i == len(s) {
		return more
	}
	if s[i] != '{' {
		return no
	}
	i++
	name := ""
	for {
		if i = skipSpace(s, i); i == len(s) {
			return more
		}
		if s[i] != '"' {
			if s[i] == '}' && name != "" {
				return odd // no arguments
			}
			return no
		}
		key, n, st := readString(s[i:])
		if st != headerMatched {
			return headerMatch{status: st, strict: strict}
		}
		if i = skipSpace(s, i+n); i == len(s) {
			return more
		}
		if s[i] != ':' {
			return no
		}
		if i = skipSpace(s, i+1); i == len(s) {
			return more
		}
		switch key {
		case "arguments", "parameters":
			if name == "" {
				return odd
			}
			return headerMatch{status: headerMatched, strict: strict, name: name, end: i}
		case "name", "type", "id":
			if s[i] != '"' {
				return odd
			}
			v, n, st := readString(s[i:])
			switch {
			case st == headerNeedMore && key == "name" && !toolPrefix(tools, v):
				return no
			case st != headerMatched:
				return headerMatch{status: st, strict: strict}
			}
			if key == "name" {
				if !tools[v] {
					return no
				}
				name = v
			}
			i += n
		default:
			return odd
		}
		if i = skipSpace(s, i); i == len(s) {
			return more
		}
		switch s[i] {
		case ',':
			i++
		case '}':
			if name != "" {
				return odd
			}
			return no
		default:
			return no
		}
	}
}

// toolPrefix reports whether some tool name starts with p.
func toolPrefix(tools map[string]bool, p string) bool {
	for name := range tools {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func skipSpace(s string, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}

// readString reads the JSON string at the start of s: its value, its
// length, and headerMatched, headerNeedMore (unterminated; the value read
// so far is returned, escapes undecoded) or headerNotCall (invalid).
func readString(s string) (string, int, headerStatus) {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			var v string
			if json.Unmarshal([]byte(s[:i+1]), &v) != nil {
				return "", 0, headerNotCall
			}
			return v, i + 1, headerMatched
		}
	}
	return s[1:], 0, headerNeedMore
}
