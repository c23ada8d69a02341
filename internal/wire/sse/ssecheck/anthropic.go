package ssecheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/helexa-ai/cortex/internal/wire/sse"
)

var anthropicStopReasons = map[string]bool{
	"end_turn": true, "max_tokens": true, "stop_sequence": true, "tool_use": true,
	"pause_turn": true, "refusal": true, "model_context_window_exceeded": true,
}

var anthropicErrorTypes = map[string]bool{
	"invalid_request_error": true, "authentication_error": true, "billing_error": true,
	"permission_error": true, "not_found_error": true, "request_too_large": true,
	"rate_limit_error": true, "timeout_error": true, "api_error": true, "overloaded_error": true,
}

// deltaTypesFor lists the content_block_delta types each block type takes.
var deltaTypesFor = map[string][]string{
	"text":              {"text_delta", "citations_delta"},
	"tool_use":          {"input_json_delta"},
	"server_tool_use":   {"input_json_delta"},
	"thinking":          {"thinking_delta", "signature_delta"},
	"redacted_thinking": {},
}

type anthropicState struct {
	started    bool
	nextIndex  int64
	open       bool
	openType   string
	openIndex  int64
	signed     bool
	partial    strings.Builder
	sawToolUse bool
	sawDelta   bool
	badInput   error
}

// AnthropicStream reads a Messages API stream to its end and reports
// the first departure from Anthropic's event grammar: every event named
// (the SDKs skip unnamed ones) with data whose "type" equals the name;
// message_start first, with an assistant message, empty content, null
// stop_reason and usage; then content blocks at indices 0, 1, 2… in order,
// never interleaved: content_block_start, deltas whose type fits the block
// (text_delta for text, input_json_delta for tool_use, thinking_delta and a
// signature_delta for thinking), content_block_stop; a tool_use block's
// partial_json adds up to a JSON object (unless max_tokens cut it); ping anywhere after message_start;
// one message_delta with a known stop_reason and usage.output_tokens; then
// message_stop and nothing else. An error event ends the stream at any
// point.
func AnthropicStream(r io.Reader) error {
	it := &eventIter{r: sse.NewReader(r)}
	var st anthropicState
	for {
		ev, err := it.next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("stream ended after %d events without message_stop", it.n)
		}
		if err != nil {
			return fmt.Errorf("reading event %d: %w", it.n+1, err)
		}
		if ev.Event == "" {
			return it.errf("unnamed event (data %.60q); Anthropic SDKs skip events without an event: line", ev.Data)
		}
		o, err := decodeObj(ev.Data)
		if err != nil {
			return it.errf("%s: %v", ev.Event, err)
		}
		typ, _ := o.str("type")
		if typ != ev.Event {
			return it.errf("event name %q but data type %q", ev.Event, typ)
		}
		if typ == "error" {
			if err := checkAnthropicError(o); err != nil {
				return it.errf("%v", err)
			}
			return it.expectEnd(false)
		}
		if !st.started && typ != "message_start" {
			return it.errf("%s before message_start", typ)
		}
		done, err := st.step(typ, o)
		if err != nil {
			return it.errf("%s: %v", typ, err)
		}
		if done {
			return it.expectEnd(false)
		}
	}
}

func checkAnthropicError(o obj) error {
	e, err := o.mustObj("error")
	if err != nil {
		return fmt.Errorf("error event: %w", err)
	}
	et, err := e.mustStr("type")
	if err != nil {
		return fmt.Errorf("error event: %w", err)
	}
	if !anthropicErrorTypes[et] {
		return fmt.Errorf("error event: unknown error type %q", et)
	}
	if _, err := e.mustStr("message"); err != nil {
		return fmt.Errorf("error event: %w", err)
	}
	return nil
}

func (st *anthropicState) step(typ string, o obj) (done bool, err error) {
	switch typ {
	case "message_start":
		if st.started {
			return false, errors.New("second message_start")
		}
		st.started = true
		return false, checkMessageStart(o)
	case "ping":
		return false, nil
	case "content_block_start":
		return false, st.blockStart(o)
	case "content_block_delta":
		return false, st.blockDelta(o)
	case "content_block_stop":
		return false, st.blockStop(o)
	case "message_delta":
		return false, st.messageDelta(o)
	case "message_stop":
		if !st.sawDelta {
			return false, errors.New("message_stop before message_delta")
		}
		return true, nil
	default:
		return false, fmt.Errorf("unknown event type %q", typ)
	}
}

func checkMessageStart(o obj) error {
	m, err := o.mustObj("message")
	if err != nil {
		return err
	}
	if id, _ := m.str("id"); id == "" {
		return errors.New("message.id is missing or empty")
	}
	if t, _ := m.str("type"); t != "message" {
		return fmt.Errorf(`message.type = %q, want "message"`, t)
	}
	if r, _ := m.str("role"); r != "assistant" {
		return fmt.Errorf(`message.role = %q, want "assistant"`, r)
	}
	if _, err := m.mustStr("model"); err != nil {
		return fmt.Errorf("message: %w", err)
	}
	content, ok := m.list("content")
	if !ok || len(content) != 0 {
		return errors.New("message.content must be an empty array")
	}
	if !m.has("stop_reason") || !m.isNull("stop_reason") {
		return errors.New("message.stop_reason must be present and null")
	}
	if !m.has("stop_sequence") || !m.isNull("stop_sequence") {
		return errors.New("message.stop_sequence must be present and null")
	}
	u, err := m.mustObj("usage")
	if err != nil {
		return fmt.Errorf("message: %w", err)
	}
	if _, err := u.mustInt("input_tokens"); err != nil {
		return fmt.Errorf("message.usage: %w", err)
	}
	if _, err := u.mustInt("output_tokens"); err != nil {
		return fmt.Errorf("message.usage: %w", err)
	}
	return nil
}

func (st *anthropicState) blockStart(o obj) error {
	if st.sawDelta {
		return errors.New("content block after message_delta")
	}
	if st.open {
		return fmt.Errorf("block %d started while block %d is open", st.nextIndex, st.openIndex)
	}
	idx, err := o.mustInt("index")
	if err != nil {
		return err
	}
	if idx != st.nextIndex {
		return fmt.Errorf("index %d, want %d", idx, st.nextIndex)
	}
	cb, err := o.mustObj("content_block")
	if err != nil {
		return err
	}
	bt, _ := cb.str("type")
	if _, known := deltaTypesFor[bt]; !known {
		return fmt.Errorf("unknown content block type %q", bt)
	}
	st.signed = false
	switch bt {
	case "text":
		if _, err := cb.mustStr("text"); err != nil {
			return fmt.Errorf("text block: %w", err)
		}
	case "thinking":
		if _, err := cb.mustStr("thinking"); err != nil {
			return fmt.Errorf("thinking block: %w", err)
		}
		if sig, ok := cb.str("signature"); ok && sig != "" {
			st.signed = true
		}
	case "redacted_thinking":
		if _, err := cb.mustStr("data"); err != nil {
			return fmt.Errorf("redacted_thinking block: %w", err)
		}
	case "tool_use", "server_tool_use":
		id, _ := cb.str("id")
		name, _ := cb.str("name")
		if id == "" || name == "" {
			return fmt.Errorf("%s block needs a non-empty id and name", bt)
		}
		in, ok := cb.obj("input")
		if !ok || len(in) != 0 {
			return fmt.Errorf("%s block must start with input {}", bt)
		}
		if bt == "tool_use" {
			st.sawToolUse = true
		}
	}
	st.open, st.openType, st.openIndex = true, bt, idx
	st.partial.Reset()
	st.nextIndex++
	return nil
}

func (st *anthropicState) blockDelta(o obj) error {
	idx, err := o.mustInt("index")
	if err != nil {
		return err
	}
	if !st.open || idx != st.openIndex {
		return fmt.Errorf("delta for block %d, which is not open", idx)
	}
	d, err := o.mustObj("delta")
	if err != nil {
		return err
	}
	dt, _ := d.str("type")
	allowed := false
	for _, t := range deltaTypesFor[st.openType] {
		allowed = allowed || t == dt
	}
	if !allowed {
		return fmt.Errorf("delta type %q in a %s block", dt, st.openType)
	}
	switch dt {
	case "text_delta":
		_, err = d.mustStr("text")
	case "thinking_delta":
		if st.signed {
			return errors.New("thinking_delta after signature_delta")
		}
		_, err = d.mustStr("thinking")
	case "signature_delta":
		var sig string
		sig, err = d.mustStr("signature")
		if err == nil && sig == "" {
			err = errors.New("empty signature")
		}
		st.signed = true
	case "input_json_delta":
		var p string
		p, err = d.mustStr("partial_json")
		st.partial.WriteString(p)
	case "citations_delta":
		_, err = d.mustObj("citation")
	}
	return err
}

func (st *anthropicState) blockStop(o obj) error {
	idx, err := o.mustInt("index")
	if err != nil {
		return err
	}
	if !st.open || idx != st.openIndex {
		return fmt.Errorf("stop for block %d, which is not open", idx)
	}
	switch st.openType {
	case "thinking":
		if !st.signed {
			return fmt.Errorf("thinking block %d stopped without a signature_delta", idx)
		}
	case "tool_use", "server_tool_use":
		if s := st.partial.String(); s != "" && st.badInput == nil {
			var v map[string]any
			if err := json.Unmarshal([]byte(s), &v); err != nil || v == nil {
				// Legal only when the turn was cut by max_tokens, which
				// message_delta will tell.
				st.badInput = fmt.Errorf("tool_use block %d: partial_json adds up to %.80q, not a JSON object", idx, s)
			}
		}
	}
	st.open = false
	return nil
}

func (st *anthropicState) messageDelta(o obj) error {
	if st.sawDelta {
		return errors.New("second message_delta")
	}
	if st.open {
		return fmt.Errorf("message_delta while block %d is open", st.openIndex)
	}
	st.sawDelta = true
	d, err := o.mustObj("delta")
	if err != nil {
		return err
	}
	sr, ok := d.str("stop_reason")
	if !ok || !anthropicStopReasons[sr] {
		return fmt.Errorf("delta.stop_reason %q is missing or unknown", sr)
	}
	if !d.has("stop_sequence") {
		return errors.New("delta.stop_sequence must be present (null unless stop_reason is stop_sequence)")
	}
	if seq, ok := d.str("stop_sequence"); ok != (sr == "stop_sequence") || (ok && seq == "") {
		return fmt.Errorf("delta.stop_sequence %q does not fit stop_reason %q", seq, sr)
	}
	if st.badInput != nil && sr != "max_tokens" {
		return fmt.Errorf("%w (and stop_reason is %s, not max_tokens)", st.badInput, sr)
	}
	if sr == "tool_use" && !st.sawToolUse {
		return errors.New("stop_reason tool_use without a tool_use block")
	}
	u, err := o.mustObj("usage")
	if err != nil {
		return err
	}
	if _, err := u.mustInt("output_tokens"); err != nil {
		return fmt.Errorf("usage: %w", err)
	}
	return nil
}
