// Package hermes recovers tool calls and reasoning from models that write
// them as plain text — Hermes/Qwen-style `<tool_call>{"name":…,
// "arguments":…}</tool_call>` and `<think>…</think>` — when the upstream
// did not parse them into native fields. The parser is incremental: a tag
// split across stream chunks is still recognised, and text is released as
// soon as it cannot be the start of a tag.
package hermes

import (
	"encoding/json"
	"strings"
)

const (
	thinkOpen  = "<think>"
	thinkClose = "</think>"
	callOpen   = "<tool_call>"
	callClose  = "</tool_call>"
)

// Call is one recovered tool call.
type Call struct {
	Name string
	// Args is the arguments as a JSON object.
	Args string
}

// Events receives the parsed stream.
type Events struct {
	Text    func(string)
	Thought func(string)
	Call    func(Call)
}

type state int

const (
	stText state = iota
	stThink
	stCall
)

// Parser splits a text stream. The zero value is not usable; use New.
type Parser struct {
	ev    Events
	st    state
	held  string          // text that may be the start of a tag
	call  strings.Builder // body of the tool call being read
	Calls int             // calls recovered so far
}

// New returns a parser delivering to ev.
func New(ev Events) *Parser { return &Parser{ev: ev} }

// Feed consumes the next chunk.
func (p *Parser) Feed(s string) {
	s = p.held + s
	p.held = ""
	for s != "" {
		var tags []string
		switch p.st {
		case stText:
			tags = []string{thinkOpen, callOpen}
		case stThink:
			tags = []string{thinkClose}
		case stCall:
			tags = []string{callClose}
		}
		i, tag := firstTag(s, tags)
		if i < 0 {
			keep := partialSuffix(s, tags)
			p.emit(s[:len(s)-keep])
			p.held = s[len(s)-keep:]
			return
		}
		p.emit(s[:i])
		s = s[i+len(tag):]
		switch tag {
		case thinkOpen:
			p.st = stThink
		case callOpen:
			p.st = stCall
			p.call.Reset()
		case thinkClose:
			p.st = stText
		case callClose:
			p.st = stText
			p.endCall(true)
		}
	}
}

// Close flushes what is held at the end of the stream. An unterminated
// tool call whose body is a complete call is still delivered (small models
// stop right after the JSON).
func (p *Parser) Close() {
	held := p.held
	p.held = ""
	p.emit(held)
	if p.st == stCall {
		p.endCall(false)
	}
	p.st = stText
}

func (p *Parser) emit(s string) {
	if s == "" {
		return
	}
	switch p.st {
	case stText:
		if p.ev.Text != nil {
			p.ev.Text(s)
		}
	case stThink:
		if p.ev.Thought != nil {
			p.ev.Thought(s)
		}
	case stCall:
		p.call.WriteString(s)
	}
}

func (p *Parser) endCall(closed bool) {
	body := strings.TrimSpace(p.call.String())
	p.call.Reset()
	if c, ok := ParseCall(body); ok {
		p.Calls++
		if p.ev.Call != nil {
			p.ev.Call(c)
		}
		return
	}
	// Not a call after all: give the text back rather than lose it.
	raw := callOpen + body
	if closed {
		raw += callClose
	}
	if p.ev.Text != nil {
		p.ev.Text(raw)
	}
}

// ParseCall decodes a tool call body: {"name": …, "arguments": {…}}
// (arguments may also be a JSON string holding the object, or be called
// "parameters").
func ParseCall(body string) (Call, bool) {
	var v struct {
		Name       string          `json:"name"`
		Arguments  json.RawMessage `json:"arguments"`
		Parameters json.RawMessage `json:"parameters"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil || v.Name == "" {
		return Call{}, false
	}
	args := v.Arguments
	if len(args) == 0 {
		args = v.Parameters
	}
	if len(args) == 0 || string(args) == "null" {
		return Call{Name: v.Name, Args: "{}"}, true
	}
	var s string
	if json.Unmarshal(args, &s) == nil {
		args = json.RawMessage(s)
	}
	var obj map[string]any
	if json.Unmarshal(args, &obj) != nil {
		return Call{}, false
	}
	return Call{Name: v.Name, Args: string(args)}, true
}

func firstTag(s string, tags []string) (int, string) {
	best, which := -1, ""
	for _, t := range tags {
		if i := strings.Index(s, t); i >= 0 && (best < 0 || i < best) {
			best, which = i, t
		}
	}
	return best, which
}

// partialSuffix is the length of the longest suffix of s that is a proper
// prefix of one of tags.
func partialSuffix(s string, tags []string) int {
	keep := 0
	for _, t := range tags {
		for n := min(len(t)-1, len(s)); n > keep; n-- {
			if strings.HasSuffix(s, t[:n]) {
				keep = n
				break
			}
		}
	}
	return keep
}
