// Package ssecheck checks that an event stream follows a dialect's grammar
// exactly (OpenAIChatStream, AnthropicStream, ResponsesStream), so any test
// in the repository can assert a stream is what the official SDKs expect.
// It reads streams with package sse; nothing outside tests imports it.
package ssecheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/helexa-ai/cortex/internal/wire/sse"
)

// obj is a decoded JSON object, for the grammar checkers, which must see
// exactly which fields are present (a typed decode would hide a missing
// field behind its zero value).
type obj map[string]json.RawMessage

func decodeObj(data string) (obj, error) {
	var o obj
	dec := json.NewDecoder(bytes.NewReader([]byte(data)))
	if err := dec.Decode(&o); err != nil {
		return nil, fmt.Errorf("data is not a JSON object: %w", err)
	}
	if o == nil {
		return nil, errors.New("data is null, want a JSON object")
	}
	if dec.More() {
		return nil, errors.New("data has more than one JSON value")
	}
	return o, nil
}

func (o obj) has(key string) bool { _, ok := o[key]; return ok }

func (o obj) isNull(key string) bool {
	v, ok := o[key]
	return !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null"))
}

// str returns the string at key; ok is false when absent or not a string.
func (o obj) str(key string) (string, bool) {
	v, present := o[key]
	if !present {
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) != nil || bytes.TrimSpace(v)[0] != '"' {
		return "", false
	}
	return s, true
}

func (o obj) mustStr(key string) (string, error) {
	s, ok := o.str(key)
	if !ok {
		return "", fmt.Errorf("%q is missing or not a string", key)
	}
	return s, nil
}

func (o obj) int(key string) (int64, bool) {
	v, present := o[key]
	if !present {
		return 0, false
	}
	var n int64
	if json.Unmarshal(v, &n) != nil {
		return 0, false
	}
	return n, true
}

func (o obj) mustInt(key string) (int64, error) {
	n, ok := o.int(key)
	if !ok {
		return 0, fmt.Errorf("%q is missing or not an integer", key)
	}
	return n, nil
}

func (o obj) obj(key string) (obj, bool) {
	v, present := o[key]
	if !present {
		return nil, false
	}
	var m obj
	if json.Unmarshal(v, &m) != nil || m == nil {
		return nil, false
	}
	return m, true
}

func (o obj) mustObj(key string) (obj, error) {
	m, ok := o.obj(key)
	if !ok {
		return nil, fmt.Errorf("%q is missing or not an object", key)
	}
	return m, nil
}

func (o obj) list(key string) ([]json.RawMessage, bool) {
	v, present := o[key]
	if !present {
		return nil, false
	}
	var l []json.RawMessage
	if json.Unmarshal(v, &l) != nil || l == nil {
		return nil, false
	}
	return l, true
}

func (o obj) objList(key string) ([]obj, error) {
	l, ok := o.list(key)
	if !ok {
		return nil, fmt.Errorf("%q is missing or not an array", key)
	}
	out := make([]obj, len(l))
	for i, raw := range l {
		if json.Unmarshal(raw, &out[i]) != nil || out[i] == nil {
			return nil, fmt.Errorf("%s[%d] is not an object", key, i)
		}
	}
	return out, nil
}

// eventIter reads events for a checker and numbers them for messages.
type eventIter struct {
	r *sse.Reader
	n int
}

func (it *eventIter) next() (sse.Event, error) {
	ev, err := it.r.Next()
	if err == nil {
		it.n++
	}
	return ev, err
}

func (it *eventIter) errf(format string, args ...any) error {
	return fmt.Errorf("event %d: %s", it.n, fmt.Sprintf(format, args...))
}

// expectEnd checks nothing but an optional [DONE] follows a terminal event.
func (it *eventIter) expectEnd(allowDone bool) error {
	for {
		ev, err := it.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("after the final event: %w", err)
		}
		if allowDone && ev.IsDone() {
			allowDone = false
			continue
		}
		return it.errf("event %q after the stream's final event", firstNonEmpty(ev.Event, ev.Data))
	}
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
