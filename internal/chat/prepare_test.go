package chat

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// citySchemaGrammar is what llama.cpp's json_schema_to_grammar makes of
// {"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}.
const citySchemaGrammar = `char ::= [^"\\\x7F\x00-\x1F] | [\\] (["\\bfnrt] | "u" [0-9a-fA-F]{4})
city-kv ::= "\"city\"" space ":" space string
root ::= "{" space city-kv "}" space
space ::= | " " | "\n"{1,2} [ \t]{0,20}
string ::= "\"" char* "\"" space
`

// emptyObjectGrammar stands for any other schema.
const emptyObjectGrammar = `root ::= "{" space "}" space
space ::= | " "
`

// fakeConverter plays SchemaToGrammar without llama.cpp.
var fakeConverter = SchemaConverterFunc(func(schema []byte) (string, error) {
	switch {
	case strings.Contains(string(schema), "$bad"):
		return "", errors.New("unsupported schema")
	case strings.Contains(string(schema), "city"):
		return citySchemaGrammar, nil
	default:
		return emptyObjectGrammar, nil
	}
})

func ptr[T any](v T) *T { return &v }

var cityParams = json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`)

func testTools() []openai.Tool {
	return []openai.Tool{
		{Type: "function", Function: openai.FunctionDecl{Name: "get_weather", Description: "Weather.", Parameters: cityParams}},
		{Type: "function", Function: openai.FunctionDecl{Name: "get_time", Parameters: json.RawMessage(`{"type":"object","properties":{}}`)}},
	}
}

func chatRequest(mods ...func(*openai.ChatRequest)) *openai.ChatRequest {
	r := &openai.ChatRequest{Model: "m", Messages: []openai.Message{
		{Role: "system", Content: openai.TextContent("Be brief.")},
		{Role: "user", Content: openai.TextContent("Weather in Paris?")},
	}}
	for _, m := range mods {
		m(r)
	}
	return r
}

func withTools(choice *openai.ToolChoice) func(*openai.ChatRequest) {
	return func(r *openai.ChatRequest) { r.Tools, r.ToolChoice = testTools(), choice }
}

func builtinTemplate(t *testing.T) *Template {
	t.Helper()
	tmpl, err := ForModel(engine.Info{BOS: "<s>", EOS: "</s>", AddBOS: true}, "")
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

func TestPrepareToolModes(t *testing.T) {
	tmpl := builtinTemplate(t)
	if !tmpl.Builtin() || tmpl.ToolFormat() != ToolFormatHermes {
		t.Fatalf("no template must give the built-in ChatML with Hermes calls")
	}
	for _, tc := range []struct {
		name       string
		req        *openai.ChatRequest
		toolsShown bool
		parseTools []string
		maxCalls   int
		grammar    []string // substrings
		stop       []string
	}{
		{name: "no tools", req: chatRequest(), stop: []string{"<|im_end|>", "<|im_start|>"}},
		{name: "auto", req: chatRequest(withTools(nil)), toolsShown: true, parseTools: []string{"get_weather", "get_time"}, stop: []string{"<|im_end|>", "<|im_start|>"}},
		{name: "none", req: chatRequest(withTools(&openai.ToolChoice{Mode: "none"})), stop: []string{"<|im_end|>", "<|im_start|>"}},
		{name: "auto single", req: chatRequest(withTools(nil), func(r *openai.ChatRequest) { r.ParallelToolCalls = ptr(false) }),
			toolsShown: true, parseTools: []string{"get_weather", "get_time"}, maxCalls: 1, stop: []string{"</tool_call>", "<|im_end|>", "<|im_start|>"}},
		{name: "required", req: chatRequest(withTools(&openai.ToolChoice{Mode: "required"})), toolsShown: true,
			parseTools: []string{"get_weather", "get_time"}, maxCalls: MaxForcedCalls,
			grammar: []string{`"<tool_call>\n" call "\n</tool_call>"`, `\"get_weather\"`, `\"get_time\"`, "tool0-city-kv", "{0,7}"}, stop: []string{"<|im_end|>", "<|im_start|>"}},
		{name: "named", req: chatRequest(withTools(&openai.ToolChoice{Mode: "function", Function: "get_weather"})),
			toolsShown: true, parseTools: []string{"get_weather", "get_time"}, maxCalls: 1,
			grammar: []string{`\"get_weather\"`, "root ::= call-block\n"}, stop: []string{"<|im_end|>", "<|im_start|>"}},
		{name: "json object", req: chatRequest(func(r *openai.ChatRequest) { r.ResponseFormat = &openai.ResponseFormat{Type: "json_object"} }),
			grammar: []string{"root ::= json-object\n"}, stop: []string{"<|im_end|>", "<|im_start|>"}},
		{name: "json schema with auto tools", req: chatRequest(withTools(nil), func(r *openai.ChatRequest) {
			r.ResponseFormat = &openai.ResponseFormat{Type: "json_schema", JSONSchema: &openai.JSONSchema{Name: "w", Schema: cityParams}}
		}), toolsShown: true, parseTools: []string{"get_weather", "get_time"},
			grammar: []string{"root ::= ( schema-root | call-block", "schema-city-kv ::="}, stop: []string{"<|im_end|>", "<|im_start|>"}},
		{name: "text format", req: chatRequest(func(r *openai.ChatRequest) { r.ResponseFormat = &openai.ResponseFormat{Type: "text"} }), stop: []string{"<|im_end|>", "<|im_start|>"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tmpl.Prepare(tc.req, fakeConverter)
			if err != nil {
				t.Fatal(err)
			}
			if shown := strings.Contains(p.Prompt, "<tools>"); shown != tc.toolsShown {
				t.Errorf("tools in prompt: %v, want %v\n%s", shown, tc.toolsShown, p.Prompt)
			}
			if strings.Join(p.Parse.Tools, ",") != strings.Join(tc.parseTools, ",") || p.Parse.MaxCalls != tc.maxCalls {
				t.Errorf("parse config %+v", p.Parse)
			}
			if strings.Join(p.Stop, "|") != strings.Join(tc.stop, "|") {
				t.Errorf("stop %q, want %q", p.Stop, tc.stop)
			}
			if len(tc.grammar) == 0 && p.Grammar != "" {
				t.Errorf("unexpected grammar:\n%s", p.Grammar)
			}
			for _, want := range tc.grammar {
				if !strings.Contains(p.Grammar, want) {
					t.Errorf("grammar lacks %q:\n%s", want, p.Grammar)
				}
			}
			if p.Grammar != "" {
				parseGBNF(t, p.Grammar)
			}
			if strings.HasPrefix(p.Prompt, "<s>") {
				t.Errorf("prompt starts with BOS although the tokenizer adds it")
			}
			if !strings.HasSuffix(p.Prompt, "<|im_start|>assistant\n") {
				t.Errorf("prompt does not end with the generation prompt: %q", p.Prompt)
			}
		})
	}
}

// TestForcedGrammarMatchesParser checks, for every tool format and think
// mode, that the forced-call grammar accepts the calls the model should
// write, refuses other names and broken arguments, and that the parser
// reads whatever the grammar accepts as those calls.
func TestForcedGrammarMatchesParser(t *testing.T) {
	hermes := func(name, args string) string {
		return "<tool_call>\n{\"name\": \"" + name + "\", \"arguments\": " + args + "}\n</tool_call>"
	}
	llama := func(name, args string) string { return "{\"name\": \"" + name + "\", \"parameters\": " + args + "}" }
	mistral := func(name, args string) string { return "{\"name\": \"" + name + "\", \"arguments\": " + args + "}" }
	for _, tc := range []struct {
		template string
		kwargs   map[string]any
		accept   []string
		reject   []string
		think    string // reasoning the parser should find
	}{
		{template: "qwen25",
			accept: []string{hermes("get_weather", `{"city": "Paris"}`), hermes("get_weather", `{"city":"Rome"}`) + "\n" + hermes("get_time", `{}`)},
			reject: []string{hermes("get_wether", `{"city": "Paris"}`), hermes("get_weather", `{"town": "Paris"}`), "Sure! " + hermes("get_time", `{}`), "<think>x</think>" + hermes("get_time", "{}")}},
		{template: "chatml",
			accept: []string{hermes("get_time", `{ }`)},
			reject: []string{hermes("get_time", `{"x": 1}`)}},
		{template: "qwen3", think: "Paris is in France.",
			accept: []string{"<think>\nParis is in France.\n</think>\n\n" + hermes("get_weather", `{"city": "Paris"}`), hermes("get_time", `{}`)},
			reject: []string{"<think>a</think>b</think>" + hermes("get_time", `{}`), "<think>unclosed" + hermes("get_time", `{}`)}},
		{template: "qwen3", kwargs: map[string]any{"enable_thinking": false},
			accept: []string{hermes("get_time", `{}`)},
			reject: []string{"<think>x</think>" + hermes("get_time", `{}`)}},
		{template: "deepseek_r1", think: "Let me see.",
			accept: []string{"Let me see.\n</think>\n\n" + hermes("get_weather", `{"city": "Oslo"}`)},
			reject: []string{hermes("get_time", `{}`), "x</think>y</think>" + hermes("get_time", `{}`)}},
		{template: "llama31",
			accept: []string{llama("get_weather", `{"city": "Paris"}`), llama("get_time", `{}`) + "\n" + llama("get_time", `{}`)},
			reject: []string{mistral("get_time", `{}`), "<|python_tag|>" + llama("get_time", "{}")}},
		{template: "mistral",
			accept: []string{"[" + mistral("get_weather", `{"city": "Paris"}`) + "]", "[TOOL_CALLS][" + mistral("get_time", `{}`) + ", " + mistral("get_time", `{}`) + "]"},
			reject: []string{mistral("get_time", `{}`), "[" + mistral("get_time", `{}`) + ","}},
	} {
		t.Run(tc.template, func(t *testing.T) {
			tmpl, _ := loadTemplate(t, tc.template)
			req := chatRequest(withTools(&openai.ToolChoice{Mode: "required"}), func(r *openai.ChatRequest) {
				r.ChatTemplateKwargs = tc.kwargs
				r.Messages = r.Messages[1:] // Gemma-style templates aside, all take a lone user turn
			})
			p, err := tmpl.Prepare(req, fakeConverter)
			if err != nil {
				t.Fatal(err)
			}
			g := parseGBNF(t, p.Grammar)
			for _, s := range tc.accept {
				if !g.accepts(s) {
					t.Errorf("grammar refuses %q\n%s", s, p.Grammar)
					continue
				}
				_, res := runParser(p.Parse, s)
				if len(res.ToolCalls) == 0 || res.Content != "" {
					t.Errorf("parser reads %q as %+v", s, res)
				}
				if tc.think != "" && strings.Contains(s, tc.think) && res.ReasoningContent != tc.think {
					t.Errorf("reasoning %q, want %q", res.ReasoningContent, tc.think)
				}
				for _, c := range res.ToolCalls {
					if !json.Valid([]byte(c.Function.Arguments)) {
						t.Errorf("arguments %q", c.Function.Arguments)
					}
				}
			}
			for _, s := range tc.reject {
				if g.accepts(s) {
					t.Errorf("grammar accepts %q", s)
				}
			}
		})
	}
}

func TestNotContainingGrammar(t *testing.T) {
	for _, stop := range []string{"</think>", "abab", "aab", "x"} {
		g := &gbnf{}
		notContainingRules(g, "body", stop)
		gram := parseGBNF(t, "root ::= body\n"+g.String())
		rng := rand.New(rand.NewPCG(1, 2))
		alphabet := []rune(stop + "<é")
		for range 3000 {
			b := make([]rune, rng.IntN(10))
			for i := range b {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			}
			s := string(b)
			if got, want := gram.accepts(s), !strings.Contains(s, stop); got != want {
				t.Fatalf("stop %q: accepts(%q) = %v, want %v", stop, s, got, want)
			}
		}
	}
}

func TestJSONGrammar(t *testing.T) {
	g := &gbnf{}
	_, obj := jsonRules(g, "j-")
	gram := parseGBNF(t, "root ::= "+obj+"\n"+g.String())
	for s, want := range map[string]bool{
		`{}`: true, `{"a": 1}`: true, `{"a": [1, -2.5e3, "x\"\u00e9", true, null, {"b": {}}]}`: true, "{\n  \"k\": \"v\"\n}": true,
		`[]`: false, `"x"`: false, `{"a": 01}`: false, `{"a": "\x01"}`: false, `{a: 1}`: false, `{"a": 1,}`: false,
	} {
		if got := gram.accepts(s); got != want {
			t.Errorf("accepts(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestPrefixRules(t *testing.T) {
	out, err := prefixRules(citySchemaGrammar+"# a comment naming root and space\n", "t1-")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`t1-root ::= "{" t1-space t1-city-kv "}" t1-space`, `t1-city-kv ::= "\"city\"" t1-space`, `[0-9a-fA-F]{4}`, `"\n"{1,2}`, "# a comment naming root and space"} {
		if !strings.Contains(out, want) {
			t.Errorf("renamed grammar lacks %q:\n%s", want, out)
		}
	}
	gram := parseGBNF(t, "root ::= t1-root\n"+out)
	if !gram.accepts(`{"city": "Paris"}`) || gram.accepts(`{"town": "Paris"}`) {
		t.Error("renamed grammar does not match like the original")
	}
	if _, err := prefixRules(`item ::= "x"`, "p-"); err == nil {
		t.Error("a grammar without root must be refused")
	}
	if _, err := prefixRules(`root ::= "x`, "p-"); err == nil {
		t.Error("an unterminated literal must be refused")
	}
}

func TestPrepareErrors(t *testing.T) {
	tmpl := builtinTemplate(t)
	gemma, _ := loadTemplate(t, "gemma")
	for _, tc := range []struct {
		name  string
		tmpl  *Template
		req   *openai.ChatRequest
		param string
	}{
		{name: "image", tmpl: tmpl, req: chatRequest(func(r *openai.ChatRequest) {
			r.Messages[1].Content = openai.MessageContent{Parts: []openai.ContentPart{{Type: "text", Text: "What is this?"}, {Type: "image_url", ImageURL: &openai.ImageURL{URL: "https://x/y.png"}}}}
		}), param: "messages[1].content[1]"},
		{name: "bad schema", tmpl: tmpl, req: chatRequest(withTools(&openai.ToolChoice{Mode: "required"}), func(r *openai.ChatRequest) {
			r.Tools[1].Function.Parameters = json.RawMessage(`{"$bad": true}`)
		}), param: "tools[1].function.parameters"},
		{name: "bad response schema", tmpl: tmpl, req: chatRequest(func(r *openai.ChatRequest) {
			r.ResponseFormat = &openai.ResponseFormat{Type: "json_schema", JSONSchema: &openai.JSONSchema{Name: "x", Schema: json.RawMessage(`{"$bad": 1}`)}}
		}), param: "response_format.json_schema.schema"},
		{name: "schema nested too deep", tmpl: tmpl, req: chatRequest(func(r *openai.ChatRequest) {
			deep := strings.Repeat(`{"type":"object","properties":{"a":`, 70) + `{}` + strings.Repeat(`}}`, 70)
			r.ResponseFormat = &openai.ResponseFormat{Type: "json_schema", JSONSchema: &openai.JSONSchema{Name: "x", Schema: json.RawMessage(deep)}}
		}), param: "response_format.json_schema.schema"},
		{name: "template refuses", tmpl: gemma, req: chatRequest(func(r *openai.ChatRequest) {
			r.Messages = append(r.Messages, openai.Message{Role: "user", Content: openai.TextContent("again")})
		}), param: "messages"},
		{name: "temperature", tmpl: tmpl, req: chatRequest(func(r *openai.ChatRequest) { r.Temperature = ptr[float32](2.5) }), param: "temperature"},
		{name: "unknown tool", tmpl: tmpl, req: chatRequest(withTools(&openai.ToolChoice{Mode: "function", Function: "nope"})), param: "tool_choice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.tmpl.Prepare(tc.req, fakeConverter)
			var oe *openai.Error
			if !errors.As(err, &oe) || oe.Status != 400 || oe.Param != tc.param {
				t.Fatalf("got %v, want a 400 about %s", err, tc.param)
			}
		})
	}
}

func TestPrepareThinking(t *testing.T) {
	for _, tc := range []struct {
		template    string
		kwargs      map[string]any
		inReasoning bool
	}{
		{"qwen3", nil, false},
		{"qwen3", map[string]any{"enable_thinking": false}, false},
		{"deepseek_r1", nil, true},
		{"qwen25", nil, false},
	} {
		tmpl, _ := loadTemplate(t, tc.template)
		p, err := tmpl.Prepare(chatRequest(func(r *openai.ChatRequest) { r.ChatTemplateKwargs = tc.kwargs }), nil)
		if err != nil {
			t.Fatal(err)
		}
		if p.Parse.InReasoning != tc.inReasoning {
			t.Errorf("%s %v: InReasoning %v", tc.template, tc.kwargs, p.Parse.InReasoning)
		}
	}
}

func TestPrepareMistralIDs(t *testing.T) {
	tmpl, _ := loadTemplate(t, "mistral")
	req := chatRequest(withTools(nil), func(r *openai.ChatRequest) {
		r.Messages = []openai.Message{
			{Role: "user", Content: openai.TextContent("Weather?")},
			{Role: "assistant", ToolCalls: []openai.ToolCall{{ID: "call_7f3a9c1e2b4d", Type: "function", Function: openai.FunctionCall{Name: "get_weather", Arguments: `{"city":"Paris"}`}}}},
			{Role: "tool", ToolCallID: "call_7f3a9c1e2b4d", Content: openai.TextContent("sunny")},
		}
	})
	p, err := tmpl.Prepare(req, nil)
	if err != nil {
		t.Fatalf("OpenAI-style ids must be mapped for Mistral templates: %v", err)
	}
	id := tmpl.t.mapID("call_7f3a9c1e2b4d")
	if !isShortID(id) || strings.Count(p.Prompt, `"`+id+`"`) != 2 {
		t.Errorf("call and result should share the mapped id %s:\n%s", id, p.Prompt)
	}
	if p.Parse.NewID == nil || !isShortID(p.Parse.NewID()) {
		t.Error("new call ids must suit the template")
	}
}

func TestChatGeneration(t *testing.T) {
	def := engine.Sampling{Temperature: DefaultTemperature, TopP: DefaultTopP, TopK: DefaultTopK, MinP: DefaultMinP, RepeatPenalty: 1}
	seed := func(v uint32) *uint32 { return &v }
	for _, tc := range []struct {
		name  string
		req   openai.ChatRequest
		want  Generation
		param string
	}{
		{name: "defaults", want: Generation{Sampling: def, Stop: []string{}}},
		{name: "explicit", req: openai.ChatRequest{Temperature: ptr[float32](0), TopP: ptr[float32](1), TopK: ptr(0), MinP: ptr[float32](0),
			Seed: ptr[int64](42), PresencePenalty: ptr[float32](0.5), FrequencyPenalty: ptr[float32](-0.5), RepeatPenalty: ptr[float32](1.1),
			Stop: openai.StringOrList{"\n\n", "END"}, MaxTokens: ptr(10), Logprobs: true, TopLogprobs: ptr(5)},
			want: Generation{MaxTokens: 10, Stop: []string{"\n\n", "END"}, Logprobs: true, TopLogprobs: 5,
				Sampling: engine.Sampling{Temperature: 0, TopP: 1, TopK: 0, MinP: 0, Seed: seed(42), PresencePenalty: 0.5, FrequencyPenalty: -0.5, RepeatPenalty: 1.1}}},
		{name: "max_completion_tokens wins", req: openai.ChatRequest{MaxTokens: ptr(10), MaxCompletionTokens: ptr(20)}, want: Generation{MaxTokens: 20, Sampling: def, Stop: []string{}}},
		{name: "top_p 0 is greedy", req: openai.ChatRequest{TopP: ptr[float32](0)}, want: Generation{Sampling: func() engine.Sampling { s := def; s.TopP, s.Temperature = 0, 0; return s }(), Stop: []string{}}},
		{name: "seed -1 is random", req: openai.ChatRequest{Seed: ptr[int64](-1)}, want: Generation{Sampling: def, Stop: []string{}}},
		{name: "seed high bits", req: openai.ChatRequest{Seed: ptr[int64](1 << 32)}, want: Generation{Sampling: func() engine.Sampling { s := def; s.Seed = seed(1); return s }(), Stop: []string{}}},
		{name: "temperature", req: openai.ChatRequest{Temperature: ptr[float32](2.01)}, param: "temperature"},
		{name: "top_p", req: openai.ChatRequest{TopP: ptr[float32](-0.1)}, param: "top_p"},
		{name: "min_p", req: openai.ChatRequest{MinP: ptr[float32](1.5)}, param: "min_p"},
		{name: "top_k", req: openai.ChatRequest{TopK: ptr(-1)}, param: "top_k"},
		{name: "presence", req: openai.ChatRequest{PresencePenalty: ptr[float32](3)}, param: "presence_penalty"},
		{name: "repeat", req: openai.ChatRequest{RepeatPenalty: ptr[float32](-1)}, param: "repeat_penalty"},
		{name: "max_tokens", req: openai.ChatRequest{MaxTokens: ptr(0)}, param: "max_tokens"},
		{name: "max_completion_tokens", req: openai.ChatRequest{MaxCompletionTokens: ptr(-5)}, param: "max_completion_tokens"},
		{name: "top_logprobs range", req: openai.ChatRequest{Logprobs: true, TopLogprobs: ptr(21)}, param: "top_logprobs"},
		{name: "top_logprobs needs logprobs", req: openai.ChatRequest{TopLogprobs: ptr(2)}, param: "top_logprobs"},
		{name: "empty stop", req: openai.ChatRequest{Stop: openai.StringOrList{"a", ""}}, param: "stop[1]"},
		{name: "too many stops", req: openai.ChatRequest{Stop: make(openai.StringOrList, openai.MaxStopSequences+1)}, param: "stop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ChatGeneration(&tc.req)
			if tc.param != "" {
				var oe *openai.Error
				if !errors.As(err, &oe) || oe.Param != tc.param || oe.Status != 400 {
					t.Fatalf("got %v, want a 400 about %s", err, tc.param)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(tc.want)
			if string(gj) != string(wj) {
				t.Errorf("got  %s\nwant %s", gj, wj)
			}
		})
	}
}

func TestCompletionGeneration(t *testing.T) {
	g, err := CompletionGeneration(&openai.CompletionRequest{MaxTokens: ptr(7), Logprobs: ptr(0), Temperature: ptr[float32](0.2)})
	if err != nil || g.MaxTokens != 7 || !g.Logprobs || g.TopLogprobs != 0 || g.Sampling.Temperature != 0.2 || g.Sampling.TopK != DefaultTopK {
		t.Errorf("got %+v, %v", g, err)
	}
	var oe *openai.Error
	if _, err := CompletionGeneration(&openai.CompletionRequest{Logprobs: ptr(6)}); !errors.As(err, &oe) || oe.Param != "logprobs" {
		t.Errorf("logprobs 6: %v", err)
	}
}

func TestForModelCache(t *testing.T) {
	info := engine.Info{ChatTemplate: "{{ messages[0].content }}", BOS: "<s>"}
	a, err := ForModel(info, "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ForModel(info, "")
	if a != b {
		t.Error("same template compiled twice")
	}
	c, _ := ForModel(info, ChatML)
	if c == a || !c.Builtin() {
		t.Error("the chatml override must select the built-in template")
	}
	if _, err := ForModel(engine.Info{ChatTemplate: "{% if %}"}, ""); !errors.Is(err, ErrTemplate) {
		t.Errorf("a broken template: %v", err)
	}
	if _, err := ForModel(engine.Info{ChatTemplate: "{{ x"}, ""); !errors.Is(err, ErrTemplate) {
		t.Errorf("an unclosed tag: %v", err)
	}
}
