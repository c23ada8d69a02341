package openai

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzChatRequest decodes arbitrary bodies and validates them: decoding and
// validation must never panic, every failure must be a 4xx *Error, and a
// request that passes must survive a marshal/decode round trip unchanged in
// what Validate sees.
func FuzzChatRequest(f *testing.F) {
	seeds := []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}}]}],"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"tool_choice":"required"}`,
		`{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"object"}}},"stop":"x","n":1,"temperature":2}`,
		`{"model":5}`,
		`[]`,
		``,
		`{"messages":[{"role":"user","content":{}}]}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req ChatRequest
		err := DecodeJSONBytes(body, &req)
		if err == nil {
			err = req.Validate()
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if e.Status < 400 || e.Status > 499 || e.Message == "" {
				t.Fatalf("error %+v is not a client error", e)
			}
			return
		}
		data, err := json.Marshal(&req)
		if err != nil {
			t.Fatalf("marshal valid request: %v", err)
		}
		var again ChatRequest
		if err := DecodeJSONBytes(data, &again); err != nil {
			t.Fatalf("re-decode %s: %v", data, err)
		}
		if err := again.Validate(); err != nil {
			t.Fatalf("round-tripped request no longer valid: %v\n%s", err, data)
		}
	})
}
