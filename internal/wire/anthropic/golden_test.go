package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/helexa-ai/cortex/internal/wire/internal/golden"
	"github.com/helexa-ai/cortex/internal/wire/openai"
	"github.com/helexa-ai/cortex/internal/wire/sse"
	"github.com/helexa-ai/cortex/internal/wire/sse/ssecheck"
)

const testModel = "claude-test"

// translateRequest decodes an Anthropic request body and translates it,
// returning what the golden file records: the chat request and warnings,
// or the status and Anthropic error envelope.
func translateRequest(data []byte) (any, *openai.ChatRequest, error) {
	var req MessagesRequest
	err := openai.DecodeJSONBytes(data, &req)
	var chat *openai.ChatRequest
	var warns []Warning
	if err == nil {
		chat, warns, err = ToOpenAIChat(&req)
	}
	if err != nil {
		status, env := FromError(err)
		return map[string]any{"status": status, "error": env}, nil, err
	}
	return map[string]any{"chat_request": chat, "warnings": warns}, chat, nil
}

func TestRequestGolden(t *testing.T) {
	for _, in := range golden.Inputs(t, "testdata/requests/*.json") {
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got, chat, err := translateRequest(data)
			wantErr := strings.HasPrefix(name, "err_")
			if wantErr != (err != nil) {
				t.Fatalf("error = %v, want error: %v", err, wantErr)
			}
			if err != nil {
				var e *openai.Error
				if !errors.As(err, &e) || e.Status != 400 {
					t.Fatalf("error %v is not a 400 *openai.Error", err)
				}
			} else if verr := chat.Validate(); verr != nil {
				t.Fatalf("translated request fails OpenAI validation: %v", verr)
			}
			golden.CompareJSON(t, golden.Path(in), got)
		})
	}
}

func TestResponseGolden(t *testing.T) {
	for _, in := range golden.Inputs(t, "testdata/responses/*.json") {
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var resp openai.ChatResponse
			if err := json.Unmarshal(data, &resp); err != nil {
				t.Fatal(err)
			}
			got := FromOpenAIChat(&resp, testModel)
			checkResponseShape(t, got)
			golden.CompareJSON(t, golden.Path(in), got)
		})
	}
}

// checkResponseShape checks what every Messages response must satisfy.
func checkResponseShape(t *testing.T, m *MessagesResponse) {
	t.Helper()
	if !strings.HasPrefix(m.ID, "msg_") || m.Type != "message" || m.Role != "assistant" || m.Model != testModel {
		t.Errorf("envelope = %s/%s/%s/%s", m.ID, m.Type, m.Role, m.Model)
	}
	if len(m.Content) == 0 {
		t.Error("no content blocks")
	}
	if m.StopReason == nil {
		t.Fatal("stop_reason is null")
	}
	if (*m.StopReason == StopStopSequence) != (m.StopSequence != nil) {
		t.Errorf("stop_reason %s with stop_sequence %v", *m.StopReason, m.StopSequence)
	}
	for i, b := range m.Content {
		if b.Type == BlockToolUse {
			var v map[string]any
			if err := json.Unmarshal(b.Input, &v); err != nil || v == nil {
				t.Errorf("content[%d].input %s is not an object", i, b.Input)
			}
		}
	}
}

// runStream feeds an upstream chat SSE stream through a StreamTranslator
// the way the gateway does and returns the Anthropic SSE it writes.
func runStream(t *testing.T, upstream []byte) []byte {
	t.Helper()
	return golden.Translate(t, upstream, NewStreamTranslator(testModel, "msg_test", 42), WriteEvents,
		func(w *sse.Writer) error { return WriteEvents(w, []StreamEvent{Ping()}) })
}

func TestStreamGolden(t *testing.T) {
	for _, in := range golden.Inputs(t, "testdata/streams/*.sse") {
		name := strings.TrimSuffix(filepath.Base(in), ".sse")
		t.Run(name, func(t *testing.T) {
			upstream, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			// broken_ and lenient_ fixtures break the chat stream rules
			// (lenient_ ones in ways the translator still renders).
			clean := !strings.HasPrefix(name, "broken_") && !strings.HasPrefix(name, "lenient_") && name != "cut"
			if err := ssecheck.OpenAIChatStream(bytes.NewReader(upstream)); (err == nil) != clean {
				t.Fatalf("upstream fixture check = %v, clean fixture: %v", err, clean)
			}
			got := runStream(t, upstream)
			if err := ssecheck.AnthropicStream(bytes.NewReader(got)); err != nil {
				t.Fatalf("translated stream breaks the Anthropic grammar: %v\n%s", err, got)
			}
			golden.Compare(t, golden.Path(in), got)

			// Streamed and non-streamed translations must agree.
			chunks, finished := readChunks(t, upstream)
			if !finished || bytes.Contains(got, []byte("event: error")) {
				return
			}
			acc := openai.Accumulate(chunks)
			want := summarize(FromOpenAIChat(acc, testModel))
			s := summarize(accumulateStream(t, got))
			if acc.Usage == nil {
				// Without upstream usage the stream falls back to the
				// prompt size it was given and a chunk count.
				s.InputTokens, s.OutputTokens = want.InputTokens, want.OutputTokens
			}
			if want.StopReason == StopMaxTokens {
				// A tool call cut short streams as the partial JSON it is
				// (as Anthropic's does); the non-stream answer wraps it
				// (see ToolInput). Their texts must still agree.
				s.Tools, want.Tools = nil, nil
			}
			if !reflect.DeepEqual(s, want) {
				t.Errorf("stream adds up to\n%+v\nnon-stream translation is\n%+v", s, want)
			}
		})
	}
}

func readChunks(t *testing.T, upstream []byte) ([]openai.ChatChunk, bool) {
	t.Helper()
	events, err := sse.ReadAll(bytes.NewReader(upstream))
	if err != nil {
		return nil, false
	}
	var chunks []openai.ChatChunk
	for _, ev := range events {
		if ev.IsDone() {
			return chunks, true
		}
		c, err := openai.DecodeChunk([]byte(ev.Data))
		if err != nil {
			return nil, false
		}
		chunks = append(chunks, *c)
	}
	return nil, false
}

// summary is what a client takes from a message, independent of how text
// was split into blocks.
type summary struct {
	Thinking, Text string
	Signatures     []string
	Tools          []string
	StopReason     string
	StopSequence   string
	OutputTokens   int
	InputTokens    int
}

func summarize(m *MessagesResponse) summary {
	var s summary
	for _, b := range m.Content {
		switch b.Type {
		case BlockThinking:
			s.Thinking += b.Thinking
			s.Signatures = append(s.Signatures, b.Signature)
		case BlockText:
			s.Text += b.Text
		case BlockToolUse:
			var v any
			_ = json.Unmarshal(b.Input, &v)
			in, _ := json.Marshal(v)
			s.Tools = append(s.Tools, b.ID+" "+b.Name+" "+string(in))
		}
	}
	if m.StopReason != nil {
		s.StopReason = *m.StopReason
	}
	if m.StopSequence != nil {
		s.StopSequence = *m.StopSequence
	}
	s.OutputTokens = m.Usage.OutputTokens
	s.InputTokens = m.Usage.InputTokens
	return s
}

// accumulateStream rebuilds the message from an Anthropic stream the way
// the SDKs do (Message.Accumulate).
func accumulateStream(t *testing.T, stream []byte) *MessagesResponse {
	t.Helper()
	events, err := sse.ReadAll(bytes.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	var m MessagesResponse
	var partial []string
	for _, ev := range events {
		var e struct {
			Type         string           `json:"type"`
			Message      MessagesResponse `json:"message"`
			Index        int              `json:"index"`
			ContentBlock ContentBlock     `json:"content_block"`
			Delta        struct {
				BlockDelta
				StopReason   *string `json:"stop_reason"`
				StopSequence *string `json:"stop_sequence"`
			} `json:"delta"`
			Usage Usage `json:"usage"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
			t.Fatal(err)
		}
		var d BlockDelta
		_ = json.Unmarshal(mustRaw(ev.Data, "delta"), &d)
		switch e.Type {
		case "message_start":
			m = e.Message
		case "content_block_start":
			m.Content = append(m.Content, e.ContentBlock)
			partial = append(partial, "")
		case "content_block_delta":
			b := &m.Content[e.Index]
			switch d.Type {
			case DeltaText:
				b.Text += d.Text
			case DeltaThinking:
				b.Thinking += d.Thinking
			case DeltaSignature:
				b.Signature += d.Signature
			case DeltaInputJSON:
				partial[e.Index] += d.PartialJSON
			}
		case "content_block_stop":
			if p := partial[e.Index]; p != "" {
				m.Content[e.Index].Input = json.RawMessage(p)
			}
		case "message_delta":
			m.StopReason, m.StopSequence = e.Delta.StopReason, e.Delta.StopSequence
			m.Usage = e.Usage
		}
	}
	return &m
}

func mustRaw(data, key string) json.RawMessage {
	var m map[string]json.RawMessage
	_ = json.Unmarshal([]byte(data), &m)
	return m[key]
}
