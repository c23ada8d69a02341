package neuron

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/wire/sse"
	"github.com/helexa-ai/cortex/internal/wire/sse/ssecheck"
)

// fuzzHandler sends body to path through the real handler chain (auth,
// decoding, validation, templates, the fake engine) and checks the answer
// is well formed: a 2xx with a JSON body or a valid stream, or a 4xx in the
// OpenAI error envelope. A 5xx (a panic becomes one) fails.
func fuzzHandler(f *testing.F, path string, seeds []string) {
	h := chatHarness(f, fixed("Sure, here is an answer."), withConfig(func(c *Config) { c.MaxBodyBytes = 64 << 10 }))
	handler := h.s.Handler()
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			handler.ServeHTTP(rec, req)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("request %q hung\n%s", body, buf[:runtime.Stack(buf, true)])
		}
		res := rec.Result()
		out := rec.Body.Bytes()
		switch {
		case res.StatusCode >= 500:
			t.Fatalf("status %d for %q: %s", res.StatusCode, body, out)
		case res.StatusCode >= 400:
			errorOf(t, out)
		case strings.HasPrefix(res.Header.Get("Content-Type"), sse.ContentType):
			if path == neuronapi.PathChatCompletions {
				if err := ssecheck.OpenAIChatStream(bytes.NewReader(out)); err != nil && !bytes.Contains(out, []byte(`"error"`)) {
					t.Fatalf("invalid stream for %q: %v\n%s", body, err, out)
				}
			}
		default:
			if !json.Valid(out) {
				t.Fatalf("invalid JSON answer for %q: %s", body, out)
			}
		}
	})
}

func FuzzChatCompletions(f *testing.F) {
	fuzzHandler(f, neuronapi.PathChatCompletions, []string{
		`{"model":"ns/chat","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"ns/chat","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"ns/chat","messages":[{"role":"system","content":"x"},{"role":"user","content":[{"type":"text","text":"a"}]}],"temperature":0,"max_tokens":3,"stop":["."]}`,
		`{"model":"ns/chat","messages":[{"role":"user","content":"w"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"auto"}`,
		`{"model":"ns/chat","messages":[{"role":"user","content":"w"}],"response_format":{"type":"json_object"}}`,
		`{"model":"ns/chat","messages":[{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"1"}]}`,
		`{"model":"ns/chat","messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":2}`,
		`{"model":"ns/chat","messages":[]}`, `{"model":5}`, `[]`, `{`, ``, `null`,
	})
}

func FuzzCompletions(f *testing.F) {
	fuzzHandler(f, neuronapi.PathCompletions, []string{
		`{"model":"ns/chat","prompt":"Once upon"}`,
		`{"model":"ns/chat","prompt":["Once"],"stream":true,"echo":true,"logprobs":2}`,
		`{"model":"ns/chat","prompt":"x","max_tokens":1,"seed":7,"top_k":1}`,
		`{"model":"ns/chat","prompt":null}`, `{"prompt":1}`,
	})
}

func FuzzEmbeddings(f *testing.F) {
	fuzzHandler(f, neuronapi.PathEmbeddings, []string{
		`{"model":"ns/chat","input":"hello"}`,
		`{"model":"ns/chat","input":["a","b"],"encoding_format":"base64"}`,
		`{"model":"ns/chat","input":[1,2,3]}`,
		`{"model":"ns/chat","input":[[1],[2,3]]}`,
		`{"model":"ns/chat","input":[]}`, `{"model":"ns/chat","input":[[]]}`, `{"model":"ns/chat","input":{"a":1}}`,
	})
}
