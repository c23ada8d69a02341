package neuron

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/engine/enginefake"
	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// A plain answer's first token reaches a client that asked for it as a
// 103 Early Hints response, well before the answer; a client that did not
// ask gets no informational response.
func TestPlainAnswerSaysWhenItsFirstTokenCame(t *testing.T) {
	h := chatHarness(t, fixed("One two three four five six."), withFake(func(o *enginefake.Options) { o.TokenDelay = 60 * time.Millisecond }))
	type hint struct {
		code   int
		header textproto.MIMEHeader
		after  time.Duration // since the request
	}
	call := func(path string, body map[string]any, ask bool) ([]hint, time.Duration, *http.Response, []byte) {
		data, _ := json.Marshal(body)
		var hints []hint
		start := time.Now()
		ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{Got1xxResponse: func(code int, hdr textproto.MIMEHeader) error {
			hints = append(hints, hint{code, hdr, time.Since(start)})
			return nil
		}})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.url+path, bytes.NewReader(data))
		req.Header.Set("Authorization", "Bearer "+testToken)
		if ask {
			req.Header.Set(neuronapi.HeaderFirstToken, "1")
		}
		resp, err := h.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return hints, time.Since(start), resp, out
	}
	for _, tc := range []struct {
		path string
		body map[string]any
	}{
		{neuronapi.PathChatCompletions, map[string]any{"model": modelName, "messages": userMsg("count")}},
		{neuronapi.PathCompletions, map[string]any{"model": modelName, "prompt": "count"}},
	} {
		hints, total, resp, out := call(tc.path, tc.body, true)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.path, resp.StatusCode, out)
		}
		if len(hints) != 1 || hints[0].code != http.StatusEarlyHints || hints[0].header.Get(neuronapi.HeaderFirstToken) == "" {
			t.Fatalf("%s: informational responses %+v, want one 103 with %s", tc.path, hints, neuronapi.HeaderFirstToken)
		}
		// Six tokens 60 ms apart: the first comes at least 200 ms
		// before the answer.
		if total-hints[0].after < 200*time.Millisecond {
			t.Fatalf("%s: first token at %s, answer at %s", tc.path, hints[0].after, total)
		}
		if resp.Header.Get(neuronapi.HeaderFirstToken) != "" {
			t.Fatalf("%s: the final answer carries %s", tc.path, neuronapi.HeaderFirstToken)
		}
		if hints, _, resp, out := call(tc.path, tc.body, false); len(hints) != 0 || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s without asking: %d %s, informational responses %+v", tc.path, resp.StatusCode, out, hints)
		}
	}
}

// Every chat and completion answer after the first carries the prefill
// rate the engine measured for the model.
func TestAnswersCarryTheMeasuredPrefillRate(t *testing.T) {
	h := chatHarness(t, fixed("Fine."), withFake(func(o *enginefake.Options) { o.PromptTokenDelay = time.Millisecond }))
	long := strings.Repeat("word ", 40)
	code, data, hdr := h.do(http.MethodPost, neuronapi.PathChatCompletions, map[string]any{"model": modelName, "messages": userMsg(long)})
	if code != http.StatusOK || hdr.Get(neuronapi.HeaderPrefillRate) != "" {
		t.Fatalf("first answer: %d %s, rate %q (none measured yet)", code, data, hdr.Get(neuronapi.HeaderPrefillRate))
	}
	for _, tc := range []struct {
		path string
		body map[string]any
	}{
		{neuronapi.PathChatCompletions, map[string]any{"model": modelName, "messages": userMsg("again " + long)}},
		{neuronapi.PathCompletions, map[string]any{"model": modelName, "prompt": long}},
	} {
		code, data, hdr := h.do(http.MethodPost, tc.path, tc.body)
		rate, err := strconv.ParseFloat(hdr.Get(neuronapi.HeaderPrefillRate), 64)
		// A millisecond a token: about 1,000 tokens a second.
		if code != http.StatusOK || err != nil || rate < 100 || rate > 1100 {
			t.Fatalf("%s: %d %s, rate %q", tc.path, code, data, hdr.Get(neuronapi.HeaderPrefillRate))
		}
	}
}
