package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/helexa-ai/cortex/internal/wire/openai"
	"github.com/helexa-ai/cortex/internal/wire/sse"
	"github.com/helexa-ai/cortex/internal/wire/sse/ssecheck"
)

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		status int
		want   string
	}{
		{400, ErrInvalidRequest}, {422, ErrInvalidRequest}, {401, ErrAuthentication}, {402, ErrBilling},
		{403, ErrPermission}, {404, ErrNotFound}, {413, ErrRequestTooLarge}, {429, ErrRateLimit},
		{500, ErrAPI}, {502, ErrAPI}, {503, ErrOverloaded}, {529, ErrOverloaded}, {504, ErrTimeout},
	}
	for _, tt := range tests {
		env := ErrorFromOpenAI(tt.status, openai.ErrorBody{Error: openai.ErrorDetail{Message: "m"}})
		if env.Type != "error" || env.Error.Type != tt.want || env.Error.Message != "m" {
			t.Errorf("ErrorFromOpenAI(%d) = %+v, want type %s", tt.status, env, tt.want)
		}
	}
	// Servers at capacity are overloaded_error with 529, not the client's
	// own rate limit, although the OpenAI dialect answers them 429.
	status, env := FromError(openai.Overloaded("busy"))
	if status != StatusOverloaded || env.Error.Type != ErrOverloaded || env.Error.Message != "busy" {
		t.Errorf("FromError(overloaded) = %d %+v, want 529 overloaded_error", status, env)
	}
	if status, env := FromError(openai.RateLimited("slow down")); status != 429 || env.Error.Type != ErrRateLimit {
		t.Errorf("FromError(rate limited) = %d %+v, want 429 rate_limit_error", status, env)
	}
	p := "messages[0].content"
	env = ErrorFromOpenAI(400, openai.ErrorBody{Error: openai.ErrorDetail{Message: "bad", Param: &p}})
	if env.Error.Message != "messages[0].content: bad" {
		t.Errorf("param prefix: %q", env.Error.Message)
	}
	env = ErrorFromOpenAI(400, openai.ErrorBody{Error: openai.ErrorDetail{Message: "Invalid 'messages[0].content': x", Param: &p}})
	if env.Error.Message != "Invalid 'messages[0].content': x" {
		t.Errorf("param named already: %q", env.Error.Message)
	}
	if env := ErrorFromOpenAI(500, openai.ErrorBody{}); env.Error.Message != "Internal Server Error" {
		t.Errorf("empty message: %q", env.Error.Message)
	}

	status, env = FromError(errors.New("dial tcp 10.0.0.1:13131: connection refused"))
	if status != 500 || env.Error.Type != ErrAPI || strings.Contains(env.Error.Message, "10.0.0.1") {
		t.Errorf("FromError(plain) = %d %+v", status, env)
	}
	status, env = FromError(openai.Unavailable("Model is loading."))
	if status != 503 || env.Error.Type != ErrOverloaded || env.Error.Message != "Model is loading." {
		t.Errorf("FromError(503) = %d %+v", status, env)
	}

	for _, typ := range []string{ErrInvalidRequest, ErrAuthentication, ErrPermission, ErrNotFound, ErrRequestTooLarge, ErrRateLimit, ErrAPI, ErrOverloaded, ErrTimeout, ErrBilling} {
		st := StatusForErrorType(typ)
		if got := ErrorTypeForStatus(st); got != typ {
			t.Errorf("round trip %s → %d → %s", typ, st, got)
		}
		oe := ToOpenAIError(0, NewError(st, "x"))
		if oe.Status != st || oe.Message != "x" || oe.Type != openai.TypeForStatus(st) {
			t.Errorf("ToOpenAIError(%s) = %+v", typ, oe)
		}
	}
	if oe := ToOpenAIError(429, NewError(429, "slow down")); oe.Code != openai.CodeRateLimitExceeded || oe.Type != openai.TypeRateLimit {
		t.Errorf("ToOpenAIError(429) = %+v", oe)
	}
}

func TestParseHeaders(t *testing.T) {
	tests := []struct {
		name  string
		h     http.Header
		want  Headers
		betas []string
	}{
		{"none", http.Header{}, Headers{Version: DefaultVersion, KnownVersion: true}, nil},
		{"2023", http.Header{"Anthropic-Version": {"2023-06-01"}}, Headers{Version: "2023-06-01", KnownVersion: true}, nil},
		{"2026", http.Header{"Anthropic-Version": {" 2026-10-21 "}}, Headers{Version: "2026-10-21", KnownVersion: true}, nil},
		{"unknown version", http.Header{"Anthropic-Version": {"2099-01-01"}}, Headers{Version: "2099-01-01"}, nil},
		{"betas", http.Header{"Anthropic-Beta": {"interleaved-thinking-2025-05-14, fine-grained-tool-streaming-2025-05-14", "unknown-beta,,interleaved-thinking-2025-05-14"}},
			Headers{Version: DefaultVersion, KnownVersion: true}, []string{"interleaved-thinking-2025-05-14", "fine-grained-tool-streaming-2025-05-14", "unknown-beta"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseHeaders(tt.h)
			tt.want.Betas = tt.betas
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseHeaders = %+v, want %+v", got, tt.want)
			}
		})
	}
	if h := ParseHeaders(http.Header{"Anthropic-Beta": {"a,b"}}); !h.HasBeta("b") || h.HasBeta("c") {
		t.Fatalf("HasBeta wrong for %+v", h)
	}
}

func TestStopReason(t *testing.T) {
	seq := "END"
	empty := ""
	tests := []struct {
		finish   string
		seq      *string
		tools    bool
		want     string
		wantSeq  *string
		describe string
	}{
		{"stop", nil, false, StopEndTurn, nil, "plain stop"},
		{"stop", &seq, false, StopStopSequence, &seq, "stop sequence reported"},
		{"stop", &empty, false, StopEndTurn, nil, "empty stop sequence"},
		{"length", nil, false, StopMaxTokens, nil, "length"},
		{"length", nil, true, StopMaxTokens, nil, "length with a cut tool call"},
		{"tool_calls", nil, true, StopToolUse, nil, "tool calls"},
		{"stop", nil, true, StopToolUse, nil, "server said stop but called tools"},
		{"function_call", nil, true, StopToolUse, nil, "legacy"},
		{"tool_calls", nil, false, StopEndTurn, nil, "tool_calls without a call"},
		{"function_call", nil, false, StopEndTurn, nil, "legacy without a call"},
		{"content_filter", nil, false, StopRefusal, nil, "filter"},
		{"", nil, false, StopEndTurn, nil, "missing"},
	}
	for _, tt := range tests {
		got, gotSeq := StopReason(tt.finish, tt.seq, tt.tools)
		if got != tt.want || !reflect.DeepEqual(gotSeq, tt.wantSeq) {
			t.Errorf("%s: StopReason = %s %v, want %s %v", tt.describe, got, gotSeq, tt.want, tt.wantSeq)
		}
	}
}

func TestToolInput(t *testing.T) {
	tests := []struct{ in, want string }{
		{``, `{}`},
		{`  `, `{}`},
		{`{"a": 1}`, `{"a":1}`},
		{` {"a":[1, 2]} `, `{"a":[1,2]}`},
		{`{"a":`, `{"_raw":"{\"a\":"}`},
		{`[1,2]`, `{"_raw":"[1,2]"}`},
		{`"str"`, `{"_raw":"\"str\""}`},
		{`null`, `{"_raw":"null"}`},
	}
	for _, tt := range tests {
		if got := string(ToolInput(tt.in)); got != tt.want {
			t.Errorf("ToolInput(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestIDs(t *testing.T) {
	if got := MessageID("chatcmpl-abc-123"); got != "msg_abc123" {
		t.Errorf("MessageID = %s", got)
	}
	a, b := MessageID(""), MessageID("")
	if a == b || len(a) < 10 || !strings.HasPrefix(a, "msg_") {
		t.Errorf("random MessageIDs %s %s", a, b)
	}
	if got := ToolUseID("call_1", "msg_x", 0); got != "call_1" {
		t.Errorf("ToolUseID kept = %s", got)
	}
	if got := ToolUseID("", "msg_x", 12); got != "toolu_x_12" {
		t.Errorf("ToolUseID derived = %s", got)
	}
	if a1, a2 := ThinkingSignature("a"), ThinkingSignature("a"); a1 == ThinkingSignature("b") || a1 != a2 || ThinkingSignature("") == "" {
		t.Error("ThinkingSignature is not a stable non-empty digest")
	}
}

func streamString(t *testing.T, evs ...[]StreamEvent) string {
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
	// Failing before any chunk (e.g. a cold load that timed out) after the
	// gateway already started the message.
	tr := NewStreamTranslator("m", "msg_1", 7)
	start := tr.Start()
	if again := tr.Start(); again != nil {
		t.Fatal("Start twice produced events")
	}
	out := streamString(t, start, []StreamEvent{Ping()}, tr.Fail(openai.Unavailable("The model is still loading.")))
	if err := ssecheck.AnthropicStream(strings.NewReader(out)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, `"type":"overloaded_error","message":"The model is still loading."`) {
		t.Fatalf("error event missing:\n%s", out)
	}
	if evs, err := tr.Chunk(&openai.ChatChunk{}); evs != nil || err != nil {
		t.Fatal("Chunk after Fail produced output")
	}

	// Failing without Start: the error event is the whole stream.
	tr = NewStreamTranslator("m", "msg_2", 7)
	out = streamString(t, tr.Fail(errors.New("secret")))
	if err := ssecheck.AnthropicStream(strings.NewReader(out)); err != nil || strings.Contains(out, "secret") {
		t.Fatalf("%v\n%s", err, out)
	}

	// Finishing with no chunks at all still yields a well-formed message.
	tr = NewStreamTranslator("m", "msg_3", 7)
	out = streamString(t, tr.Finish())
	if err := ssecheck.AnthropicStream(strings.NewReader(out)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, `"stop_reason":"end_turn"`) || !strings.Contains(out, `"input_tokens":7`) {
		t.Fatalf("unexpected stream:\n%s", out)
	}
}

func TestStreamTranslatorIgnoresOtherChoices(t *testing.T) {
	tr := NewStreamTranslator("m", "msg_1", 1)
	text := "x"
	evs, err := tr.Chunk(&openai.ChatChunk{Choices: []openai.ChunkChoice{{Index: 1, Delta: openai.Delta{Content: &text}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.EventType() != "message_start" {
			t.Fatalf("choice 1 produced %s", e.EventType())
		}
	}
}

func TestContentBlockJSON(t *testing.T) {
	in := `[{"type":"text","text":"a <b>","cache_control":{"type":"ephemeral"}},
		{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA"}},
		{"type":"tool_use","id":"t","name":"n","input":{"k":1}},
		{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"r"}],"is_error":true},
		{"type":"thinking","thinking":"hm","signature":"s"},
		{"type":"redacted_thinking","data":"d"},
		{"type":"search_result","source":"https://x","title":"T","content":[{"type":"text","text":"c"}]},
		{"type":"document","source":{"type":"text","media_type":"text/plain","data":"doc"},"title":"D"}]`
	var c Content
	if err := json.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	got, err := sse.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"type":"text","text":"a <b>"},` +
		`{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA"}},` +
		`{"type":"tool_use","id":"t","name":"n","input":{"k":1}},` +
		`{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"r"}],"is_error":true},` +
		`{"type":"thinking","thinking":"hm","signature":"s"},` +
		`{"type":"redacted_thinking","data":"d"},` +
		`{"type":"search_result","source":"https://x","title":"T","content":[{"type":"text","text":"c"}]},` +
		`{"type":"document","source":{"type":"text","media_type":"text/plain","data":"doc"},"title":"D"}]`
	if string(got) != want {
		t.Fatalf("round trip:\n%s\nwant\n%s", got, want)
	}
	// Blocks the API always sends in full keep their empty fields.
	got, _ = sse.Marshal([]ContentBlock{{Type: BlockText}, {Type: BlockToolUse, ID: "i", Name: "n"}, {Type: BlockThinking}})
	if string(got) != `[{"type":"text","text":""},{"type":"tool_use","id":"i","name":"n","input":{}},{"type":"thinking","thinking":"","signature":""}]` {
		t.Fatalf("empty blocks: %s", got)
	}
}
