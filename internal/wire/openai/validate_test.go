package openai

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestChatRequestValidate(t *testing.T) {
	base := `"model":"m","messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name  string
		body  string
		param string // "" means valid
		code  string
	}{
		{name: "minimal", body: `{` + base + `}`},
		{name: "full", body: `{` + base + `,"temperature":0.7,"top_p":1,"n":1,"max_tokens":10,"max_completion_tokens":5,"stop":["x"],"presence_penalty":-2,"frequency_penalty":2,
			"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"get_weather"}},
			"response_format":{"type":"json_schema","json_schema":{"name":"out","schema":{"type":"object"}}},"logprobs":true,"top_logprobs":3}`},
		{name: "all roles", body: `{"model":"m","messages":[{"role":"system","content":"s"},{"role":"developer","content":"d"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA"}}]},
			{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"r"},{"role":"assistant","content":"ok"}]}`},
		{name: "no model", body: `{"messages":[{"role":"user","content":"hi"}]}`, param: "model", code: CodeMissingParameter},
		{name: "no messages", body: `{"model":"m"}`, param: "messages", code: CodeInvalidValue},
		{name: "empty messages", body: `{"model":"m","messages":[]}`, param: "messages", code: CodeInvalidValue},
		{name: "unknown role", body: `{"model":"m","messages":[{"role":"robot","content":"x"}]}`, param: "messages[0].role", code: CodeInvalidValue},
		{name: "missing role", body: `{"model":"m","messages":[{"content":"x"}]}`, param: "messages[0].role", code: CodeMissingParameter},
		{name: "function role", body: `{"model":"m","messages":[{"role":"function","content":"x"}]}`, param: "messages[0].role", code: CodeUnsupportedValue},
		{name: "user null content", body: `{"model":"m","messages":[{"role":"user","content":null}]}`, param: "messages[0].content", code: CodeMissingParameter},
		{name: "empty assistant", body: `{"model":"m","messages":[{"role":"user","content":"a"},{"role":"assistant"}]}`, param: "messages[1].content", code: CodeMissingParameter},
		{name: "tool without id", body: `{"model":"m","messages":[{"role":"tool","content":"r"}]}`, param: "messages[0].tool_call_id", code: CodeMissingParameter},
		{name: "tool call without id", body: `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]}]}`, param: "messages[0].tool_calls[0].id"},
		{name: "tool call without name", body: `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"x","function":{"arguments":"{}"}}]}]}`, param: "messages[0].tool_calls[0].function.name"},
		{name: "audio part", body: `{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio"}]}]}`, param: "messages[0].content[0].type", code: CodeUnsupportedValue},
		{name: "image without url", body: `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}`, param: "messages[0].content[0].image_url.url"},
		{name: "image in system", body: `{"model":"m","messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, param: "messages[0].content[0].type"},
		{name: "n=2", body: `{` + base + `,"n":2}`, param: "n", code: CodeUnsupportedValue},
		{name: "n=0", body: `{` + base + `,"n":0}`, param: "n", code: CodeInvalidValue},
		{name: "temperature high", body: `{` + base + `,"temperature":2.5}`, param: "temperature", code: CodeInvalidValue},
		{name: "temperature negative", body: `{` + base + `,"temperature":-0.1}`, param: "temperature"},
		{name: "top_p high", body: `{` + base + `,"top_p":1.01}`, param: "top_p"},
		{name: "min_p", body: `{` + base + `,"min_p":-1}`, param: "min_p"},
		{name: "penalty", body: `{` + base + `,"presence_penalty":3}`, param: "presence_penalty"},
		{name: "max_tokens 0", body: `{` + base + `,"max_tokens":0}`, param: "max_tokens"},
		{name: "max_completion_tokens negative", body: `{` + base + `,"max_completion_tokens":-5}`, param: "max_completion_tokens"},
		{name: "top_k negative", body: `{` + base + `,"top_k":-1}`, param: "top_k"},
		{name: "top_logprobs without logprobs", body: `{` + base + `,"top_logprobs":2}`, param: "top_logprobs"},
		{name: "top_logprobs too many", body: `{` + base + `,"logprobs":true,"top_logprobs":21}`, param: "top_logprobs"},
		{name: "empty stop", body: `{` + base + `,"stop":["a",""]}`, param: "stop[1]"},
		{name: "bad tool name", body: `{` + base + `,"tools":[{"type":"function","function":{"name":"get weather"}}]}`, param: "tools[0].function.name"},
		{name: "long tool name", body: `{` + base + `,"tools":[{"type":"function","function":{"name":"` + strings.Repeat("a", 65) + `"}}]}`, param: "tools[0].function.name"},
		{name: "duplicate tool", body: `{` + base + `,"tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"a"}}]}`, param: "tools[1].function.name"},
		{name: "non-function tool", body: `{` + base + `,"tools":[{"type":"web_search","function":{"name":"a"}}]}`, param: "tools[0].type", code: CodeUnsupportedValue},
		{name: "parameters not object", body: `{` + base + `,"tools":[{"type":"function","function":{"name":"a","parameters":[1]}}]}`, param: "tools[0].function.parameters"},
		{name: "tool_choice undefined", body: `{` + base + `,"tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":{"type":"function","function":{"name":"b"}}}`, param: "tool_choice"},
		{name: "tool_choice required no tools", body: `{` + base + `,"tool_choice":"required"}`, param: "tool_choice"},
		{name: "tool_choice auto no tools ok", body: `{` + base + `,"tool_choice":"auto"}`},
		{name: "response_format bad type", body: `{` + base + `,"response_format":{"type":"yaml"}}`, param: "response_format.type"},
		{name: "response_format no schema", body: `{` + base + `,"response_format":{"type":"json_schema"}}`, param: "response_format.json_schema"},
		{name: "response_format bad name", body: `{` + base + `,"response_format":{"type":"json_schema","json_schema":{"name":"a b"}}}`, param: "response_format.json_schema.name"},
		{name: "response_format schema not object", body: `{` + base + `,"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":true}}}`, param: "response_format.json_schema.schema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req ChatRequest
			if err := json.Unmarshal([]byte(tt.body), &req); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			err := req.Validate()
			if tt.param == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Validate() = %v, want *Error for %s", err, tt.param)
			}
			if e.Status != 400 || e.Type != TypeInvalidRequest {
				t.Errorf("status/type = %d/%s", e.Status, e.Type)
			}
			if e.Param != tt.param {
				t.Errorf("param = %q, want %q (%s)", e.Param, tt.param, e.Message)
			}
			if tt.code != "" && e.Code != tt.code {
				t.Errorf("code = %q, want %q", e.Code, tt.code)
			}
			if e.Message == "" {
				t.Error("empty message")
			}
		})
	}
}

func TestCompletionAndEmbeddingValidate(t *testing.T) {
	one := 1
	two := 2
	tests := []struct {
		name  string
		err   error
		param string
	}{
		{"completion ok", (&CompletionRequest{Model: "m", Prompt: StringOrList{"x"}}).Validate(), ""},
		{"completion no prompt", (&CompletionRequest{Model: "m"}).Validate(), "prompt"},
		{"completion no model", (&CompletionRequest{Prompt: StringOrList{"x"}}).Validate(), "model"},
		{"completion n", (&CompletionRequest{Model: "m", Prompt: StringOrList{"x"}, N: &two}).Validate(), "n"},
		{"completion n=1", (&CompletionRequest{Model: "m", Prompt: StringOrList{"x"}, N: &one}).Validate(), ""},
		{"embedding string", (&EmbeddingRequest{Model: "m", Input: json.RawMessage(`"a"`)}).Validate(), ""},
		{"embedding list", (&EmbeddingRequest{Model: "m", Input: json.RawMessage(`["a","b"]`)}).Validate(), ""},
		{"embedding tokens", (&EmbeddingRequest{Model: "m", Input: json.RawMessage(`[1,2,3]`)}).Validate(), ""},
		{"embedding token lists", (&EmbeddingRequest{Model: "m", Input: json.RawMessage(`[[1,2],[3]]`)}).Validate(), ""},
		{"embedding empty", (&EmbeddingRequest{Model: "m", Input: json.RawMessage(`[]`)}).Validate(), "input"},
		{"embedding missing", (&EmbeddingRequest{Model: "m"}).Validate(), "input"},
		{"embedding object", (&EmbeddingRequest{Model: "m", Input: json.RawMessage(`{"a":1}`)}).Validate(), "input"},
		{"embedding mixed bad", (&EmbeddingRequest{Model: "m", Input: json.RawMessage(`["a",{}]`)}).Validate(), "input[1]"},
		{"embedding format", (&EmbeddingRequest{Model: "m", Input: json.RawMessage(`"a"`), EncodingFormat: "int8"}).Validate(), "encoding_format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.param == "" {
				if tt.err != nil {
					t.Fatalf("Validate() = %v", tt.err)
				}
				return
			}
			var e *Error
			if !errors.As(tt.err, &e) || e.Param != tt.param {
				t.Fatalf("Validate() = %v, want error on %q", tt.err, tt.param)
			}
		})
	}
}

func TestEmbeddingInputs(t *testing.T) {
	r := EmbeddingRequest{Input: json.RawMessage(`["a",[1,2]]`)}
	in, err := r.Inputs()
	if err != nil || len(in) != 2 || in[0].Text != "a" || len(in[1].Tokens) != 2 {
		t.Fatalf("Inputs() = %+v, %v", in, err)
	}
}

func TestThinkingToggle(t *testing.T) {
	var r ChatRequest
	if r.Thinking() != nil {
		t.Fatal("Thinking() on empty request is set")
	}
	r.SetThinking(false)
	if got := r.Thinking(); got == nil || *got {
		t.Fatalf("Thinking() after SetThinking(false) = %v", got)
	}
	data, _ := json.Marshal(&r)
	if !strings.Contains(string(data), `"chat_template_kwargs":{"enable_thinking":false}`) {
		t.Fatalf("marshalled = %s", data)
	}
	var back ChatRequest
	if err := json.Unmarshal([]byte(`{"chat_template_kwargs":{"enable_thinking":true}}`), &back); err != nil {
		t.Fatal(err)
	}
	if got := back.Thinking(); got == nil || !*got {
		t.Fatalf("Thinking() decoded = %v", got)
	}
}
