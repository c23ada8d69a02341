package responses

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

func translateRequest(data []byte) (any, *openai.ChatRequest, error) {
	var req Request
	err := openai.DecodeJSONBytes(data, &req)
	var chat *openai.ChatRequest
	var warns []Warning
	if err == nil {
		chat, warns, err = ToOpenAIChat(&req)
	}
	if err != nil {
		e := openai.AsError(err)
		return map[string]any{"status": e.Status, "error": e.Body()}, nil, err
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
			if strings.HasPrefix(name, "err_") != (err != nil) {
				t.Fatalf("error = %v", err)
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

type responseFixture struct {
	Request      json.RawMessage     `json:"request"`
	ChatResponse openai.ChatResponse `json:"chat_response"`
}

func TestResponseGolden(t *testing.T) {
	for _, in := range golden.Inputs(t, "testdata/responses/*.json") {
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var fx responseFixture
			if err := json.Unmarshal(data, &fx); err != nil {
				t.Fatal(err)
			}
			var req Request
			if err := openai.DecodeJSONBytes(fx.Request, &req); err != nil {
				t.Fatal(err)
			}
			got := FromOpenAIChat(&fx.ChatResponse, &req)
			checkResponseShape(t, got)
			golden.CompareJSON(t, golden.Path(in), got)
		})
	}
}

func checkResponseShape(t *testing.T, r *Response) {
	t.Helper()
	if !strings.HasPrefix(r.ID, "resp_") || r.Object != "response" || r.Store {
		t.Errorf("envelope %s %s store=%v", r.ID, r.Object, r.Store)
	}
	if len(r.Output) == 0 {
		t.Error("no output items")
	}
	if (r.Status == StatusIncomplete) != (r.IncompleteDetails != nil) {
		t.Errorf("status %s with incomplete_details %v", r.Status, r.IncompleteDetails)
	}
	if r.Usage == nil || r.Usage.TotalTokens != r.Usage.InputTokens+r.Usage.OutputTokens {
		t.Errorf("usage %+v", r.Usage)
	}
	seen := map[string]bool{}
	for _, it := range r.Output {
		if seen[it.ID] {
			t.Errorf("duplicate item id %s", it.ID)
		}
		seen[it.ID] = true
	}
}

// streamRequest is the request a stream fixture answers: summary_ fixtures
// ask for reasoning summaries.
func streamRequest(name string) *Request {
	req := &Request{Model: "gpt-test", Stream: true, Tools: []Tool{{Type: "function", Name: "f"}}}
	if strings.HasPrefix(name, "summary_") {
		s := "auto"
		req.Reasoning = &ReasoningConfig{Summary: &s}
	}
	return req
}

// runStream feeds an upstream chat stream through a StreamTranslator the
// way the gateway does and returns the Responses SSE it writes.
func runStream(t *testing.T, req *Request, upstream []byte) []byte {
	t.Helper()
	return golden.Translate(t, upstream, NewStreamTranslator(req, "resp_test", 1700000000), WriteEvents,
		func(w *sse.Writer) error { return w.KeepAlive() })
}

func TestStreamGolden(t *testing.T) {
	for _, in := range golden.Inputs(t, "testdata/streams/*.sse") {
		name := strings.TrimSuffix(filepath.Base(in), ".sse")
		t.Run(name, func(t *testing.T) {
			upstream, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			clean := !strings.HasPrefix(name, "broken_") && !strings.HasPrefix(name, "lenient_") && name != "cut"
			if err := ssecheck.OpenAIChatStream(bytes.NewReader(upstream)); (err == nil) != clean {
				t.Fatalf("upstream fixture check = %v, clean fixture: %v", err, clean)
			}
			req := streamRequest(name)
			got := runStream(t, req, upstream)
			if err := ssecheck.ResponsesStream(bytes.NewReader(got)); err != nil {
				t.Fatalf("translated stream breaks the Responses grammar: %v\n%s", err, got)
			}
			golden.Compare(t, golden.Path(in), got)

			// Streamed and non-streamed translations must agree.
			chunks, finished := readChunks(upstream)
			final := lastResponse(t, got)
			if !finished || final.Status == StatusFailed {
				return
			}
			acc := openai.Accumulate(chunks)
			want := summarize(FromOpenAIChat(acc, req))
			s := summarize(final)
			if acc.Usage == nil {
				s.Usage = want.Usage
			}
			if !reflect.DeepEqual(s, want) {
				t.Errorf("stream adds up to\n%+v\nnon-stream translation is\n%+v", s, want)
			}
		})
	}
}

func readChunks(upstream []byte) ([]openai.ChatChunk, bool) {
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

// lastResponse returns the response of a stream's terminal event.
func lastResponse(t *testing.T, stream []byte) *Response {
	t.Helper()
	events, err := sse.ReadAll(bytes.NewReader(stream))
	if err != nil || len(events) == 0 {
		t.Fatalf("reading translated stream: %v", err)
	}
	var ev struct {
		Response *Response `json:"response"`
	}
	if err := json.Unmarshal([]byte(events[len(events)-1].Data), &ev); err != nil || ev.Response == nil {
		t.Fatalf("terminal event has no response: %v", err)
	}
	return ev.Response
}

// summary is what a client takes from a response, independent of how the
// text was split into items.
type summary struct {
	Status, Incomplete string
	Reasoning, Text    string
	Refusal            string
	Calls              []string
	Usage              Usage
}

func summarize(r *Response) summary {
	s := summary{Status: r.Status}
	if r.IncompleteDetails != nil {
		s.Incomplete = r.IncompleteDetails.Reason
	}
	for _, it := range r.Output {
		switch it.Type {
		case OutputReasoning:
			for _, p := range it.Summary {
				s.Reasoning += p.Text
			}
			for _, p := range it.Content {
				s.Reasoning += p.Text
			}
		case OutputMessage:
			for _, p := range it.Content {
				s.Text += p.Text
				s.Refusal += p.Refusal
			}
		case OutputFunctionCall:
			s.Calls = append(s.Calls, it.CallID+" "+it.Name+" "+it.Arguments)
		}
	}
	if r.Usage != nil {
		s.Usage = *r.Usage
	}
	return s
}
