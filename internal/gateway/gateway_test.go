package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/neurontest"
	"github.com/helexa-ai/cortex/internal/wire/sse/ssecheck"
)

// harness is a gateway whose catalog the test feeds by hand, in front of
// simulated neurons.
type harness struct {
	t   *testing.T
	g   *Gateway
	srv *httptest.Server
}

func newHarness(t *testing.T, tweak ...func(*Config)) *harness {
	t.Helper()
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if err := os.WriteFile(keys, []byte("# test keys\nalice:sk-alice\nsk-plain\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.APIKeysFile = keys
	cfg.NeuronToken = "neuron-secret"
	cfg.ColdStartTimeout = 5 * time.Second
	cfg.KeepAliveInterval = 100 * time.Millisecond
	cfg.DemandInterval = time.Second
	for _, f := range tweak {
		f(&cfg)
	}
	g, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	_ = cortexv1.AddToScheme(scheme)
	g.demand.Client = fake.NewClientBuilder().WithScheme(scheme).Build()
	close(g.ready)
	srv := httptest.NewServer(g.Handler(testr.New(t)))
	t.Cleanup(srv.Close)
	return &harness{t: t, g: g, srv: srv}
}

// neuron starts a simulated neuron holding the given Model keys, Ready.
func (h *harness) neuron(name string, keys ...string) *neurontest.Server {
	h.t.Helper()
	n := neurontest.Start(neurontest.Config{Name: name, Devices: []int64{1 << 40}, DefaultSize: 1 << 20, Token: "neuron-secret"})
	h.t.Cleanup(n.Close)
	c := neuronapi.NewClient("neuron-secret")
	for _, k := range keys {
		if _, err := c.Load(context.Background(), n.URL(), neuronapi.LoadRequest{Name: k, Source: neuronapi.Source{URI: "https://x/" + k}}); err != nil {
			h.t.Fatal(err)
		}
	}
	h.g.catalog.UpsertNode(readyNode(name, n.URL()))
	return n
}

func readyNode(name, endpoint string) *cortexv1.NeuronNode {
	nn := &cortexv1.NeuronNode{ObjectMeta: metav1.ObjectMeta{Name: name}}
	nn.Status.Endpoint = endpoint
	nn.Status.Conditions = []metav1.Condition{{Type: cortexv1.NeuronNodeConditionReady, Status: metav1.ConditionTrue}}
	return nn
}

// model adds a Model with ready replicas on the given nodes.
func (h *harness) model(ns, name string, names []string, nodes ...string) *cortexv1.Model {
	m := &cortexv1.Model{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.Now()}}
	m.Spec.ServedNames = names
	m.Status.Phase = cortexv1.ModelPhaseReady
	for _, n := range nodes {
		m.Status.Replicas = append(m.Status.Replicas, cortexv1.Replica{Node: n, State: cortexv1.ReplicaReady})
	}
	h.g.catalog.UpsertModel(m)
	return m
}

func (h *harness) post(path, key string, body any, hdr ...string) *http.Response {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case string:
		rd = strings.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func chat(model string, stream bool) map[string]any {
	return map[string]any{"model": model, "stream": stream, "messages": []any{map[string]any{"role": "user", "content": "hi"}}}
}

func TestChatRoutesByServedNameAndRewritesModel(t *testing.T) {
	h := newHarness(t)
	n := h.neuron("n1", "team/llama")
	h.model("team", "llama", []string{"llama-3", "llama"}, "n1")

	resp := h.post("/v1/chat/completions", "sk-alice", chat("llama", false))
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Hello from n1.") {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	_, reqs := n.Requests()
	if len(reqs) != 1 || !strings.Contains(string(reqs[0]), `"model":"team/llama"`) {
		t.Fatalf("upstream got %s", reqs)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Fatal("no X-Request-Id")
	}
}

func TestStreamPassesThroughAndHidesUsageUnlessAsked(t *testing.T) {
	h := newHarness(t)
	h.neuron("n1", "team/llama")
	h.model("team", "llama", nil, "n1")

	resp := h.post("/v1/chat/completions", "sk-plain", chat("llama", true))
	body := readAll(t, resp)
	if err := ssecheck.OpenAIChatStream(strings.NewReader(body)); err != nil {
		t.Fatalf("stream grammar: %v\n%s", err, body)
	}
	if strings.Contains(body, `"usage"`) {
		t.Fatalf("usage leaked without include_usage:\n%s", body)
	}
	req := chat("llama", true)
	req["stream_options"] = map[string]any{"include_usage": true}
	body = readAll(t, h.post("/v1/chat/completions", "sk-plain", req))
	if err := ssecheck.OpenAIChatStream(strings.NewReader(body)); err != nil {
		t.Fatalf("stream grammar: %v\n%s", err, body)
	}
	if !strings.Contains(body, `"prompt_tokens":7`) {
		t.Fatalf("usage missing:\n%s", body)
	}
}

func TestErrorsSpeakTheCallersDialect(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name, path, key, body string
		hdr                   []string
		status                int
		want                  []string
	}{
		{"openai unknown model", "/v1/chat/completions", "sk-alice", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`, nil, 404,
			[]string{`"error":{`, `"code":"model_not_found"`}},
		{"anthropic unknown model", "/v1/messages", "sk-alice", `{"model":"nope","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`, nil, 404,
			[]string{`"type":"error"`, `"type":"not_found_error"`, `"request_id":"req_`}},
		{"openai malformed", "/v1/chat/completions", "sk-alice", `{"model":`, nil, 400, []string{`"type":"invalid_request_error"`}},
		{"anthropic malformed", "/v1/messages", "sk-alice", `{"model": 5}`, nil, 400, []string{`"type":"invalid_request_error"`, `model`}},
		{"no key", "/v1/chat/completions", "", `{}`, nil, 401, []string{`"type":"authentication_error"`}},
		{"bad key anthropic", "/v1/messages", "sk-wrong", `{}`, nil, 401, []string{`"type":"authentication_error"`, `"type":"error"`}},
		{"x-api-key accepted", "/v1/messages", "", `{"model":"nope","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`,
			[]string{"x-api-key", "sk-alice"}, 404, []string{"not_found_error"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.post(tc.path, tc.key, tc.body, tc.hdr...)
			body := readAll(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Fatalf("body lacks %s: %s", w, body)
				}
			}
		})
	}
}

func TestBodyLimitIs413(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxBodyBytes = 1024 })
	big := `{"model":"x","messages":[{"role":"user","content":"` + strings.Repeat("a", 4096) + `"}]}`
	for _, path := range []string{"/v1/chat/completions", "/v1/messages"} {
		resp := h.post(path, "sk-alice", big)
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("%s: status %d: %s", path, resp.StatusCode, body)
		}
	}
}

func TestRetryOnAnotherReplicaBeforeFirstByte(t *testing.T) {
	h := newHarness(t)
	bad := h.neuron("n1", "team/llama")
	h.neuron("n2", "team/llama")
	h.model("team", "llama", nil, "n1", "n2")
	bad.SetInference(neurontest.Inference{FailStatus: 500})
	for i := range 6 {
		resp := h.post("/v1/chat/completions", "sk-alice", chat("llama", i%2 == 0))
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "n2") {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	// A dead replica (connection refused) is retried too.
	bad.Close()
	resp := h.post("/v1/chat/completions", "sk-alice", chat("llama", false))
	if body := readAll(t, resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("after close: %d %s", resp.StatusCode, body)
	}
}

func TestMidStreamFailureEndsWithErrorEventInEachDialect(t *testing.T) {
	h := newHarness(t)
	n := h.neuron("n1", "team/llama")
	h.model("team", "llama", nil, "n1")
	n.SetInference(neurontest.Inference{Reply: "one two three four five six seven eight", Chunks: 8, DropAfter: 2})

	body := readAll(t, h.post("/v1/chat/completions", "sk-alice", chat("llama", true)))
	if !strings.Contains(body, `"error":{`) || strings.Contains(body, "[DONE]") {
		t.Fatalf("openai stream after a drop:\n%s", body)
	}
	if err := ssecheck.OpenAIChatStream(strings.NewReader(body)); err != nil {
		t.Fatalf("grammar: %v\n%s", err, body)
	}
	msg := map[string]any{"model": "llama", "max_tokens": 20, "stream": true, "messages": []any{map[string]any{"role": "user", "content": "hi"}}}
	body = readAll(t, h.post("/v1/messages", "sk-alice", msg))
	if !strings.Contains(body, "event: error") {
		t.Fatalf("anthropic stream after a drop:\n%s", body)
	}
	if err := ssecheck.AnthropicStream(strings.NewReader(body)); err != nil {
		t.Fatalf("grammar: %v\n%s", err, body)
	}
}

func TestColdModelIsHeldUntilReady(t *testing.T) {
	h := newHarness(t)
	n := h.neuron("n1")
	m := h.model("team", "cold", nil)
	go func() {
		time.Sleep(700 * time.Millisecond)
		c := neuronapi.NewClient("neuron-secret")
		_, _ = c.Load(context.Background(), n.URL(), neuronapi.LoadRequest{Name: "team/cold", Source: neuronapi.Source{URI: "https://x/cold"}})
		ready := m.DeepCopy()
		ready.Status.Replicas = []cortexv1.Replica{{Node: "n1", State: cortexv1.ReplicaReady}}
		h.g.catalog.UpsertModel(ready)
	}()
	body := readAll(t, h.post("/v1/chat/completions", "sk-alice", chat("cold", true)))
	if err := ssecheck.OpenAIChatStream(strings.NewReader(body)); err != nil {
		t.Fatalf("grammar: %v\n%s", err, body)
	}
	if !strings.Contains(body, ": ping") || !strings.Contains(body, "n1.") {
		t.Fatalf("want keep-alives then the answer:\n%s", body)
	}
}

func TestColdTimeoutIs503WithRetryAfter(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ColdStartTimeout = 300 * time.Millisecond })
	h.model("team", "cold", nil)
	resp := h.post("/v1/chat/completions", "sk-alice", chat("cold", false))
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d retry-after %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	msg := map[string]any{"model": "cold", "max_tokens": 20, "stream": true, "messages": []any{map[string]any{"role": "user", "content": "hi"}}}
	body = readAll(t, h.post("/v1/messages", "sk-alice", msg))
	if err := ssecheck.AnthropicStream(strings.NewReader(body)); err != nil || !strings.Contains(body, "overloaded_error") {
		t.Fatalf("anthropic cold timeout (%v):\n%s", err, body)
	}
}

func TestListModelsMergesNamesAndPlacement(t *testing.T) {
	h := newHarness(t)
	h.neuron("n1", "team/llama")
	h.model("team", "llama", []string{"llama-3", "llama"}, "n1")
	q := h.model("team", "qwen", nil)
	q.Spec.Source.Projector = &cortexv1.ProjectorSource{URI: "hf://org/qwen-vl/mmproj.gguf"}
	h.g.catalog.UpsertModel(q)
	req, _ := http.NewRequest(http.MethodGet, h.srv.URL+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer sk-alice")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Data []struct {
			ID     string `json:"id"`
			Cortex struct {
				Model, Canonical string
				Loaded, Vision   bool
				Nodes, Placeable []string
			} `json:"cortex"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, d := range list.Data {
		ids[d.ID] = true
		if d.ID == "llama" && (!d.Cortex.Loaded || d.Cortex.Vision || d.Cortex.Canonical != "llama-3" || d.Cortex.Model != "team/llama" || len(d.Cortex.Nodes) != 1) {
			t.Fatalf("llama entry: %+v", d)
		}
		if d.ID == "qwen" && (d.Cortex.Loaded || !d.Cortex.Vision || len(d.Cortex.Placeable) != 1) {
			t.Fatalf("qwen entry: %+v", d)
		}
	}
	if !ids["llama-3"] || !ids["llama"] || !ids["qwen"] || len(ids) != 3 {
		t.Fatalf("ids = %v", ids)
	}
}

func TestAnthropicMessagesNonStreamAndCountTokens(t *testing.T) {
	h := newHarness(t)
	h.neuron("n1", "team/llama")
	h.model("team", "llama", []string{"claude-local"}, "n1")
	msg := map[string]any{"model": "claude-local", "max_tokens": 20, "system": []any{map[string]any{"type": "text", "text": "be brief", "cache_control": map[string]any{"type": "ephemeral"}}},
		"messages": []any{map[string]any{"role": "user", "content": "hi"}}}
	resp := h.post("/v1/messages", "", msg, "x-api-key", "sk-alice", "anthropic-version", "2023-06-01", "anthropic-beta", "some-future-beta")
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"type":"message"`) || !strings.Contains(body, "Hello from n1.") || !strings.Contains(body, `"stop_reason":"end_turn"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	resp = h.post("/v1/messages/count_tokens", "sk-alice", map[string]any{"model": "claude-local", "messages": []any{map[string]any{"role": "user", "content": "hi"}}})
	if body := readAll(t, resp); resp.StatusCode != http.StatusOK || body != "{\"input_tokens\":5}\n" {
		t.Fatalf("count_tokens: %d %q", resp.StatusCode, body)
	}
}

func TestResponsesAPI(t *testing.T) {
	h := newHarness(t)
	n := h.neuron("n1", "team/llama")
	h.model("team", "llama", []string{"gpt-local"}, "n1")
	req := map[string]any{"model": "gpt-local", "instructions": "be brief", "store": false,
		"input": []any{map[string]any{"role": "user", "content": []any{map[string]any{"type": "input_text", "text": "hi"}}}},
		"tools": []any{map[string]any{"type": "web_search"}}}
	resp := h.post("/v1/responses", "sk-alice", req)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"object":"response"`) || !strings.Contains(body, `"status":"completed"`) || !strings.Contains(body, "Hello from n1.") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	req["stream"] = true
	body = readAll(t, h.post("/v1/responses", "sk-alice", req))
	if err := ssecheck.ResponsesStream(strings.NewReader(body)); err != nil {
		t.Fatalf("grammar: %v\n%s", err, body)
	}
	if !strings.Contains(body, "response.completed") {
		t.Fatalf("stream:\n%s", body)
	}
	// A forced function call comes back as a function_call item.
	n.SetInference(neurontest.Inference{ToolArguments: `{"city":"Paris"}`})
	req["tools"] = []any{map[string]any{"type": "function", "name": "get_weather", "parameters": map[string]any{"type": "object"}}}
	req["tool_choice"] = map[string]any{"type": "function", "name": "get_weather"}
	body = readAll(t, h.post("/v1/responses", "sk-alice", req))
	if err := ssecheck.ResponsesStream(strings.NewReader(body)); err != nil || !strings.Contains(body, "response.function_call_arguments.done") || !strings.Contains(body, `Paris`) {
		t.Fatalf("tool stream (%v):\n%s", err, body)
	}
	// previous_response_id needs stored state cortex does not keep.
	resp = h.post("/v1/responses", "sk-alice", map[string]any{"model": "gpt-local", "input": "hi", "previous_response_id": "resp_123"})
	if body := readAll(t, resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "previous_response_id") {
		t.Fatalf("previous_response_id: %d %s", resp.StatusCode, body)
	}
}

func TestAnthropicStreamWithToolUse(t *testing.T) {
	h := newHarness(t)
	n := h.neuron("n1", "team/llama")
	h.model("team", "llama", nil, "n1")
	n.SetInference(neurontest.Inference{ToolArguments: `{"city":"Paris","days":3}`, Chunks: 5})
	msg := map[string]any{"model": "llama", "max_tokens": 64, "stream": true,
		"tools":       []any{map[string]any{"name": "get_weather", "input_schema": map[string]any{"type": "object"}}, map[string]any{"type": "web_search_20250305", "name": "web_search"}},
		"tool_choice": map[string]any{"type": "tool", "name": "get_weather"},
		"messages":    []any{map[string]any{"role": "user", "content": "weather?"}}}
	body := readAll(t, h.post("/v1/messages", "sk-alice", msg))
	if err := ssecheck.AnthropicStream(strings.NewReader(body)); err != nil {
		t.Fatalf("grammar: %v\n%s", err, body)
	}
	for _, want := range []string{`"type":"tool_use"`, `"name":"get_weather"`, "input_json_delta", `"stop_reason":"tool_use"`} {
		if !strings.Contains(body, want) {
			t.Fatalf("stream lacks %s:\n%s", want, body)
		}
	}
	msg["stream"] = false
	body = readAll(t, h.post("/v1/messages", "sk-alice", msg))
	if !strings.Contains(body, `"input":{"city":"Paris","days":3}`) || !strings.Contains(body, `"stop_reason":"tool_use"`) {
		t.Fatalf("non-stream tool_use:\n%s", body)
	}
}

// While the neuron is silent mid-stream (queued, long prefill), the client
// still hears from the gateway.
func TestKeepAlivesWhileUpstreamIsSilent(t *testing.T) {
	h := newHarness(t)
	n := h.neuron("n1", "team/llama")
	h.model("team", "llama", nil, "n1")
	n.SetInference(neurontest.Inference{Chunks: 2, ChunkDelay: 400 * time.Millisecond})
	for _, path := range []string{"/v1/chat/completions", "/v1/messages"} {
		body := readAll(t, h.post(path, "sk-alice", map[string]any{"model": "llama", "stream": true, "max_tokens": 8,
			"messages": []any{map[string]any{"role": "user", "content": "hi"}}}))
		if !strings.Contains(body, ": ping") {
			t.Fatalf("%s: no keep-alive during a 400ms silence:\n%s", path, body)
		}
	}
}

// A replica that cannot be reached is a 502 naming the node, never the
// dial error with the pod's address.
func TestUnreachableReplicaIs502WithoutAddresses(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxAttempts, c.UnreachableHold = 1, 0 })
	n := h.neuron("n1", "team/llama")
	h.model("team", "llama", nil, "n1")
	n.Close()
	resp := h.post("/v1/chat/completions", "sk-alice", chat("llama", false))
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "on n1 could not be reached") || strings.Contains(body, "127.0.0.1") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

// replaceLater moves m's only replica to a new neuron, node, holding it,
// 3 s from now: later than the retries without a hold last (MaxAttempts,
// a second apart).
func (h *harness) replaceLater(m *cortexv1.Model, node string) {
	go func() {
		time.Sleep(3 * time.Second)
		h.neuron(node, m.Key())
		moved := m.DeepCopy()
		moved.Status.Replicas = []cortexv1.Replica{{Node: node, State: cortexv1.ReplicaReady}}
		h.g.catalog.UpsertModel(moved)
	}()
}

// The only replica's neuron dies: requests are held, as for a cold Model,
// until the fleet has a replacement, and then served; not failed with a
// 502 for what the dead neuron never held.
func TestRequestsAreHeldWhileTheOnlyReplicaIsReplaced(t *testing.T) {
	h := newHarness(t)
	dead := h.neuron("n1", "team/llama")
	m := h.model("team", "llama", nil, "n1")
	dead.Close()
	h.replaceLater(m, "n2")
	var wg sync.WaitGroup
	bodies := make([]string, 2)
	codes := make([]int, 2)
	for i, stream := range []bool{false, true} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := h.post("/v1/chat/completions", "sk-alice", chat("llama", stream))
			codes[i], bodies[i] = resp.StatusCode, readAll(t, resp)
		}()
	}
	wg.Wait()
	if codes[0] != http.StatusOK || !strings.Contains(bodies[0], "n2") {
		t.Fatalf("plain request: %d %s", codes[0], bodies[0])
	}
	if err := ssecheck.OpenAIChatStream(strings.NewReader(bodies[1])); err != nil || !strings.Contains(bodies[1], "n2.") {
		t.Fatalf("streamed request (%v):\n%s", err, bodies[1])
	}
	if !strings.Contains(bodies[1], ": ping") {
		t.Fatalf("a held stream gets keep-alives:\n%s", bodies[1])
	}
}

// The hold is bounded: with no replacement the request fails with the
// dialect's 502 once UnreachableHold has passed.
func TestUnreachableHoldRunsOut(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.UnreachableHold = 400 * time.Millisecond })
	dead := h.neuron("n1", "team/llama")
	h.model("team", "llama", nil, "n1")
	dead.Close()
	start := time.Now()
	msg := map[string]any{"model": "llama", "max_tokens": 20, "messages": []any{map[string]any{"role": "user", "content": "hi"}}}
	resp := h.post("/v1/messages", "sk-alice", msg)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, `"type":"api_error"`) || !strings.Contains(body, "on n1 could not be reached") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if waited := time.Since(start); waited < 400*time.Millisecond {
		t.Fatalf("failed after %s, before the hold ran out", waited)
	}
}

// A replica the catalog still lists as Ready but whose neuron no longer
// holds the model (unloaded, or restarted empty, before the Model's status
// said so) answers "not loaded here". The request is held as for a dead
// replica until the fleet has a replacement, never answered with the 404
// of a model that does not exist.
func TestReplicaThatNoLongerHoldsTheModelIsReplaced(t *testing.T) {
	h := newHarness(t)
	h.neuron("n1") // holds nothing
	m := h.model("team", "llama", nil, "n1")
	h.replaceLater(m, "n2")
	msg := map[string]any{"model": "llama", "max_tokens": 20, "messages": []any{map[string]any{"role": "user", "content": "hi"}}}
	resp := h.post("/v1/messages", "sk-alice", msg)
	if body := readAll(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, "n2") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

// With no replacement the hold runs out with a 503 in the caller's
// dialect: the model exists, so its stale replica's "not loaded here" is
// not passed on as a 404.
func TestStaleReplicaHoldRunsOutWith503(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.UnreachableHold = 400 * time.Millisecond })
	h.neuron("n1")
	h.model("team", "llama", nil, "n1")
	resp := h.post("/v1/chat/completions", "sk-alice", chat("llama", false))
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(body, "does not exist") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
}

// A streamed answer's first token tells the balancer its prompt is no
// longer waiting for prefill on that replica; the request stays in flight
// until it ends.
func TestStreamTellsTheBalancerItsFirstToken(t *testing.T) {
	h := newHarness(t)
	n := h.neuron("n1", "team/llama")
	h.model("team", "llama", nil, "n1")
	n.SetInference(neurontest.Inference{Chunks: 3, ChunkDelay: 300 * time.Millisecond})
	done := make(chan string, 1)
	go func() { done <- readAll(t, h.post("/v1/chat/completions", "sk-alice", chat("llama", true))) }()
	waitLoad(t, h.g.balancer, n.URL(), Load{InFlight: 1})
	if body := <-done; !strings.Contains(body, "[DONE]") {
		t.Fatalf("stream: %s", body)
	}
	if n, _ := ttftSamples(t, h.g, "team/llama"); n != 1 {
		t.Fatalf("the stream's first token was timed %d times, want once", n)
	}
	if l := h.g.balancer.Loads(); len(l) != 0 {
		t.Fatalf("after the stream: %v", l)
	}
}

// A plain answer's first token comes from the neuron as a 103 Early
// Hints response the gateway asks for; the balancer stops counting the
// prompt as waiting for prefill there before the answer ends, and learns
// the replica's prefill rate from the answer.
func TestPlainAnswerTellsTheBalancerItsFirstToken(t *testing.T) {
	h := newHarness(t)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(neuronapi.HeaderFirstToken) != "" {
			neuronapi.WriteFirstToken(w)
		}
		time.Sleep(400 * time.Millisecond) // the rest of the answer
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(neuronapi.HeaderPrefillRate, "5123.5")
		_, _ = io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"team/llama",`+
			`"choices":[{"index":0,"message":{"role":"assistant","content":"Hi."},"finish_reason":"stop"}],`+
			`"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`)
	}))
	t.Cleanup(upstream.Close)
	h.g.catalog.UpsertNode(readyNode("n1", upstream.URL))
	h.model("team", "llama", nil, "n1")
	done := make(chan *http.Response, 1)
	go func() { done <- h.post("/v1/chat/completions", "sk-alice", chat("llama", false)) }()
	waitLoad(t, h.g.balancer, upstream.URL, Load{InFlight: 1})
	resp := <-done
	if body := readAll(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Hi.") || resp.Header.Get(neuronapi.HeaderFirstToken) != "" {
		t.Fatalf("answer %d %v: %s", resp.StatusCode, resp.Header, body)
	}
	if l := h.g.balancer.Loads(); len(l) != 0 {
		t.Fatalf("after the answer: %v", l)
	}
	// The answer's measured prefill rate reached the balancer.
	h.g.balancer.mu.Lock()
	speed := h.g.balancer.speed[speedKey{"team/llama", upstream.URL}]
	h.g.balancer.mu.Unlock()
	if speed != 5123.5 {
		t.Fatalf("the balancer has %v for the replica's prefill rate, want 5123.5", speed)
	}
	// The 103 timed the first token, as a stream's first chunk does.
	if n, sum := ttftSamples(t, h.g, "team/llama"); n != 1 || sum > 0.3 {
		t.Fatalf("time to first token: %d samples, %.3f s in all; want one, before the 400 ms answer", n, sum)
	}
}

// waitLoad waits up to 5 s for the balancer's own load on endpoint's
// device worker (its replicas here name no device) to be want, and fails
// with the loads it saw otherwise.
func waitLoad(t *testing.T, b *Balancer, endpoint string, want Load) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var seen []Load
	for {
		l := b.Loads()[deviceKey(Replica{Endpoint: endpoint})]
		if len(seen) == 0 || seen[len(seen)-1] != l {
			seen = append(seen, l)
		}
		if l == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("load on %s never %+v; seen %v", endpoint, want, seen)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// ttftSamples reads the gateway's time-to-first-token histogram for a
// Model's OpenAI requests: how many samples, and their sum in seconds.
func ttftSamples(t *testing.T, g *Gateway, model string) (uint64, float64) {
	t.Helper()
	var m dto.Metric
	if err := g.metrics.ttft.WithLabelValues(model, "openai").(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}
