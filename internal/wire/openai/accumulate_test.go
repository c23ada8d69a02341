package openai

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func chunksFromJSON(t *testing.T, lines ...string) []ChatChunk {
	t.Helper()
	out := make([]ChatChunk, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &out[i]); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	return out
}

func TestAccumulate(t *testing.T) {
	chunks := chunksFromJSON(t,
		`{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`,
		`{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"reasoning_content":"think "},"finish_reason":null}]}`,
		`{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"reasoning_content":"more"},"finish_reason":null}]}`,
		`{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null,"logprobs":{"content":[{"token":"Hel","logprob":-0.1,"bytes":[72],"top_logprobs":[]}]}}]}`,
		`{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}`,
		`{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":null}]}`,
		`{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"x\":"}}]},"finish_reason":null}]}`,
		`{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"g","arguments":"{}"}}]},"finish_reason":null}]}`,
		`{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]},"finish_reason":null}]}`,
		`{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
		`{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}}`,
	)
	got := Accumulate(chunks)
	want := &ChatResponse{
		ID: "c1", Object: "chat.completion", Created: 7, Model: "m",
		Choices: []ChatChoice{{
			Index: 0,
			Message: Message{
				Role: "assistant", Content: TextContent("Hello"), ReasoningContent: "think more",
				ToolCalls: []ToolCall{
					{ID: "call_a", Type: "function", Function: FunctionCall{Name: "f", Arguments: `{"x":1}`}},
					{ID: "call_b", Type: "function", Function: FunctionCall{Name: "g", Arguments: `{}`}},
				},
			},
			FinishReason: "tool_calls",
			Logprobs:     &Logprobs{Content: []TokenLogprob{{Token: "Hel", Logprob: -0.1, Bytes: []int{72}, TopLogprobs: []TopLogprob{}}}},
		}},
		Usage: &Usage{PromptTokens: 5, CompletionTokens: 9, TotalTokens: 14},
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Fatalf("Accumulate =\n%s\nwant\n%s", g, w)
	}
}

func TestAccumulateEdgeCases(t *testing.T) {
	// No index on tool call fragments (some servers), stop_sequence
	// extension, tool calls only (content stays null).
	chunks := chunksFromJSON(t,
		`{"id":"c2","choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"id":"a","function":{"name":"f","arguments":"{"}}]}}]}`,
		`{"id":"c2","choices":[{"index":0,"delta":{"tool_calls":[{"function":{"arguments":"}"}}]}}]}`,
		`{"id":"c2","choices":[{"index":0,"delta":{"tool_calls":[{"id":"b","function":{"name":"g","arguments":"[]"}}]}}]}`,
		`{"id":"c2","choices":[{"index":0,"delta":{},"finish_reason":"stop","stop_sequence":"END"}]}`,
	)
	got := Accumulate(chunks)
	c := got.Choices[0]
	if !c.Message.Content.IsNull() {
		t.Errorf("content = %v, want null", c.Message.Content)
	}
	if len(c.Message.ToolCalls) != 2 || c.Message.ToolCalls[0].Function.Arguments != "{}" || c.Message.ToolCalls[1].ID != "b" {
		t.Errorf("tool calls = %+v", c.Message.ToolCalls)
	}
	if c.StopSequence == nil || *c.StopSequence != "END" {
		t.Errorf("stop_sequence = %v", c.StopSequence)
	}
	// An empty stream still yields a well-formed response.
	empty := Accumulate(nil)
	if empty.Object != "chat.completion" || empty.Choices == nil {
		t.Errorf("Accumulate(nil) = %+v", empty)
	}
}

func TestDecodeChunk(t *testing.T) {
	c, err := DecodeChunk([]byte(`{"id":"x","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}`))
	if err != nil || *c.Choices[0].Delta.Content != "a" {
		t.Fatalf("DecodeChunk = %+v, %v", c, err)
	}
	_, err = DecodeChunk([]byte(`{"error":{"message":"boom","type":"service_unavailable","code":"service_unavailable"}}`))
	var e *Error
	if !errors.As(err, &e) || e.Status != 503 || e.Message != "boom" {
		t.Fatalf("DecodeChunk(error) = %v", err)
	}
	_, err = DecodeChunk([]byte(`not json`))
	if !errors.As(err, &e) || e.Status != 500 || !strings.Contains(e.Message, "invalid stream event") {
		t.Fatalf("DecodeChunk(garbage) = %v", err)
	}
}
