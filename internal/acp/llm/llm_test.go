package llm

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/helexa-ai/cortex/internal/acp/config"
)

var history = []Message{
	{Role: RoleUser, Content: []Part{TextPart("weather?")}},
	{Role: RoleAssistant, Reasoning: "use the tool", Signature: "sig", ToolCalls: []ToolCall{
		{ID: "a", Name: "get_weather", Args: `{"city":"Paris"}`}, {ID: "b", Name: "get_time", Args: `not json`}}},
	{Role: RoleTool, ToolCallID: "a", Content: []Part{TextPart("sunny")}},
	{Role: RoleTool, ToolCallID: "b", Content: []Part{TextPart("bad arguments")}, IsError: true},
	{Role: RoleUser, Content: []Part{TextPart("thanks")}},
}

func marshal(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAnthropicBody: tool results and the next user turn share one user
// message (roles alternate), signed thinking goes back first, and bad
// arguments become an empty object rather than an invalid request.
func TestAnthropicBody(t *testing.T) {
	c := &anthropic{base{ep: config.Endpoint{Name: "x"}}}
	b := c.body(Request{Model: "m", Messages: history, Effort: "low", MaxTokens: 1000})
	msgs := b["messages"].([]anthropicMessage)
	if len(msgs) != 3 || msgs[2].Role != "user" || len(msgs[2].Content) != 3 {
		t.Fatalf("messages %s", marshal(t, msgs))
	}
	if got := marshal(t, msgs[1].Content[0]); got != `{"signature":"sig","thinking":"use the tool","type":"thinking"}` {
		t.Errorf("thinking block %s", got)
	}
	if got := marshal(t, msgs[1].Content[2]["input"]); got != `{}` {
		t.Errorf("bad arguments sent as %s", got)
	}
	if b["max_tokens"].(int) <= 2048 || b["thinking"] == nil {
		t.Errorf("max_tokens %v must exceed the thinking budget", b["max_tokens"])
	}
}

func TestChatAndResponsesBodies(t *testing.T) {
	cb := marshal(t, (&chat{}).body(Request{Model: "m", System: "sys", Messages: history}))
	for _, want := range []string{`"role":"system","content":"sys"`, `"tool_call_id":"a"`, `"arguments":"{\"city\":\"Paris\"}"`, `"arguments":"{}"`} {
		if !strings.Contains(cb, want) {
			t.Errorf("chat body lacks %s: %s", want, cb)
		}
	}
	rb := marshal(t, (&responses{}).body(Request{Model: "m", System: "sys", Messages: history}))
	for _, want := range []string{`"instructions":"sys"`, `"call_id":"a","name":"get_weather","type":"function_call"`,
		`"arguments":"{}","call_id":"b"`, `"call_id":"b","output":"bad arguments","type":"function_call_output"`} {
		if !strings.Contains(rb, want) {
			t.Errorf("responses body lacks %s: %s", want, rb)
		}
	}
}
