package ssecheck

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mutation turns a valid stream into a broken one by replacing old with new
// (n times, -1 for all). The test fails when old does not occur, so a
// mutation can never silently test the valid stream.
type mutation struct {
	name    string
	old     string
	new     string
	n       int
	wantErr string
}

func readFixture(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func runMutations(t *testing.T, fixture string, check func(string) error, muts []mutation) {
	t.Helper()
	valid := readFixture(t, fixture)
	if err := check(valid); err != nil {
		t.Fatalf("valid %s rejected: %v", fixture, err)
	}
	crlf := strings.ReplaceAll(valid, "\n", "\r\n")
	if err := check(crlf); err != nil {
		t.Fatalf("valid %s with CRLF rejected: %v", fixture, err)
	}
	for _, m := range muts {
		t.Run(m.name, func(t *testing.T) {
			if !strings.Contains(valid, m.old) {
				t.Fatalf("mutation target %q not in %s", m.old, fixture)
			}
			n := m.n
			if n == 0 {
				n = 1
			}
			broken := strings.Replace(valid, m.old, m.new, n)
			err := check(broken)
			if err == nil {
				t.Fatalf("broken stream accepted")
			}
			if !strings.Contains(err.Error(), m.wantErr) {
				t.Fatalf("error %q, want it to mention %q", err, m.wantErr)
			}
		})
	}
}

func checkString(f func(r *strings.Reader) error) func(string) error {
	return func(s string) error { return f(strings.NewReader(s)) }
}

func TestOpenAIChatStream(t *testing.T) {
	check := checkString(func(r *strings.Reader) error { return OpenAIChatStream(r) })
	runMutations(t, "openai_valid.sse", check, []mutation{
		{name: "no done", old: "data: [DONE]\n\n", new: "", wantErr: "without data: [DONE]"},
		{name: "truncated", old: "data: [DONE]\n\n", new: "data: [DONE]", wantErr: "unexpected EOF"},
		{name: "after done", old: "data: [DONE]\n\n", new: "data: [DONE]\n\ndata: {}\n\n", wantErr: "after the stream's final event"},
		{name: "role twice", old: `"delta":{"content":"Hi"}`, new: `"delta":{"role":"assistant","content":"Hi"}`, wantErr: "role sent twice"},
		{name: "wrong role", old: `"role":"assistant"`, new: `"role":"user"`, wantErr: "role"},
		{name: "finish twice", old: `"delta":{},"finish_reason":"tool_calls"`, new: `"delta":{},"finish_reason":"tool_calls"}]}` + "\n\ndata: " + `{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"`, wantErr: "after its finish_reason"},
		{name: "never finished", old: `"finish_reason":"tool_calls"`, new: `"finish_reason":null`, wantErr: "usage chunk before choice 0 finished"},
		{name: "finish_reason missing", old: `"delta":{"content":"Hi"},"finish_reason":null`, new: `"delta":{"content":"Hi"}`, wantErr: "finish_reason must be present"},
		{name: "unknown finish", old: `"finish_reason":"tool_calls"`, new: `"finish_reason":"banana"`, wantErr: "unknown finish_reason"},
		{name: "tool call no id", old: `"index":0,"id":"call_1",`, new: `"index":0,`, wantErr: "no id"},
		{name: "tool call no name", old: `"name":"f",`, new: ``, wantErr: "no function name"},
		{name: "tool call bad index", old: `"tool_calls":[{"index":0,"id"`, new: `"tool_calls":[{"index":3,"id"`, wantErr: "out of order"},
		{name: "tool call id changed", old: `{"index":0,"function":{"arguments":"{}"}}`, new: `{"index":0,"id":"other","function":{"arguments":"{}"}}`, wantErr: "id changed"},
		{name: "tool calls interleaved", old: `{"index":0,"function":{"arguments":"{}"}}`, new: `{"index":1,"id":"call_2","type":"function","function":{"name":"g","arguments":"{}"}}]},"finish_reason":null}]}` + "\n\ndata: " + `{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}`, wantErr: "one after another"},
		{name: "id changed", old: `{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"}`, new: `{"id":"c2","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"}`, wantErr: "id changed"},
		{name: "wrong object", old: `"object":"chat.completion.chunk"`, new: `"object":"chat.completion"`, wantErr: "object"},
		{name: "usage with choices", old: `"choices":[],"usage"`, new: `"choices":[{"index":0,"delta":{},"finish_reason":null}],"usage"`, wantErr: "empty choices"},
		{name: "usage arithmetic", old: `"total_tokens":7`, new: `"total_tokens":8`, wantErr: "total_tokens"},
		{name: "chunk after usage", old: "data: [DONE]", new: `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":1,"delta":{},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]", wantErr: "after the usage chunk"},
		{name: "not json", old: `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"}`, new: `data: {oops`, wantErr: "not a JSON object"},
		{name: "named event", old: `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"}`, new: "event: chunk\n" + `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"}`, wantErr: "event name"},
		{name: "content not string", old: `"delta":{"content":"Hi"}`, new: `"delta":{"content":5}`, wantErr: "not a string"},
		{name: "finish tool_calls without calls", old: `"delta":{"role":"assistant","content":""},"finish_reason":null`, new: `"delta":{"role":"assistant","content":""},"finish_reason":null},{"index":1,"delta":{"role":"assistant"},"finish_reason":"tool_calls"`, wantErr: "tool_calls without any tool call"},
	})
	// A mid-stream error ends the stream, with or without [DONE].
	errStream := `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"a"},"finish_reason":null}]}` + "\n\n" +
		`data: {"error":{"message":"boom","type":"server_error","param":null,"code":null}}` + "\n\n"
	if err := check(errStream); err != nil {
		t.Fatalf("error-terminated stream rejected: %v", err)
	}
	if err := check(errStream + "data: [DONE]\n\n"); err != nil {
		t.Fatalf("error + [DONE] stream rejected: %v", err)
	}
	if err := check("data: [DONE]\n\n"); err == nil {
		t.Fatal("stream of only [DONE] accepted")
	}
}

func TestAnthropicStream(t *testing.T) {
	check := checkString(func(r *strings.Reader) error { return AnthropicStream(r) })
	runMutations(t, "anthropic_valid.sse", check, []mutation{
		{name: "no message_stop", old: "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", new: "", wantErr: "without message_stop"},
		{name: "unnamed event", old: "event: ping\n", new: "", wantErr: "unnamed event"},
		{name: "name mismatch", old: "event: ping\ndata: {\"type\":\"ping\"}", new: "event: ping\ndata: {\"type\":\"pong\"}", wantErr: "but data type"},
		{name: "ping first", old: "event: message_start", new: "event: ping\ndata: {\"type\":\"ping\"}\n\nevent: message_start", wantErr: "before message_start"},
		{name: "content not empty", old: `"content":[]`, new: `"content":[{"type":"text","text":"x"}]`, wantErr: "empty array"},
		{name: "stop_reason set in start", old: `"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12`, new: `"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12`, wantErr: "stop_reason must be present and null"},
		{name: "no input_tokens", old: `"input_tokens":12,`, new: ``, wantErr: "input_tokens"},
		{name: "skipped index", old: `"index":1,"content_block":{"type":"text"`, new: `"index":2,"content_block":{"type":"text"`, wantErr: "index 2, want 1"},
		{name: "interleaved", old: "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n", new: "", wantErr: "while block 1 is open"},
		{name: "delta wrong type", old: `"delta":{"type":"text_delta","text":"Hello"}`, new: `"delta":{"type":"input_json_delta","partial_json":"Hello"}`, wantErr: "in a text block"},
		{name: "delta wrong index", old: `"index":1,"delta":{"type":"text_delta"`, new: `"index":0,"delta":{"type":"text_delta"`, wantErr: "not open"},
		{name: "thinking without signature", old: "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"c2ln\"}}\n\n", new: "", wantErr: "without a signature_delta"},
		{name: "thinking after signature", old: `{"type":"signature_delta","signature":"c2ln"}}`, new: `{"type":"signature_delta","signature":"c2ln"}}` + "\n\nevent: content_block_delta\ndata: " + `{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"more"}}`, wantErr: "after signature_delta"},
		{name: "tool input not object", old: `"partial_json":"\"Paris\"}"`, new: `"partial_json":"\"Paris\""`, wantErr: "not a JSON object"},
		{name: "tool input cut but not by max_tokens", old: `"partial_json":"\"Paris\"}"`, new: `"partial_json":"\"Par"`, wantErr: "not max_tokens"},
		{name: "tool start with input", old: `"input":{}`, new: `"input":{"a":1}`, wantErr: "input {}"},
		{name: "tool without name", old: `"name":"get_weather",`, new: ``, wantErr: "non-empty id and name"},
		{name: "unknown block", old: `{"type":"text","text":""}`, new: `{"type":"video","text":""}`, wantErr: "unknown content block type"},
		{name: "stop reason unknown", old: `"stop_reason":"tool_use"`, new: `"stop_reason":"done"`, wantErr: "stop_reason"},
		{name: "stop_sequence missing", old: `"stop_reason":"tool_use","stop_sequence":null`, new: `"stop_reason":"tool_use"`, wantErr: "stop_sequence must be present"},
		{name: "stop_sequence mismatch", old: `"stop_reason":"tool_use","stop_sequence":null`, new: `"stop_reason":"stop_sequence","stop_sequence":null`, wantErr: "does not fit"},
		{name: "no usage", old: `,"usage":{"output_tokens":20}`, new: ``, wantErr: "usage"},
		{name: "message_stop before delta", old: "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":20}}\n\n", new: "", wantErr: "before message_delta"},
		{name: "event after stop", old: "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", new: "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n", wantErr: "after the stream's final event"},
		{name: "unknown event", old: "event: ping\ndata: {\"type\":\"ping\"}", new: "event: pong\ndata: {\"type\":\"pong\"}", wantErr: "unknown event type"},
		{name: "bad error event", old: "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":20}}", new: "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"weird_error\",\"message\":\"x\"}}", wantErr: "unknown error type"},
	})
	// A tool call cut by max_tokens leaves partial JSON, as the API does.
	cut := strings.Replace(readFixture(t, "anthropic_valid.sse"), `"partial_json":"\"Paris\"}"`, `"partial_json":"\"Par"`, 1)
	cut = strings.Replace(cut, `"stop_reason":"tool_use"`, `"stop_reason":"max_tokens"`, 1)
	if err := check(cut); err != nil {
		t.Fatalf("max_tokens-cut tool input rejected: %v", err)
	}
	// A tool_use stop without any tool_use block is wrong.
	noTool := readFixture(t, "anthropic_valid.sse")
	noTool = noTool[:strings.Index(noTool, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2")] +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":20}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	if err := check(noTool); err == nil || !strings.Contains(err.Error(), "without a tool_use block") {
		t.Fatalf("tool_use stop without tool block: err = %v", err)
	}
	// An error event may end the stream early, even right after
	// message_start, or be the whole stream.
	start := "event: message_start\ndata: " + `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"m","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":0}}}` + "\n\n"
	errEv := "event: error\ndata: " + `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}` + "\n\n"
	for _, s := range []string{start + errEv, errEv} {
		if err := check(s); err != nil {
			t.Fatalf("error-terminated stream rejected: %v", err)
		}
	}
	if err := check(start + errEv + errEv); err == nil {
		t.Fatal("events after an error event accepted")
	}
}

func TestResponsesStream(t *testing.T) {
	check := checkString(func(r *strings.Reader) error { return ResponsesStream(r) })
	runMutations(t, "responses_valid.sse", check, []mutation{
		{name: "no terminal", old: "event: response.completed", new: "event: response.in_progress", wantErr: "name"},
		{name: "sequence gap", old: `"sequence_number":5,`, new: `"sequence_number":6,`, wantErr: "sequence_number 6, want 5"},
		{name: "sequence missing", old: `"sequence_number":5,`, new: ``, wantErr: "sequence_number"},
		{name: "created not first", old: `"type":"response.created","sequence_number":0`, new: `"type":"response.in_progress","sequence_number":0`, wantErr: "event name"},
		{name: "created status", old: `"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","created_at":1,"status":"in_progress"`, new: `"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","created_at":1,"status":"completed"`, wantErr: "status"},
		{name: "response id changed", old: `"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_1"`, new: `"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_2"`, wantErr: "changed"},
		{name: "output index skip", old: `"sequence_number":8,"output_index":1`, new: `"sequence_number":8,"output_index":2`, wantErr: "output_index 2, want 1"},
		{name: "item_id mismatch", old: `"sequence_number":10,"item_id":"msg_1"`, new: `"sequence_number":10,"item_id":"msg_9"`, wantErr: "open item"},
		{name: "text mismatch", old: `"text":"Hello","logprobs":[]}`, new: `"text":"Hellx","logprobs":[]}`, wantErr: "differs from the deltas"},
		{name: "delta without part", old: "event: response.content_part.added\ndata: {\"type\":\"response.content_part.added\",\"sequence_number\":9,", new: "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":9,\"delta\":\"x\",\"logprobs\":[],", wantErr: "not an open part"},
		{name: "part done before text done", old: "event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"sequence_number\":12,\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0,\"text\":\"Hello\",\"logprobs\":[]}", new: "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":12,\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0,\"delta\":\"\",\"logprobs\":[]}", wantErr: "before its output_text done"},
		{name: "item done with open part", old: "event: response.content_part.done\ndata: {\"type\":\"response.content_part.done\",\"sequence_number\":13,\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0,\"part\":{\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[],\"text\":\"Hello\"}}", new: "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":13,\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0,\"delta\":\"\",\"logprobs\":[]}", wantErr: "delta after done"},
		{name: "args mismatch", old: `"arguments":"{\"a\":1}"}`, new: `"arguments":"{\"a\":2}"}`, wantErr: "differ"},
		{name: "args outside function call", old: `"sequence_number":16,"item_id":"fc_1","output_index":2`, new: `"sequence_number":16,"item_id":"msg_1","output_index":1`, wantErr: "open item"},
		{name: "function call without name", old: `"call_id":"call_1","name":"f"}}` + "\n\nevent: response.function_call_arguments.delta", new: `"call_id":"call_1","name":""}}` + "\n\nevent: response.function_call_arguments.delta", wantErr: "call_id and name"},
		{name: "two items open", old: "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"sequence_number\":7,\"output_index\":0,\"item\":{\"id\":\"rs_1\",\"type\":\"reasoning\",\"summary\":[{\"type\":\"summary_text\",\"text\":\"think\"}]}}", new: "event: response.reasoning_summary_text.delta\ndata: {\"type\":\"response.reasoning_summary_text.delta\",\"sequence_number\":7,\"item_id\":\"rs_1\",\"output_index\":0,\"summary_index\":5,\"delta\":\"\"}", wantErr: "summary_index 5"},
		{name: "completed output mismatch", old: `"status":"completed","model":"m","output":[{"id":"rs_1"`, new: `"status":"completed","model":"m","output":[{"id":"rs_X"`, wantErr: "response.output[0].id"},
		{name: "usage arithmetic", old: `"total_tokens":14`, new: `"total_tokens":15`, wantErr: "total_tokens"},
		{name: "no usage", old: `,"usage":{"input_tokens":5,"input_tokens_details":{"cached_tokens":0},"output_tokens":9,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":14}`, new: ``, wantErr: "usage"},
		{name: "unknown event", old: `"type":"response.output_text.delta","sequence_number":11`, new: `"type":"response.output_text.delta2","sequence_number":11`, wantErr: "event name"},
		{name: "message starts with content", old: `"status":"in_progress","content":[],"role":"assistant"`, new: `"status":"in_progress","content":[{"type":"output_text","text":"x"}],"role":"assistant"`, wantErr: "content []"},
		{name: "duplicate item id", old: `"item":{"id":"fc_1","type":"function_call","status":"in_progress"`, new: `"item":{"id":"msg_1","type":"function_call","status":"in_progress"`, wantErr: "used twice"},
	})
	valid := readFixture(t, "responses_valid.sse")
	if err := check(valid + "data: [DONE]\n\n"); err != nil {
		t.Fatalf("trailing [DONE] rejected: %v", err)
	}
	if err := check(valid + "data: [DONE]\n\ndata: [DONE]\n\n"); err == nil {
		t.Fatal("two trailing [DONE] accepted")
	}
	// Unnamed events (no event: line) are fine: the SDKs read "type".
	var unnamed strings.Builder
	for _, line := range strings.Split(valid, "\n") {
		if !strings.HasPrefix(line, "event: ") {
			unnamed.WriteString(line + "\n")
		}
	}
	if err := check(unnamed.String()); err != nil {
		t.Fatalf("unnamed events rejected: %v", err)
	}
	head := valid[:strings.Index(valid, "event: response.output_item.added")]
	failed := "event: response.failed\ndata: " + `{"type":"response.failed","sequence_number":2,"response":{"id":"resp_1","object":"response","created_at":1,"status":"failed","model":"m","output":[],"error":{"code":"server_error","message":"boom"}}}` + "\n\n"
	if err := check(head + failed); err != nil {
		t.Fatalf("failed stream rejected: %v", err)
	}
	errEv := "event: error\ndata: " + `{"type":"error","sequence_number":2,"code":"server_error","message":"boom","param":null}` + "\n\n"
	if err := check(head + errEv); err != nil {
		t.Fatalf("error-terminated stream rejected: %v", err)
	}
	incomplete := "event: response.incomplete\ndata: " + `{"type":"response.incomplete","sequence_number":2,"response":{"id":"resp_1","object":"response","created_at":1,"status":"incomplete","incomplete_details":{},"model":"m","output":[]}}` + "\n\n"
	if err := check(head + incomplete); err == nil || !strings.Contains(err.Error(), "reason") {
		t.Fatalf("incomplete without reason: err = %v", err)
	}
}

// FuzzCheckers runs arbitrary input through the three grammar checkers:
// they must reject garbage with an error, never panic or hang.
func FuzzCheckers(f *testing.F) {
	for _, name := range []string{"openai_valid.sse", "anthropic_valid.sse", "responses_valid.sse"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		_ = OpenAIChatStream(bytes.NewReader(in))
		_ = AnthropicStream(bytes.NewReader(in))
		_ = ResponsesStream(bytes.NewReader(in))
	})
}
