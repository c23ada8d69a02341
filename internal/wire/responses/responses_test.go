package responses

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helexa-ai/cortex/internal/wire/internal/golden"
	"github.com/helexa-ai/cortex/internal/wire/openai"
	"github.com/helexa-ai/cortex/internal/wire/sse"
	"github.com/helexa-ai/cortex/internal/wire/sse/ssecheck"
)

func writeString(t *testing.T, evs ...[]StreamEvent) string {
	t.Helper()
	var b bytes.Buffer
	w := sse.NewWriter(&b)
	for _, e := range evs {
		if err := WriteEvents(w, e); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

func TestStreamTranslatorLifecycle(t *testing.T) {
	req := &Request{Model: "m"}
	// Failing before anything was streamed still yields created,
	// in_progress and failed, with the error's code kept.
	tr := NewStreamTranslator(req, "resp_1", 5)
	out := writeString(t, tr.Fail(openai.InvalidRequest("", openai.CodeContextLengthExceeded, "The prompt is too long.")))
	if err := ssecheck.ResponsesStream(strings.NewReader(out)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, `"error":{"code":"context_length_exceeded","message":"The prompt is too long."}`) {
		t.Fatalf("error not carried:\n%s", out)
	}
	if evs, err := tr.Chunk(&openai.ChatChunk{}); evs != nil || err != nil {
		t.Fatal("Chunk after Fail produced output")
	}

	// Plain errors do not leak.
	tr = NewStreamTranslator(req, "resp_2", 5)
	out = writeString(t, tr.Start(), tr.Fail(errors.New("dial tcp 10.1.2.3:13131")))
	if err := ssecheck.ResponsesStream(strings.NewReader(out)); err != nil || strings.Contains(out, "10.1.2.3") {
		t.Fatalf("%v\n%s", err, out)
	}

	// Finishing with no chunks yields one empty message.
	tr = NewStreamTranslator(req, "resp_3", 5)
	out = writeString(t, tr.Finish())
	if err := ssecheck.ResponsesStream(strings.NewReader(out)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := tr.Response(); got.Status != StatusCompleted || len(got.Output) != 1 || got.Output[0].Type != OutputMessage {
		t.Fatalf("final response %+v", got)
	}
}

func TestFailureCode(t *testing.T) {
	tests := []struct {
		err  *openai.Error
		want string
	}{
		{openai.RateLimited("slow"), openai.CodeRateLimitExceeded},
		{&openai.Error{Status: 400, Message: "x"}, "invalid_prompt"},
		{&openai.Error{Status: 500, Message: "x"}, openai.CodeServerError},
		{openai.Unavailable("loading"), openai.CodeServiceUnavailable},
		{openai.InvalidRequest("", openai.CodeContextLengthExceeded, "long"), openai.CodeContextLengthExceeded},
	}
	for _, tt := range tests {
		if got := failureCode(tt.err); got != tt.want {
			t.Errorf("failureCode(%+v) = %s, want %s", tt.err, got, tt.want)
		}
	}
	ev := ErrorEventFor(openai.InvalidRequest("input", openai.CodeInvalidValue, "bad"), 0)
	out := writeString(t, []StreamEvent{ev})
	if err := ssecheck.ResponsesStream(strings.NewReader(out)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, `"code":"invalid_value","message":"bad","param":"input"`) {
		t.Fatalf("error event %s", out)
	}
}

func TestToolChoiceJSON(t *testing.T) {
	tests := []struct {
		in                string
		mode, name, amode string
		allowed           []string
		wantErr           bool
	}{
		{in: `"auto"`, mode: "auto"},
		{in: `"required"`, mode: "required"},
		{in: `"sometimes"`, wantErr: true},
		{in: `{"type":"function","name":"f"}`, mode: "function", name: "f"},
		{in: `{"type":"allowed_tools","mode":"auto","tools":[{"type":"function","name":"a"},{"type":"mcp","server_label":"x"}]}`, mode: "allowed_tools", amode: "auto", allowed: []string{"a"}},
		{in: `{"type":"web_search_preview"}`, mode: "web_search_preview"},
		{in: `{"name":"f"}`, wantErr: true},
		{in: `5`, wantErr: true},
	}
	for _, tt := range tests {
		var c ToolChoice
		err := json.Unmarshal([]byte(tt.in), &c)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v", tt.in, err)
			continue
		}
		if err != nil {
			continue
		}
		if c.Mode != tt.mode || c.Name != tt.name || c.AllowedMode != tt.amode || strings.Join(c.Allowed, ",") != strings.Join(tt.allowed, ",") {
			t.Errorf("%s: decoded %+v", tt.in, c)
		}
		back, _ := json.Marshal(c)
		if string(back) != tt.in {
			t.Errorf("%s: echoed as %s", tt.in, back)
		}
	}
}

func TestToolJSON(t *testing.T) {
	var tools []Tool
	in := `[{"type":"function","name":"a","parameters":{"type":"object"},"strict":true},
		{"type":"function","function":{"name":"b","description":"nested"}},
		{"type":"web_search","filters":{"allowed_domains":["x"]},"name":{"odd":true}},
		{"type":"custom","name":"apply_patch","format":{"type":"grammar"}}]`
	if err := json.Unmarshal([]byte(in), &tools); err != nil {
		t.Fatal(err)
	}
	if tools[0].Name != "a" || *tools[0].Strict != true || string(tools[0].Parameters) != `{"type":"object"}` {
		t.Errorf("flat tool %+v", tools[0])
	}
	if tools[1].Name != "b" || tools[1].Description != "nested" || tools[1].Type != "function" {
		t.Errorf("nested tool %+v", tools[1])
	}
	if tools[2].Type != "web_search" || tools[2].Name != "" {
		t.Errorf("hosted tool %+v", tools[2])
	}
	if tools[3].Type != "custom" || tools[3].Name != "apply_patch" {
		t.Errorf("custom tool %+v", tools[3])
	}
}

func TestWantsSummary(t *testing.T) {
	s := func(v string) *string { return &v }
	tests := []struct {
		r    *ReasoningConfig
		want bool
	}{
		{nil, false},
		{&ReasoningConfig{}, false},
		{&ReasoningConfig{Effort: s("high")}, false},
		{&ReasoningConfig{Summary: s("auto")}, true},
		{&ReasoningConfig{Summary: s("detailed")}, true},
		{&ReasoningConfig{Summary: s("none")}, false},
		{&ReasoningConfig{GenerateSummary: s("concise")}, true},
	}
	for i, tt := range tests {
		if got := tt.r.WantsSummary(); got != tt.want {
			t.Errorf("%d: WantsSummary = %v", i, got)
		}
	}
}

func TestIDs(t *testing.T) {
	if got := ResponseID("chatcmpl-ab-c"); got != "resp_abc" {
		t.Errorf("ResponseID = %s", got)
	}
	if a, b := ResponseID(""), ResponseID(""); a == b || !strings.HasPrefix(a, "resp_") {
		t.Errorf("random ids %s %s", a, b)
	}
	if got := ItemID("resp_x", OutputFunctionCall, 3); got != "fc_x_3" {
		t.Errorf("ItemID = %s", got)
	}
	if got := CallID("", "resp_x", 2); got != "call_x_2" {
		t.Errorf("CallID = %s", got)
	}
	if got := CallID("call_1", "resp_x", 2); got != "call_1" {
		t.Errorf("CallID kept = %s", got)
	}
}

func TestInputItemRoundTrip(t *testing.T) {
	in := `[{"role":"user","content":"hi"},{"type":"web_search_call","id":"ws","action":{"query":"q"}},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"}]`
	var input Input
	if err := json.Unmarshal([]byte(in), &input); err != nil {
		t.Fatal(err)
	}
	if input.Items[1].Type != "web_search_call" || input.Items[1].Raw == nil {
		t.Fatalf("unknown item %+v", input.Items[1])
	}
	out, err := json.Marshal(input)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != in {
		t.Fatalf("round trip\n%s\nwant\n%s", out, in)
	}
}

// FuzzRequest decodes and translates arbitrary request bodies: no panic,
// failures are 4xx *openai.Error, successes pass chat validation. The
// golden request fixtures are its seeds.
func FuzzRequest(f *testing.F) {
	for _, in := range golden.Inputs(f, "testdata/requests/*.json") {
		data, err := os.ReadFile(filepath.Clean(in))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req Request
		err := openai.DecodeJSONBytes(body, &req)
		var chat *openai.ChatRequest
		if err == nil {
			chat, _, err = ToOpenAIChat(&req)
		}
		if err != nil {
			var e *openai.Error
			if !errors.As(err, &e) || e.Status < 400 || e.Status > 499 || e.Message == "" {
				t.Fatalf("error %v is not a client *openai.Error", err)
			}
			return
		}
		if err := chat.Validate(); err != nil {
			t.Fatalf("translation produced an invalid chat request: %v", err)
		}
		// The response echo must always encode.
		if _, err := json.Marshal(FromOpenAIChat(&openai.ChatResponse{ID: "x"}, &req)); err != nil {
			t.Fatalf("response echo does not encode: %v", err)
		}
	})
}

// FuzzStreamTranslator feeds arbitrary upstream chat streams through the
// translator: the client must always get a stream that follows the
// Responses grammar.
func FuzzStreamTranslator(f *testing.F) {
	for _, in := range golden.Inputs(f, "testdata/streams/*.sse") {
		data, err := os.ReadFile(filepath.Clean(in))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, strings.HasPrefix(filepath.Base(in), "summary_"))
	}
	f.Fuzz(func(t *testing.T, upstream []byte, summary bool) {
		name := "plain"
		if summary {
			name = "summary_"
		}
		got := runStream(t, streamRequest(name), upstream)
		if err := ssecheck.ResponsesStream(bytes.NewReader(got)); err != nil {
			t.Fatalf("translated stream breaks the grammar: %v\n%s", err, got)
		}
	})
}
