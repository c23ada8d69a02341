package hermes

import (
	"strings"
	"testing"
	"unicode/utf8"
)

type collected struct {
	text, thought strings.Builder
	calls         []Call
}

func run(chunks []string) *collected {
	var c collected
	p := New(Events{
		Text:    func(s string) { c.text.WriteString(s) },
		Thought: func(s string) { c.thought.WriteString(s) },
		Call:    func(x Call) { c.calls = append(c.calls, x) },
	})
	for _, ch := range chunks {
		p.Feed(ch)
	}
	p.Close()
	return &c
}

func TestParser(t *testing.T) {
	for _, tc := range []struct {
		name          string
		in            string
		text, thought string
		calls         []Call
	}{
		{name: "plain", in: "just text < not a tag", text: "just text < not a tag"},
		{name: "think", in: "<think>hmm</think>Answer", text: "Answer", thought: "hmm"},
		{name: "call", in: `Sure.<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>`,
			text: "Sure.", calls: []Call{{Name: "get_weather", Args: `{"city":"Paris"}`}}},
		{name: "two calls", in: `<tool_call>{"name":"a","arguments":{}}</tool_call><tool_call>{"name":"b","arguments":"{\"x\":1}"}</tool_call>`,
			calls: []Call{{Name: "a", Args: `{}`}, {Name: "b", Args: `{"x":1}`}}},
		{name: "unterminated call", in: `<tool_call>{"name":"a","arguments":{"q":"x"}}`, calls: []Call{{Name: "a", Args: `{"q":"x"}`}}},
		{name: "not a call", in: `<tool_call>oops</tool_call>after`, text: "<tool_call>oops</tool_call>after"},
		{name: "parameters", in: `<tool_call>{"name":"a","parameters":{"k":2}}</tool_call>`, calls: []Call{{Name: "a", Args: `{"k":2}`}}},
		{name: "partial tag at end", in: "text <tool_", text: "text <tool_"},
	} {
		// Whole, and split at every byte: the result must not depend on
		// how the stream was chunked.
		splits := [][]string{{tc.in}}
		for i := 1; i < len(tc.in); i++ {
			splits = append(splits, []string{tc.in[:i], tc.in[i:]})
		}
		for _, chunks := range splits {
			c := run(chunks)
			if c.text.String() != tc.text || c.thought.String() != tc.thought || len(c.calls) != len(tc.calls) {
				t.Fatalf("%s %q: text %q thought %q calls %v", tc.name, chunks, c.text.String(), c.thought.String(), c.calls)
			}
			for i := range tc.calls {
				if c.calls[i] != tc.calls[i] {
					t.Fatalf("%s %q: call %v, want %v", tc.name, chunks, c.calls[i], tc.calls[i])
				}
			}
		}
	}
}

// FuzzParser: any input, chunked anywhere, parses the same as whole, and
// text outside tags is never lost.
func FuzzParser(f *testing.F) {
	f.Add("<think>a</think>b<tool_call>{\"name\":\"x\",\"arguments\":{}}</tool_call>c", 5)
	f.Add("<tool_call><think></tool_call>", 3)
	f.Add("plain <thin", 1)
	f.Fuzz(func(t *testing.T, s string, cut int) {
		whole := run([]string{s})
		if cut < 0 {
			cut = -cut
		}
		cut %= len(s) + 1
		split := run([]string{s[:cut], s[cut:]})
		if whole.text.String() != split.text.String() || whole.thought.String() != split.thought.String() || len(whole.calls) != len(split.calls) {
			t.Fatalf("chunking changed the result: %q vs %q", whole.text.String(), split.text.String())
		}
		if !strings.Contains(s, "<") && whole.text.String() != s {
			t.Fatalf("text without tags changed: %q", whole.text.String())
		}
		if utf8.ValidString(s) && !utf8.ValidString(whole.text.String()+whole.thought.String()) {
			t.Fatal("valid UTF-8 became invalid")
		}
	})
}
