package anthropic

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

// FuzzMessagesRequest decodes and translates arbitrary request bodies: no
// panic, every failure a 4xx *openai.Error that renders as an Anthropic
// envelope, and every success a chat request that passes OpenAI
// validation. The golden request fixtures are its seeds.
func FuzzMessagesRequest(f *testing.F) {
	for _, in := range golden.Inputs(f, "testdata/requests/*.json") {
		data, err := os.ReadFile(filepath.Clean(in))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"x","content":[{"type":"document","source":{"type":"content","content":"s"}}]}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req MessagesRequest
		err := openai.DecodeJSONBytes(body, &req)
		var chat *openai.ChatRequest
		if err == nil {
			chat, _, err = ToOpenAIChat(&req)
		}
		if err != nil {
			var e *openai.Error
			if !errors.As(err, &e) || e.Status < 400 || e.Status > 499 {
				t.Fatalf("error %v is not a client *openai.Error", err)
			}
			status, env := FromError(err)
			if status != e.Status || env.Error.Message == "" || env.Error.Type == "" {
				t.Fatalf("bad envelope %d %+v", status, env)
			}
			return
		}
		if err := chat.Validate(); err != nil {
			t.Fatalf("translation produced an invalid chat request: %v", err)
		}
	})
}

// FuzzStreamTranslator feeds arbitrary upstream chat streams through the
// translator: whatever the upstream sends, the client must get a stream
// that follows the Anthropic grammar (ending in message_stop or an error
// event). The stream fixtures are its seeds.
func FuzzStreamTranslator(f *testing.F) {
	for _, in := range golden.Inputs(f, "testdata/streams/*.sse") {
		data, err := os.ReadFile(filepath.Clean(in))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, upstream []byte) {
		if brokenToolArguments(upstream) {
			// Arguments streamed live cannot be taken back: an upstream
			// whose tool call JSON is broken yields a broken tool input,
			// as it would from Anthropic after a max_tokens cut.
			t.Skip()
		}
		got := runStream(t, upstream)
		if err := ssecheck.AnthropicStream(bytes.NewReader(got)); err != nil {
			t.Fatalf("translated stream breaks the grammar: %v\n%s", err, got)
		}
	})
}

// brokenToolArguments reports whether an upstream stream has a tool call
// whose arguments start as a JSON object but do not end as one.
func brokenToolArguments(upstream []byte) bool {
	events, _ := sse.ReadAll(bytes.NewReader(upstream))
	var chunks []openai.ChatChunk
	for _, ev := range events {
		if c, err := openai.DecodeChunk([]byte(ev.Data)); err == nil {
			chunks = append(chunks, *c)
		}
	}
	for _, ch := range openai.Accumulate(chunks).Choices {
		for _, tc := range ch.Message.ToolCalls {
			a := strings.TrimSpace(tc.Function.Arguments)
			if strings.HasPrefix(a, "{") && !json.Valid([]byte(a)) {
				return true
			}
		}
	}
	return false
}
