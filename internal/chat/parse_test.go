package chat

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// seqIDs makes call ids call_1, call_2, … so runs compare equal.
func seqIDs() func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("call_%d", n) }
}

func runParser(cfg ParserConfig, chunks ...string) ([]Event, Result) {
	cfg.NewID = seqIDs()
	p := NewParser(cfg)
	var evs []Event
	for _, c := range chunks {
		evs = append(evs, p.Feed(c)...)
	}
	evs = append(evs, p.Finish()...)
	return mergeEvents(evs), p.Result()
}

// mergeEvents joins consecutive deltas of the same kind (and call), which
// is how a client reads them.
func mergeEvents(evs []Event) []Event {
	var out []Event
	for _, e := range evs {
		if n := len(out); n > 0 && e.Kind == out[n-1].Kind && e.Index == out[n-1].Index &&
			(e.Kind == EventContent || e.Kind == EventReasoning || e.Kind == EventToolCallArgs) {
			out[n-1].Text += e.Text
			continue
		}
		out = append(out, e)
	}
	return out
}

func call(id, name, args string) openai.ToolCall {
	return openai.ToolCall{ID: id, Type: "function", Function: openai.FunctionCall{Name: name, Arguments: args}}
}

var weatherTools = []string{"get_weather", "get_time"}

type parseCase struct {
	name string
	cfg  ParserConfig
	in   string
	want Result
	// events, when set, is the exact merged event sequence.
	events []Event
}

var parseCases = []parseCase{
	{name: "plain", in: "Hello, world.", want: Result{Content: "Hello, world."}},
	{name: "plain with tools", cfg: ParserConfig{Tools: weatherTools}, in: "It is <b>sunny</b> & a < b.", want: Result{Content: "It is <b>sunny</b> & a < b."}},
	{name: "leading and trailing whitespace kept", in: "\n\nHello \n", want: Result{Content: "\n\nHello \n"}},
	{name: "whitespace only", in: "  ", want: Result{Content: "  "}},
	{name: "empty", in: "", want: Result{}},
	{name: "think", in: "<think>\nLet me think.\n</think>\n\nAnswer.",
		want:   Result{ReasoningContent: "Let me think.", Content: "Answer."},
		events: []Event{{Kind: EventReasoning, Text: "Let me think."}, {Kind: EventContent, Text: "Answer."}}},
	{name: "think after whitespace", in: "\n<think>x</think>y", want: Result{ReasoningContent: "x", Content: "y"}},
	{name: "think opened by prompt", cfg: ParserConfig{InReasoning: true}, in: "\nHmm, 2+2.\n</think>\n\n4", want: Result{ReasoningContent: "Hmm, 2+2.", Content: "4"}},
	{name: "think repeated after prompt", cfg: ParserConfig{InReasoning: true}, in: "<think>\nR\n</think>A", want: Result{ReasoningContent: "R", Content: "A"}},
	{name: "think unclosed", in: "<think>still going <", want: Result{ReasoningContent: "still going <"}},
	{name: "think not at start", in: "a <think>b</think>", want: Result{Content: "a <think>b</think>"}},
	{name: "think tag prefix only", in: "<thin", want: Result{Content: "<thin"}},
	{name: "hermes call", cfg: ParserConfig{Tools: weatherTools},
		in:   "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call>",
		want: Result{ToolCalls: []openai.ToolCall{call("call_1", "get_weather", `{"city":"Paris","days":2}`)}},
		events: []Event{
			{Kind: EventToolCallStart, Index: 0, ID: "call_1", Name: "get_weather"},
			{Kind: EventToolCallArgs, Index: 0, Text: `{"city":"Paris","days":2}`},
			{Kind: EventToolCallEnd, Index: 0},
		}},
	{name: "hermes content then two calls", cfg: ParserConfig{Tools: weatherTools},
		in: "Let me check.\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>\n",
		want: Result{Content: "Let me check.", ToolCalls: []openai.ToolCall{
			call("call_1", "get_weather", `{"city":"Paris"}`), call("call_2", "get_time", `{}`)}}},
	{name: "hermes call then text", cfg: ParserConfig{Tools: weatherTools},
		in:   "<tool_call>{\"name\":\"get_time\",\"arguments\":{}}</tool_call>\nDone.",
		want: Result{Content: "Done.", ToolCalls: []openai.ToolCall{call("call_1", "get_time", `{}`)}}},
	{name: "hermes malformed arguments stay content", cfg: ParserConfig{Tools: weatherTools},
		in:   "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": Paris}}\n</tool_call>",
		want: Result{Content: "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": Paris}}\n</tool_call>"},
		events: []Event{
			{Kind: EventContent, Text: "Sure."},
			{Kind: EventToolCallStart, Index: 0, ID: "call_1", Name: "get_weather"},
			{Kind: EventToolCallArgs, Index: 0, Text: `{"city":`},
			{Kind: EventToolCallEnd, Index: 0},
			{Kind: EventContent, Text: "\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": Paris}}\n</tool_call>"},
		}},
	{name: "hermes unknown tool stays content", cfg: ParserConfig{Tools: weatherTools},
		in: "<tool_call>{\"name\": \"rm_rf\", \"arguments\": {}}</tool_call>", want: Result{Content: "<tool_call>{\"name\": \"rm_rf\", \"arguments\": {}}</tool_call>"}},
	{name: "hermes python dict stays content", cfg: ParserConfig{Tools: weatherTools},
		in: "<tool_call>{'name': 'get_time', 'arguments': {}}</tool_call>", want: Result{Content: "<tool_call>{'name': 'get_time', 'arguments': {}}</tool_call>"}},
	{name: "hermes string arguments", cfg: ParserConfig{Tools: weatherTools},
		in:   `<tool_call>{"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}</tool_call>`,
		want: Result{ToolCalls: []openai.ToolCall{call("call_1", "get_weather", `{"city":"Paris"}`)}}},
	{name: "hermes null arguments", cfg: ParserConfig{Tools: weatherTools},
		in:   `<tool_call>{"name": "get_time", "arguments": null}</tool_call>`,
		want: Result{ToolCalls: []openai.ToolCall{call("call_1", "get_time", `{}`)}}},
	{name: "hermes no arguments", cfg: ParserConfig{Tools: weatherTools},
		in:   `<tool_call>{"name": "get_time"}</tool_call>`,
		want: Result{ToolCalls: []openai.ToolCall{call("call_1", "get_time", `{}`)}}},
	{name: "hermes arguments before name", cfg: ParserConfig{Tools: weatherTools},
		in:   `<tool_call>{"arguments": {"city": "Rome"}, "name": "get_weather"}</tool_call>`,
		want: Result{ToolCalls: []openai.ToolCall{call("call_1", "get_weather", `{"city":"Rome"}`)}}},
	{name: "hermes extra member", cfg: ParserConfig{Tools: weatherTools},
		in:   `<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}, "why": "asked"}</tool_call>`,
		want: Result{ToolCalls: []openai.ToolCall{call("call_1", "get_weather", `{"city":"Rome"}`)}}},
	{name: "hermes close swallowed by stop", cfg: ParserConfig{Tools: weatherTools},
		in:   "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}\n",
		want: Result{ToolCalls: []openai.ToolCall{call("call_1", "get_weather", `{"city":"Oslo"}`)}}},
	{name: "hermes truncated", cfg: ParserConfig{Tools: weatherTools},
		in:   "<tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Os",
		want: Result{Content: "<tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Os"}},
	{name: "hermes tricky arguments", cfg: ParserConfig{Tools: weatherTools},
		in:   "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"n\": -1.5e3, \"b\": true, \"z\": null, \"a\": [1, \"x\\\"y }\", {}], \"s\": \"Zürich 🌧 \\u00e9\"}}</tool_call>",
		want: Result{ToolCalls: []openai.ToolCall{call("call_1", "get_weather", `{"n":-1.5e3,"b":true,"z":null,"a":[1,"x\"y }",{}],"s":"Zürich 🌧 \u00e9"}`)}}},
	{name: "tags without tools are content", in: "<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>",
		want: Result{Content: "<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>"}},
	{name: "max calls", cfg: ParserConfig{Tools: weatherTools, MaxCalls: 1},
		in: "<tool_call>{\"name\":\"get_time\",\"arguments\":{}}</tool_call>\n<tool_call>{\"name\":\"get_time\",\"arguments\":{}}</tool_call>",
		want: Result{Content: "<tool_call>{\"name\":\"get_time\",\"arguments\":{}}</tool_call>",
			ToolCalls: []openai.ToolCall{call("call_1", "get_time", `{}`)}}},
	{name: "think then call", cfg: ParserConfig{Tools: weatherTools},
		in:   "<think>\nNeed weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\"}}\n</tool_call>",
		want: Result{ReasoningContent: "Need weather.", ToolCalls: []openai.ToolCall{call("call_1", "get_weather", `{"city":"Lima"}`)}}},
	{name: "bare call in hermes format", cfg: ParserConfig{Tools: weatherTools},
		in:   `{"name": "get_time", "arguments": {"tz": "UTC"}}`,
		want: Result{ToolCalls: []openai.ToolCall{call("call_1", "get_time", `{"tz":"UTC"}`)}}},
	{name: "json answer is content", cfg: ParserConfig{Tools: weatherTools},
		in: `{"answer": 42, "name": "get_time"}`, want: Result{Content: `{"answer": 42, "name": "get_time"}`}},
	{name: "json answer with name of no tool", cfg: ParserConfig{Tools: weatherTools},
		in: `{"name": "Bob", "age": 3}`, want: Result{Content: `{"name": "Bob", "age": 3}`}},
	{name: "list answer is content", cfg: ParserConfig{Tools: weatherTools},
		in: "[1] First.\n[2] Second.", want: Result{Content: "[1] First.\n[2] Second."}},
	{name: "llama3 call", cfg: ParserConfig{Format: ToolFormatLlama3, Tools: weatherTools},
		in:   `{"name": "get_weather", "parameters": {"city": "Paris"}}`,
		want: Result{ToolCalls: []openai.ToolCall{call("call_1", "get_weather", `{"city":"Paris"}`)}}},
	{name: "llama3 type first", cfg: ParserConfig{Format: ToolFormatLlama3, Tools: weatherTools},
		in:   `{"type": "function", "name": "get_weather", "parameters": {"city": "Paris"}}`,
		want: Result{ToolCalls: []openai.ToolCall{call("call_1", "get_weather", `{"city":"Paris"}`)}}},
	{name: "llama3 python tag", cfg: ParserConfig{Format: ToolFormatLlama3, Tools: weatherTools},
		in:   `<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}`,
		want: Result{ToolCalls: []openai.ToolCall{call("call_1", "get_weather", `{"city":"Paris"}`)}}},
	{name: "llama3 two calls", cfg: ParserConfig{Format: ToolFormatLlama3, Tools: weatherTools},
		in: "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}; {\"name\": \"get_time\", \"parameters\": {}}\n",
		want: Result{ToolCalls: []openai.ToolCall{
			call("call_1", "get_weather", `{"city":"Paris"}`), call("call_2", "get_time", `{}`)}}},
	{name: "llama3 text", cfg: ParserConfig{Format: ToolFormatLlama3, Tools: weatherTools},
		in: "The weather is {unknown}.", want: Result{Content: "The weather is {unknown}."}},
	{name: "mistral array", cfg: ParserConfig{Format: ToolFormatMistral, Tools: weatherTools},
		in: `[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abc123def"}, {"name": "get_time", "arguments": {}}]`,
		want: Result{ToolCalls: []openai.ToolCall{
			call("call_1", "get_weather", `{"city":"Paris"}`), call("call_2", "get_time", `{}`)}}},
	{name: "mistral bare array", cfg: ParserConfig{Format: ToolFormatMistral, Tools: weatherTools},
		in:   ` [{"name": "get_weather", "arguments": {"city": "Paris"}}]`,
		want: Result{ToolCalls: []openai.ToolCall{call("call_1", "get_weather", `{"city":"Paris"}`)}}},
	{name: "mistral named", cfg: ParserConfig{Format: ToolFormatMistral, Tools: weatherTools},
		in: `Checking.[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{}`,
		want: Result{Content: "Checking.", ToolCalls: []openai.ToolCall{
			call("call_1", "get_weather", `{"city":"Paris"}`), call("call_2", "get_time", `{}`)}}},
	{name: "mistral named without control tokens", cfg: ParserConfig{Format: ToolFormatMistral, Tools: weatherTools},
		in: `get_weather{"city": "Paris"}get_time{}`,
		want: Result{ToolCalls: []openai.ToolCall{
			call("call_1", "get_weather", `{"city":"Paris"}`), call("call_2", "get_time", `{}`)}}},
	{name: "mistral text starting with a tool name", cfg: ParserConfig{Format: ToolFormatMistral, Tools: weatherTools},
		in: "get_weather is a tool.", want: Result{Content: "get_weather is a tool."}},
	{name: "mistral array with unusual second call", cfg: ParserConfig{Format: ToolFormatMistral, Tools: weatherTools},
		in:   `[TOOL_CALLS][{"name": "get_time", "arguments": {}}, {"id": "x", "arguments": {"city": "Rome"}, "name": "get_weather"}]`,
		want: Result{ToolCalls: []openai.ToolCall{call("call_1", "get_time", `{}`), call("call_2", "get_weather", `{"city":"Rome"}`)}}},
	{name: "mistral array with bad second call", cfg: ParserConfig{Format: ToolFormatMistral, Tools: weatherTools},
		in:   `[TOOL_CALLS][{"name": "get_time", "arguments": {}}, {"name": "nope", "arguments": {}}]`,
		want: Result{Content: `, {"name": "nope", "arguments": {}}]`, ToolCalls: []openai.ToolCall{call("call_1", "get_time", `{}`)}}},
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			evs, res := runParser(tc.cfg, tc.in)
			if !reflect.DeepEqual(res, tc.want) {
				t.Errorf("result\n got %#v\nwant %#v", res, tc.want)
			}
			if tc.events != nil && !reflect.DeepEqual(evs, tc.events) {
				t.Errorf("events\n got %#v\nwant %#v", evs, tc.events)
			}
			checkEvents(t, evs, res)
		})
	}
}

// TestParseEverySplit feeds every case split at every byte, and byte by
// byte, and expects the same events and result as in one piece.
func TestParseEverySplit(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			wantEvs, wantRes := runParser(tc.cfg, tc.in)
			for i := 0; i <= len(tc.in); i++ {
				evs, res := runParser(tc.cfg, tc.in[:i], tc.in[i:])
				if !reflect.DeepEqual(evs, wantEvs) || !reflect.DeepEqual(res, wantRes) {
					t.Fatalf("split at %d (%q | %q):\n got %#v\n     %#v\nwant %#v\n     %#v", i, tc.in[:i], tc.in[i:], evs, res, wantEvs, wantRes)
				}
			}
			bytes := make([]string, len(tc.in))
			for i := 0; i < len(tc.in); i++ {
				bytes[i] = tc.in[i : i+1]
			}
			evs, res := runParser(tc.cfg, bytes...)
			if !reflect.DeepEqual(evs, wantEvs) || !reflect.DeepEqual(res, wantRes) {
				t.Fatalf("byte by byte:\n got %#v\n     %#v\nwant %#v\n     %#v", evs, res, wantEvs, wantRes)
			}
		})
	}
}

// checkEvents checks that the events tell the same story as the result:
// the deltas add up to the content and reasoning, every call of the result
// was streamed with the same id, name and arguments, and every started
// call ended.
func checkEvents(t *testing.T, evs []Event, res Result) {
	t.Helper()
	var content, reasoning strings.Builder
	type streamed struct {
		id, name string
		args     strings.Builder
		ended    bool
	}
	calls := map[int]*streamed{}
	for _, e := range evs {
		switch e.Kind {
		case EventContent:
			content.WriteString(e.Text)
		case EventReasoning:
			reasoning.WriteString(e.Text)
		case EventToolCallStart:
			if calls[e.Index] != nil {
				t.Errorf("call %d started twice", e.Index)
			}
			calls[e.Index] = &streamed{id: e.ID, name: e.Name}
		case EventToolCallArgs:
			c := calls[e.Index]
			if c == nil || c.ended {
				t.Fatalf("arguments for call %d outside its start and end", e.Index)
			}
			c.args.WriteString(e.Text)
		case EventToolCallEnd:
			c := calls[e.Index]
			if c == nil || c.ended {
				t.Fatalf("call %d ended without start or twice", e.Index)
			}
			c.ended = true
		}
	}
	if content.String() != res.Content || reasoning.String() != res.ReasoningContent {
		t.Errorf("deltas add up to content %q reasoning %q, result has %q and %q", content.String(), reasoning.String(), res.Content, res.ReasoningContent)
	}
	for i, c := range calls {
		if !c.ended {
			t.Errorf("call %d never ended", i)
		}
	}
	for _, rc := range res.ToolCalls {
		found := false
		for _, c := range calls {
			if c.id == rc.ID {
				found = true
				if c.name != rc.Function.Name || c.args.String() != rc.Function.Arguments {
					t.Errorf("call %s streamed as %s(%s), result has %s(%s)", rc.ID, c.name, c.args.String(), rc.Function.Name, rc.Function.Arguments)
				}
			}
		}
		if !found {
			t.Errorf("call %s in the result was never streamed", rc.ID)
		}
		if !json.Valid([]byte(rc.Function.Arguments)) {
			t.Errorf("call %s arguments are not JSON: %s", rc.ID, rc.Function.Arguments)
		}
	}
}

func TestFinishReason(t *testing.T) {
	withCall := Result{ToolCalls: []openai.ToolCall{call("a", "f", "{}")}}
	for _, tc := range []struct {
		res    Result
		reason engine.FinishReason
		want   string
	}{
		{Result{Content: "x"}, engine.FinishStop, "stop"},
		{Result{Content: "x"}, engine.FinishLength, "length"},
		{withCall, engine.FinishStop, "tool_calls"},
		{withCall, engine.FinishLength, "length"},
		{Result{}, engine.FinishCancelled, "stop"},
	} {
		if got := tc.res.FinishReason(tc.reason); got != tc.want {
			t.Errorf("FinishReason(%v) with %d calls = %q, want %q", tc.reason, len(tc.res.ToolCalls), got, tc.want)
		}
	}
}

func TestResultMessage(t *testing.T) {
	m := Result{ToolCalls: []openai.ToolCall{call("a", "f", "{}")}}.Message()
	if !m.Content.IsNull() || len(m.ToolCalls) != 1 || m.Role != "assistant" {
		t.Errorf("calls only: %+v", m)
	}
	m = Result{}.Message()
	if m.Content.IsNull() || m.Content.String() != "" {
		t.Errorf("empty answer must have empty, not null, content: %+v", m)
	}
}

func TestDefaultIDs(t *testing.T) {
	for _, tc := range []struct {
		format ToolFormat
		ok     func(string) bool
	}{
		{ToolFormatHermes, func(id string) bool { return strings.HasPrefix(id, "call_") && len(id) == 29 }},
		{ToolFormatMistral, isShortID},
	} {
		p := NewParser(ParserConfig{Format: tc.format, Tools: []string{"f"}})
		p.Feed(`<tool_call>{"name": "f", "arguments": {}}</tool_call>[TOOL_CALLS]f[ARGS]{}`)
		p.Finish()
		calls := p.Result().ToolCalls
		if len(calls) != 1 || !tc.ok(calls[0].ID) {
			t.Errorf("%s: calls %+v", tc.format, calls)
		}
	}
	if a, b := newCallID(), newCallID(); a == b {
		t.Errorf("two ids alike: %s", a)
	}
}
