package ssecheck

import (
	"errors"
	"fmt"
	"io"

	"github.com/helexa-ai/cortex/internal/wire/sse"
)

type chatChoiceState struct {
	sawRole  bool
	finished bool
	calls    map[int64]string // tool call index → id
}

// OpenAIChatStream reads a chat completions stream to its end and
// reports the first departure from what OpenAI sends and its SDKs expect:
// every event an unnamed (or "error") event whose data is a
// chat.completion.chunk object with the same id throughout; the role sent
// once per choice, in its first delta, as "assistant"; tool call fragments
// indexed 0, 1, 2… and streamed one after another, the first fragment of
// each carrying id, type "function" and the function name; finish_reason set exactly once per choice, with nothing for that
// choice after it; at most one usage chunk, with no choices, after every
// finish_reason; then "data: [DONE]" and nothing else. A mid-stream error
// ({"error":{…}}) ends the stream instead (an optional [DONE] may follow).
func OpenAIChatStream(r io.Reader) error {
	it := &eventIter{r: sse.NewReader(r)}
	var (
		id       string
		chunks   int
		sawUsage bool
		choices  = map[int64]*chatChoiceState{}
	)
	for {
		ev, err := it.next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("stream ended after %d events without data: [DONE]", it.n)
		}
		if err != nil {
			return fmt.Errorf("reading event %d: %w", it.n+1, err)
		}
		if ev.Event != "" && ev.Event != "error" {
			return it.errf("unexpected event name %q; chat streams use unnamed events", ev.Event)
		}
		if ev.IsDone() {
			if chunks == 0 {
				return it.errf("[DONE] before any chunk")
			}
			for idx, c := range choices {
				if !c.finished {
					return it.errf("[DONE] but choice %d never got a finish_reason", idx)
				}
			}
			return it.expectEnd(false)
		}
		o, err := decodeObj(ev.Data)
		if err != nil {
			return it.errf("%v", err)
		}
		if e, ok := o.obj("error"); ok {
			if _, err := e.mustStr("message"); err != nil {
				return it.errf("error event: %v", err)
			}
			return it.expectEnd(true)
		}
		if ev.Event == "error" {
			return it.errf("event named error without an error object")
		}
		chunks++
		if err := checkChatChunk(o, &id, choices, &sawUsage); err != nil {
			return it.errf("%v", err)
		}
	}
}

func checkChatChunk(o obj, id *string, choices map[int64]*chatChoiceState, sawUsage *bool) error {
	if typ, _ := o.str("object"); typ != "chat.completion.chunk" {
		return fmt.Errorf(`object = %q, want "chat.completion.chunk"`, typ)
	}
	cid, err := o.mustStr("id")
	if err != nil {
		return err
	}
	if cid == "" {
		return errors.New("empty id")
	}
	if *id == "" {
		*id = cid
	} else if cid != *id {
		return fmt.Errorf("id changed from %q to %q", *id, cid)
	}
	if _, err := o.mustStr("model"); err != nil {
		return err
	}
	if _, err := o.mustInt("created"); err != nil {
		return err
	}
	list, err := o.objList("choices")
	if err != nil {
		return err
	}
	if *sawUsage {
		return errors.New("chunk after the usage chunk")
	}
	if !o.isNull("usage") {
		u, err := o.mustObj("usage")
		if err != nil {
			return err
		}
		if len(list) != 0 {
			return errors.New("usage chunk must have an empty choices array")
		}
		p, err1 := u.mustInt("prompt_tokens")
		c, err2 := u.mustInt("completion_tokens")
		t, err3 := u.mustInt("total_tokens")
		if err := errors.Join(err1, err2, err3); err != nil {
			return fmt.Errorf("usage: %w", err)
		}
		if p < 0 || c < 0 || t != p+c {
			return fmt.Errorf("usage: total_tokens %d != prompt_tokens %d + completion_tokens %d", t, p, c)
		}
		for idx, st := range choices {
			if !st.finished {
				return fmt.Errorf("usage chunk before choice %d finished", idx)
			}
		}
		*sawUsage = true
		return nil
	}
	if len(list) == 0 {
		return errors.New("chunk with no choices and no usage")
	}
	for _, ch := range list {
		if err := checkChatChoice(ch, choices); err != nil {
			return err
		}
	}
	return nil
}

func checkChatChoice(ch obj, choices map[int64]*chatChoiceState) error {
	idx, err := ch.mustInt("index")
	if err != nil {
		return fmt.Errorf("choice: %w", err)
	}
	if !ch.has("finish_reason") {
		return fmt.Errorf("choice %d: finish_reason must be present (null until the end)", idx)
	}
	st := choices[idx]
	first := st == nil
	if first {
		st = &chatChoiceState{calls: map[int64]string{}}
		choices[idx] = st
	}
	if st.finished {
		return fmt.Errorf("choice %d: chunk after its finish_reason", idx)
	}
	delta, err := ch.mustObj("delta")
	if err != nil {
		return fmt.Errorf("choice %d: %w", idx, err)
	}
	if delta.has("role") && !delta.isNull("role") {
		role, _ := delta.str("role")
		if role != "assistant" {
			return fmt.Errorf("choice %d: role %q, want \"assistant\"", idx, role)
		}
		if st.sawRole {
			return fmt.Errorf("choice %d: role sent twice", idx)
		}
		if !first {
			return fmt.Errorf("choice %d: role sent after the first delta", idx)
		}
		st.sawRole = true
	}
	for _, key := range []string{"content", "reasoning_content", "refusal"} {
		if !delta.isNull(key) {
			if _, ok := delta.str(key); !ok {
				return fmt.Errorf("choice %d: delta.%s is not a string", idx, key)
			}
		}
	}
	if !delta.isNull("tool_calls") {
		calls, err := delta.objList("tool_calls")
		if err != nil {
			return fmt.Errorf("choice %d: %w", idx, err)
		}
		for _, tc := range calls {
			if err := checkChatToolCallDelta(tc, st); err != nil {
				return fmt.Errorf("choice %d: %w", idx, err)
			}
		}
	}
	if !ch.isNull("finish_reason") {
		fr, ok := ch.str("finish_reason")
		switch {
		case !ok:
			return fmt.Errorf("choice %d: finish_reason is not a string", idx)
		case fr == "stop", fr == "length", fr == "content_filter", fr == "function_call":
		case fr == "tool_calls":
			if len(st.calls) == 0 {
				return fmt.Errorf("choice %d: finish_reason tool_calls without any tool call", idx)
			}
		default:
			return fmt.Errorf("choice %d: unknown finish_reason %q", idx, fr)
		}
		st.finished = true
	}
	return nil
}

func checkChatToolCallDelta(tc obj, st *chatChoiceState) error {
	i, err := tc.mustInt("index")
	if err != nil {
		return fmt.Errorf("tool call: %w", err)
	}
	fn, ok := tc.obj("function")
	if !ok && tc.has("function") {
		return fmt.Errorf("tool call %d: function is not an object", i)
	}
	prev, seen := st.calls[i]
	id, hasID := tc.str("id")
	if !seen {
		if i != int64(len(st.calls)) {
			return fmt.Errorf("tool call index %d out of order (want %d)", i, len(st.calls))
		}
		if !hasID || id == "" {
			return fmt.Errorf("tool call %d: first fragment has no id", i)
		}
		if typ, _ := tc.str("type"); typ != "function" {
			return fmt.Errorf("tool call %d: first fragment type %q, want \"function\"", i, typ)
		}
		if name, _ := fn.str("name"); name == "" {
			return fmt.Errorf("tool call %d: first fragment has no function name", i)
		}
		st.calls[i] = id
	} else {
		if hasID && id != "" && id != prev {
			return fmt.Errorf("tool call %d: id changed from %q to %q", i, prev, id)
		}
		if i != int64(len(st.calls))-1 {
			return fmt.Errorf("tool call %d continued after tool call %d began; calls must stream one after another", i, len(st.calls)-1)
		}
	}
	if fn != nil && !fn.isNull("arguments") {
		if _, ok := fn.str("arguments"); !ok {
			return fmt.Errorf("tool call %d: arguments is not a string", i)
		}
	}
	return nil
}
