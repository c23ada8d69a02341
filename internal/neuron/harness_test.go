package neuron

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/devices"
	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/engine/enginefake"
	"github.com/helexa-ai/cortex/internal/gguf/ggufgen"
	"github.com/helexa-ai/cortex/internal/neuronapi"
)

const testToken = "s3cret-token"

// harness is a neuron running in process on loopback with the fake engine.
type harness struct {
	t      testing.TB
	s      *Server
	url    string
	eng    *gatedEngine
	fake   *enginefake.Engine
	inv    devices.Inventory
	client *http.Client
	cancel context.CancelFunc
}

type harnessOpt func(*Config, *enginefake.Options)

func withInventory(inv devices.Inventory) harnessOpt {
	return func(c *Config, _ *enginefake.Options) { c.Devices = inv }
}

func withFake(f func(*enginefake.Options)) harnessOpt {
	return func(_ *Config, o *enginefake.Options) { f(o) }
}

func withConfig(f func(*Config)) harnessOpt {
	return func(c *Config, _ *enginefake.Options) { f(c) }
}

// bigCPU is a CPU host with room for many tiny models.
func bigCPU() *devices.Static {
	return devices.NewStatic(devices.Device{Index: 0, Kind: devices.KindCPU, Name: "test cpu", MemoryTotal: 1 << 30, MemoryFree: 1 << 30})
}

func newHarness(t testing.TB, opts ...harnessOpt) *harness {
	t.Helper()
	fo := enginefake.Options{Tokenizer: enginefake.Words, EmbeddingLength: 8}
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.NodeName = "test-node"
	cfg.Token = testToken
	cfg.CacheDir = t.TempDir()
	cfg.DisableRegistration = true
	cfg.Devices = bigCPU()
	cfg.KeepAliveInterval = 50 * time.Millisecond
	cfg.UnloadDrainTimeout = 2 * time.Second
	cfg.ShutdownTimeout = 5 * time.Second
	for _, o := range opts {
		o(&cfg, &fo)
	}
	fake := enginefake.New(fo)
	gated := &gatedEngine{Engine: fake}
	cfg.Engine = gated
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("starting neuron: %v", err)
	}
	h := &harness{t: t, s: s, url: s.URL(), eng: gated, fake: fake, inv: cfg.Devices, client: &http.Client{}, cancel: cancel}
	t.Cleanup(func() {
		cancel()
		if err := s.Wait(); err != nil {
			t.Errorf("neuron stopped with %v", err)
		}
	})
	return h
}

// do sends a request with the token and returns status, body and headers.
func (h *harness) do(method, path string, body any) (int, []byte, http.Header) {
	h.t.Helper()
	return h.doToken(method, path, body, testToken)
}

func (h *harness) doToken(method, path string, body any, token string) (int, []byte, http.Header) {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("reading %s %s: %v", method, path, err)
	}
	return resp.StatusCode, data, resp.Header
}

// stream opens a streaming request and returns the response; the caller
// reads and closes it.
func (h *harness) stream(ctx context.Context, path string, body any) *http.Response {
	h.t.Helper()
	data, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url+path, bytes.NewReader(data))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("POST %s: %v", path, err)
	}
	return resp
}

func decodeInto[T any](t testing.TB, data []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decoding %s: %v", data, err)
	}
	return v
}

// errorOf decodes an OpenAI error envelope, failing when it is not one.
func errorOf(t testing.TB, data []byte) (typ, code, param, msg string) {
	t.Helper()
	var eb struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Code    *string `json:"code"`
			Param   *string `json:"param"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &eb); err != nil || eb.Error.Message == "" || eb.Error.Type == "" {
		t.Fatalf("not an OpenAI error envelope: %s", data)
	}
	if eb.Error.Code != nil {
		code = *eb.Error.Code
	}
	if eb.Error.Param != nil {
		param = *eb.Error.Param
	}
	return eb.Error.Type, code, param, eb.Error.Message
}

// wantError checks an error answer's status and code.
func (h *harness) wantError(status int, data []byte, gotStatus int, code string) string {
	h.t.Helper()
	if gotStatus != status {
		h.t.Fatalf("status %d, want %d: %s", gotStatus, status, data)
	}
	_, c, _, msg := errorOf(h.t, data)
	if code != "" && c != code {
		h.t.Fatalf("code %q, want %q: %s", c, code, data)
	}
	return msg
}

// tinyModel writes a small random llama GGUF and returns its file:// URI.
func tinyModel(t testing.TB, seed uint64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tiny.gguf")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	if err := ggufgen.WriteRandomLlama(w, ggufgen.LlamaParams{Seed: seed, Context: 1024}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return "file://" + p
}

func (h *harness) models() neuronapi.ModelsResponse {
	h.t.Helper()
	code, data, _ := h.do(http.MethodGet, neuronapi.PathModels, nil)
	if code != http.StatusOK {
		h.t.Fatalf("GET /models: %d %s", code, data)
	}
	return decodeInto[neuronapi.ModelsResponse](h.t, data)
}

func (h *harness) model(name string) (neuronapi.ModelStatus, bool) {
	for _, m := range h.models().Models {
		if m.Name == name {
			return m, true
		}
	}
	return neuronapi.ModelStatus{}, false
}

// waitFor polls cond until it holds; the deadline only bounds a broken
// test, it asserts nothing about speed.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// load loads a model and waits for it to be ready.
func (h *harness) load(req neuronapi.LoadRequest) neuronapi.ModelStatus {
	h.t.Helper()
	code, data, _ := h.do(http.MethodPost, neuronapi.PathLoad, req)
	if code != http.StatusAccepted && code != http.StatusOK {
		h.t.Fatalf("load %s: %d %s", req.Name, code, data)
	}
	var st neuronapi.ModelStatus
	h.waitFor(req.Name+" ready", func() bool {
		var ok bool
		st, ok = h.model(req.Name)
		if ok && st.State == neuronapi.StateFailed {
			h.t.Fatalf("load of %s failed: %s", req.Name, st.Error)
		}
		return ok && st.State == neuronapi.StateReady
	})
	return st
}

// gatedEngine wraps the fake so tests can hold generations before they
// reach the engine (a request stuck in a long prefill) and count loads.
type gatedEngine struct {
	*enginefake.Engine
	mu    sync.Mutex
	gate  chan struct{}
	loads int
}

func (g *gatedEngine) Load(ctx context.Context, p engine.LoadParams) (engine.Model, error) {
	g.mu.Lock()
	g.loads++
	g.mu.Unlock()
	m, err := g.Engine.Load(ctx, p)
	if err != nil {
		return nil, err
	}
	return &gatedModel{Model: m, g: g}, nil
}

func (g *gatedEngine) Loads() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.loads
}

// hold makes generations wait until the returned function is called.
func (g *gatedEngine) hold() func() {
	ch := make(chan struct{})
	g.mu.Lock()
	g.gate = ch
	g.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

type gatedModel struct {
	engine.Model
	g *gatedEngine
}

func (m *gatedModel) Generate(ctx context.Context, req engine.GenerateRequest, onChunk func(engine.Chunk) error) (engine.Result, error) {
	m.g.mu.Lock()
	gate := m.g.gate
	m.g.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return engine.Result{FinishReason: engine.FinishCancelled}, ctx.Err()
		}
	}
	return m.Model.Generate(ctx, req, onChunk)
}

// fakeModel returns the enginefake model under a loaded model.
func (h *harness) fakeModel(name string) *enginefake.Model {
	h.t.Helper()
	h.s.reg.mu.Lock()
	defer h.s.reg.mu.Unlock()
	m, ok := h.s.reg.models[name]
	if !ok || m.eng == nil {
		h.t.Fatalf("model %s not loaded", name)
	}
	return m.eng.(*gatedModel).Model.(*enginefake.Model)
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// with returns the harness reporting to t (a subtest).
func (h *harness) with(t *testing.T) *harness {
	c := *h
	c.t = t
	return &c
}
