package chat

import (
	"strings"
	"testing"

	"github.com/helexa-ai/cortex/internal/wire/openai"
)

func BenchmarkRenderQwen25Tools(b *testing.B) {
	var cases map[string]renderCase
	readJSON(b, "testdata/cases.json", &cases)
	c := cases["tool_history"]
	tmpl, _ := loadTemplate(b, "qwen25")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tmpl.Render(RenderInput{Messages: c.Messages, Tools: c.Tools, AddGenerationPrompt: true}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPrepareRequired(b *testing.B) {
	tmpl, _ := loadTemplate(b, "qwen3")
	req := chatRequest(withTools(&openai.ToolChoice{Mode: "required"}))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tmpl.Prepare(req, fakeConverter); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParserStream feeds a reasoning block, text and a call in
// 4-byte chunks, about a token each.
func BenchmarkParserStream(b *testing.B) {
	out := "<think>\n" + strings.Repeat("Let me think about the weather. ", 20) + "\n</think>\n\n" +
		strings.Repeat("Here is some text. ", 20) +
		"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": [1, 2, 3], \"note\": \"" + strings.Repeat("x", 200) + "\"}}\n</tool_call>"
	var chunks []string
	for i := 0; i < len(out); i += 4 {
		chunks = append(chunks, out[i:min(i+4, len(out))])
	}
	b.SetBytes(int64(len(out)))
	b.ReportAllocs()
	for b.Loop() {
		p := NewParser(ParserConfig{Tools: weatherTools, NewID: func() string { return "call_x" }})
		for _, c := range chunks {
			p.Feed(c)
		}
		p.Finish()
		if len(p.Result().ToolCalls) != 1 {
			b.Fatal("no call")
		}
	}
}
