// Package toolcalls puts the tool-call deltas of an OpenAI chat stream in
// an order other dialects can render: one call at a time, each whole before
// the next begins. The Anthropic and Responses stream translators share it;
// each renders the calls with its own events.
//
// Servers differ in how they stream parallel calls: most send them one
// after another with an index; some omit the index (a new id then means a
// new call); some interleave calls. An interleaved call is held until the
// open one's arguments form a whole JSON value, then released in order.
package toolcalls

import (
	"encoding/json"
	"strings"

	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// Call is one tool call as it streams in.
type Call struct {
	ID, Name string
	Args     strings.Builder
	// Pos is the call's position among the message's calls.
	Pos int
	// Sent counts the bytes of Args already rendered.
	Sent int
	// Opened is set by the renderer once the call's block or item opened;
	// Closed once it closed.
	Opened, Closed bool
	// Buffered is the renderer's: arguments held back to be sent whole.
	Buffered bool
}

// Complete reports whether the call's arguments already form a whole JSON
// value, so nothing more is expected for it.
func (c *Call) Complete() bool {
	a := strings.TrimSpace(c.Args.String())
	return a != "" && json.Valid([]byte(a))
}

// Renderer renders calls in a dialect.
type Renderer interface {
	// Switch closes the open call's block or item before another call's
	// begins.
	Switch()
	// Flush opens c's block or item once it is named and renders the
	// arguments that arrived since the last flush.
	Flush(c *Call)
	// ProtocolError is the dialect's error for a stream it cannot render.
	ProtocolError(format string, args ...any) error
}

// Sequencer orders one message's tool-call deltas.
type Sequencer struct {
	// Noun names a call's unit in errors: "block" or "item".
	Noun string
	// Order lists the calls as they began.
	Order []*Call
	// Current is the call being rendered; Held those waiting for it.
	Current *Call
	Held    []*Call

	calls map[int]*Call
	last  int
}

// New returns an empty Sequencer whose errors call a call's unit noun.
func New(noun string) *Sequencer {
	return &Sequencer{Noun: noun, calls: map[int]*Call{}, last: -1}
}

// Add folds one delta in and renders what became renderable.
func (s *Sequencer) Add(tc openai.ToolCall, r Renderer) error {
	idx := s.last
	switch {
	case tc.Index != nil:
		idx = *tc.Index
	case idx < 0 || (tc.ID != "" && s.calls[idx] != nil && s.calls[idx].ID != "" && tc.ID != s.calls[idx].ID):
		// Without an index, a new id means a new call.
		idx = len(s.Order)
	}
	c := s.calls[idx]
	isNew := c == nil
	if isNew {
		c = &Call{Pos: len(s.Order)}
		s.calls[idx] = c
		s.Order = append(s.Order, c)
	}
	s.last = idx
	if c.Closed {
		if strings.TrimSpace(tc.Function.Arguments) == "" && tc.Function.Name == "" {
			return nil
		}
		return r.ProtocolError("tool call %d resumed after its %s was closed", idx, s.Noun)
	}
	if tc.ID != "" && c.ID == "" {
		c.ID = tc.ID
	}
	if tc.Function.Name != "" && c.Name == "" {
		c.Name = tc.Function.Name
	}
	c.Args.WriteString(tc.Function.Arguments)
	switch {
	case c == s.Current:
		r.Flush(c)
	case isNew && s.Current != nil && !s.Current.Complete():
		// The open call is still mid-arguments: a server interleaving
		// parallel calls. Hold this one until the open call completes.
		s.Held = append(s.Held, c)
		return nil
	case !isNew:
		// A held call stays held.
		return nil
	default:
		if err := s.named(r); err != nil {
			return err
		}
		r.Switch()
		s.Current = c
		r.Flush(c)
	}
	return s.release(r)
}

// release moves on to held calls once the open one is complete.
func (s *Sequencer) release(r Renderer) error {
	for len(s.Held) > 0 && (s.Current == nil || s.Current.Complete()) {
		if err := s.named(r); err != nil {
			return err
		}
		next := s.Held[0]
		s.Held = s.Held[1:]
		r.Switch()
		s.Current = next
		r.Flush(next)
	}
	return nil
}

// named fails when the call being left never said its function's name.
func (s *Sequencer) named(r Renderer) error {
	if s.Current != nil && !s.Current.Opened {
		return r.ProtocolError("tool call %q never named its function", s.Current.ID)
	}
	return nil
}

// Unnamed returns the first call, open or held, that never named its
// function: a stream ending so cannot be rendered.
func (s *Sequencer) Unnamed() *Call {
	for _, c := range append([]*Call{s.Current}, s.Held...) {
		if c != nil && c.Name == "" {
			return c
		}
	}
	return nil
}
