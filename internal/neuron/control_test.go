package neuron

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/devices"
	"github.com/helexa-ai/cortex/internal/engine/enginefake"
	"github.com/helexa-ai/cortex/internal/neuronapi"
)

func TestAuth(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name, method, path, token string
		want                      int
	}{
		{"healthz is open", http.MethodGet, neuronapi.PathHealthz, "", http.StatusOK},
		{"readyz is open", http.MethodGet, neuronapi.PathReadyz, "", http.StatusOK},
		{"metrics is open", http.MethodGet, neuronapi.PathMetrics, "", http.StatusOK},
		{"models needs a token", http.MethodGet, neuronapi.PathModels, "", http.StatusUnauthorized},
		{"wrong token", http.MethodGet, neuronapi.PathModels, "nope", http.StatusUnauthorized},
		{"token prefix is not the token", http.MethodGet, neuronapi.PathModels, testToken[:4], http.StatusUnauthorized},
		{"chat needs a token", http.MethodPost, neuronapi.PathChatCompletions, "", http.StatusUnauthorized},
		{"load needs a token", http.MethodPost, neuronapi.PathLoad, "", http.StatusUnauthorized},
		{"right token", http.MethodGet, neuronapi.PathModels, testToken, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := h.with(t)
			code, data, _ := h.doToken(tt.method, tt.path, nil, tt.token)
			if code != tt.want {
				t.Fatalf("status %d, want %d: %s", code, tt.want, data)
			}
			if code == http.StatusUnauthorized {
				typ, c, _, _ := errorOf(t, data)
				if typ != "authentication_error" || c != neuronapi.CodeUnauthorized {
					t.Fatalf("type %q code %q", typ, c)
				}
			}
		})
	}
	// The scheme is case-insensitive.
	req, _ := http.NewRequest(http.MethodGet, h.url+neuronapi.PathModels, nil)
	req.Header.Set("Authorization", "bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("lower-case bearer: %d", resp.StatusCode)
	}
}

func TestConfigRequiresTokenOrOptOut(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Engine = enginefake.New(enginefake.Options{})
	cfg.NodeName = "n"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("Validate without a token = %v", err)
	}
	cfg.AllowUnauthenticated = true
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.NodeName = "Not_A_Name"
	if err := cfg.Validate(); err == nil {
		t.Fatal("want an invalid node name refused")
	}
}

func TestTokenFile(t *testing.T) {
	p := t.TempDir() + "/token"
	if err := os.WriteFile(p, []byte("  from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, withConfig(func(c *Config) { c.Token, c.TokenFile = "ignored", p }))
	if code, _, _ := h.doToken(http.MethodGet, neuronapi.PathModels, nil, "from-file"); code != http.StatusOK {
		t.Fatalf("token from file refused: %d", code)
	}
	if code, _, _ := h.doToken(http.MethodGet, neuronapi.PathModels, nil, "ignored"); code != http.StatusUnauthorized {
		t.Fatalf("the file must win over the flag: %d", code)
	}
}

func TestRoutingErrors(t *testing.T) {
	h := newHarness(t)
	code, data, _ := h.do(http.MethodGet, "/v1/nothing", nil)
	h.wantError(http.StatusNotFound, data, code, "not_found")
	code, data, hdr := h.do(http.MethodPost, neuronapi.PathModels, nil)
	h.wantError(http.StatusMethodNotAllowed, data, code, "method_not_allowed")
	if hdr.Get("Allow") != http.MethodGet {
		t.Fatalf("Allow = %q", hdr.Get("Allow"))
	}
	code, data, _ = h.do(http.MethodGet, neuronapi.PathChatCompletions, nil)
	h.wantError(http.StatusMethodNotAllowed, data, code, "")
}

func TestVersionDiscoveryHealth(t *testing.T) {
	h := newHarness(t)
	code, data, _ := h.do(http.MethodGet, neuronapi.PathVersion, nil)
	if v := decodeInto[neuronapi.Version](t, data); code != 200 || v.Version == "" || v.LlamaCpp != "fake" {
		t.Fatalf("version %d %s", code, data)
	}
	code, data, _ = h.do(http.MethodGet, neuronapi.PathDiscovery, nil)
	d := decodeInto[neuronapi.Discovery](t, data)
	if code != 200 || d.Node != "test-node" || len(d.Backends) == 0 || len(d.Devices) != 1 || d.Devices[0].Kind != "cpu" || d.Devices[0].MemoryTotal != 1<<30 {
		t.Fatalf("discovery %d %+v", code, d)
	}
	if code, _, _ := h.do(http.MethodGet, neuronapi.PathHealthz, nil); code != 200 {
		t.Fatalf("healthz %d", code)
	}
}

func TestLoadLifecycle(t *testing.T) {
	h := newHarness(t, withFake(func(o *enginefake.Options) { o.LoadDelay = 50 * time.Millisecond }))
	src := tinyModel(t, 1)
	req := neuronapi.LoadRequest{Name: "ns/tiny", Source: neuronapi.Source{URI: src}, Engine: neuronapi.EngineConfig{ContextLength: 512, Parallel: 2}}

	code, data, _ := h.do(http.MethodPost, neuronapi.PathLoad, req)
	st := decodeInto[neuronapi.ModelStatus](t, data)
	if code != http.StatusAccepted || st.State != neuronapi.StateLoading || st.Progress == nil || st.VRAMBytes <= 0 || len(st.Devices) != 1 {
		t.Fatalf("first load: %d %s", code, data)
	}
	reserved := st.VRAMBytes
	// While loading, the reservation already shows in the devices' memory.
	if m := h.models(); m.Devices[0].MemoryFree != 1<<30-reserved {
		t.Fatalf("free %d while loading, want %d", m.Devices[0].MemoryFree, 1<<30-reserved)
	}
	ready := h.load(req)
	if ready.ContextLength != 512 || ready.Parallel != 2 || ready.LoadedAt == nil || ready.VRAMBytes != reserved || ready.Progress != nil {
		t.Fatalf("ready status %+v", ready)
	}
	// The same load again answers 200 with the current state.
	code, data, _ = h.do(http.MethodPost, neuronapi.PathLoad, req)
	if st := decodeInto[neuronapi.ModelStatus](t, data); code != http.StatusOK || st.State != neuronapi.StateReady {
		t.Fatalf("repeated load: %d %s", code, data)
	}
	if h.eng.Loads() != 1 {
		t.Fatalf("%d engine loads", h.eng.Loads())
	}

	code, data, _ = h.do(http.MethodPost, neuronapi.PathUnload, neuronapi.UnloadRequest{Name: "ns/tiny"})
	ur := decodeInto[UnloadResponse](t, data)
	if code != http.StatusOK || !ur.Unloaded || ur.FreedBytes != reserved {
		t.Fatalf("unload: %d %s", code, data)
	}
	m := h.models()
	if len(m.Models) != 0 || m.Devices[0].MemoryFree != 1<<30 {
		t.Fatalf("after unload: %+v", m)
	}
	if n := len(h.fake.Models()); n != 0 {
		t.Fatalf("%d engine models still open", n)
	}
	// Unloading what is not there succeeds.
	code, data, _ = h.do(http.MethodPost, neuronapi.PathUnload, neuronapi.UnloadRequest{Name: "ns/tiny"})
	if ur := decodeInto[UnloadResponse](t, data); code != http.StatusOK || ur.Unloaded {
		t.Fatalf("second unload: %d %s", code, data)
	}
}

func TestLoadSingleFlight(t *testing.T) {
	h := newHarness(t, withFake(func(o *enginefake.Options) { o.LoadDelay = 100 * time.Millisecond }))
	req := neuronapi.LoadRequest{Name: "ns/tiny", Source: neuronapi.Source{URI: tinyModel(t, 2)}}
	const n = 8
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() { codes[i], _, _ = h.do(http.MethodPost, neuronapi.PathLoad, req) })
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusAccepted && c != http.StatusOK {
			t.Fatalf("load %d: status %d", i, c)
		}
	}
	h.load(req)
	if h.eng.Loads() != 1 {
		t.Fatalf("%d concurrent loads made %d engine loads", n, h.eng.Loads())
	}
	if got := h.models().Models; len(got) != 1 {
		t.Fatalf("models %+v", got)
	}
}

func TestLoadConflict(t *testing.T) {
	h := newHarness(t)
	src := tinyModel(t, 3)
	h.load(neuronapi.LoadRequest{Name: "ns/a", Source: neuronapi.Source{URI: src}, Engine: neuronapi.EngineConfig{ContextLength: 512}})
	// Defaults spelled out are the same settings.
	code, data, _ := h.do(http.MethodPost, neuronapi.PathLoad, neuronapi.LoadRequest{Name: "ns/a", Source: neuronapi.Source{URI: src},
		Engine: neuronapi.EngineConfig{ContextLength: 512, FlashAttention: "auto", KVCacheType: "F16"}, Devices: []int{0}})
	if code != http.StatusOK {
		t.Fatalf("equivalent load: %d %s", code, data)
	}
	code, data, _ = h.do(http.MethodPost, neuronapi.PathLoad, neuronapi.LoadRequest{Name: "ns/a", Source: neuronapi.Source{URI: src},
		Engine: neuronapi.EngineConfig{ContextLength: 1024}})
	h.wantError(http.StatusConflict, data, code, neuronapi.CodeConflict)
	code, data, _ = h.do(http.MethodPost, neuronapi.PathLoad, neuronapi.LoadRequest{Name: "ns/a", Source: neuronapi.Source{URI: tinyModel(t, 4)},
		Engine: neuronapi.EngineConfig{ContextLength: 512}})
	h.wantError(http.StatusConflict, data, code, neuronapi.CodeConflict)
}

// estimateOf asks the neuron for a source's estimate.
func (h *harness) estimateOf(src string, ec neuronapi.EngineConfig) neuronapi.Estimate {
	h.t.Helper()
	code, data, _ := h.do(http.MethodPost, neuronapi.PathEstimate, neuronapi.EstimateRequest{Source: neuronapi.Source{URI: src}, Engine: ec})
	if code != http.StatusOK {
		h.t.Fatalf("estimate: %d %s", code, data)
	}
	return decodeInto[neuronapi.Estimate](h.t, data)
}

func TestEstimate(t *testing.T) {
	h := newHarness(t)
	src := tinyModel(t, 5)
	est := h.estimateOf(src, neuronapi.EngineConfig{ContextLength: 256, Parallel: 2})
	if est.Architecture != "llama" || est.Layers != 2 || est.ContextLength != 256 || est.Parallel != 2 ||
		est.TrainedContextLength != 1024 || est.WeightsBytes <= 0 || est.KVCacheBytes <= 0 || est.ComputeBytes <= 0 ||
		est.TotalBytes != est.WeightsBytes+est.KVCacheBytes+est.ComputeBytes {
		t.Fatalf("estimate %+v", est)
	}
	// The KV cache grows with context × parallel.
	bigger := h.estimateOf(src, neuronapi.EngineConfig{ContextLength: 1024, Parallel: 4})
	if bigger.KVCacheBytes <= est.KVCacheBytes*4 {
		t.Fatalf("KV cache %d for 4×4 the cells of %d", bigger.KVCacheBytes, est.KVCacheBytes)
	}

	// A remote file is read with range requests only.
	data, err := os.ReadFile(strings.TrimPrefix(src, "file://"))
	if err != nil {
		t.Fatal(err)
	}
	var ranged, full int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if r.Header.Get("Range") != "" {
			ranged++
		} else {
			full++
		}
		mu.Unlock()
		http.ServeContent(w, r, "m.gguf", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	remote := h.estimateOf(srv.URL+"/m.gguf", neuronapi.EngineConfig{ContextLength: 256, Parallel: 2})
	if remote != est {
		t.Fatalf("remote estimate %+v differs from local %+v", remote, est)
	}
	if full != 0 || ranged == 0 {
		t.Fatalf("%d full and %d ranged requests", full, ranged)
	}

	for _, tc := range []struct {
		name, uri string
		status    int
		code      string
	}{
		{"missing file", "file:///nonexistent/m.gguf", http.StatusUnprocessableEntity, neuronapi.CodeSourceUnavailable},
		{"bad scheme", "ftp://x/m.gguf", http.StatusBadRequest, neuronapi.CodeInvalidRequest},
		{"not gguf", "file://" + writeFile(t, "plain.txt", "hello"), http.StatusUnprocessableEntity, neuronapi.CodeSourceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := h.with(t)
			code, body, _ := h.do(http.MethodPost, neuronapi.PathEstimate, neuronapi.EstimateRequest{Source: neuronapi.Source{URI: tc.uri}})
			h.wantError(tc.status, body, code, tc.code)
		})
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := t.TempDir() + "/" + name
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadValidation(t *testing.T) {
	h := newHarness(t)
	src := tinyModel(t, 6)
	gl := -1
	tests := []struct {
		name string
		body any
		code string
	}{
		{"malformed JSON", `{"name":`, "invalid_json"},
		{"wrong type", `{"name": 5}`, "invalid_type"},
		{"not an object", `[1,2]`, "invalid_type"},
		{"empty body", ``, "invalid_json"},
		{"missing name", neuronapi.LoadRequest{Source: neuronapi.Source{URI: src}}, neuronapi.CodeInvalidRequest},
		{"name with spaces", neuronapi.LoadRequest{Name: "a b", Source: neuronapi.Source{URI: src}}, neuronapi.CodeInvalidRequest},
		{"no source", neuronapi.LoadRequest{Name: "ns/m"}, neuronapi.CodeInvalidRequest},
		{"relative file", neuronapi.LoadRequest{Name: "ns/m", Source: neuronapi.Source{URI: "file://rel/m.gguf"}}, neuronapi.CodeInvalidRequest},
		{"bad sha", neuronapi.LoadRequest{Name: "ns/m", Source: neuronapi.Source{URI: src, SHA256: "xyz"}}, neuronapi.CodeInvalidRequest},
		{"bad flash attention", neuronapi.LoadRequest{Name: "ns/m", Source: neuronapi.Source{URI: src}, Engine: neuronapi.EngineConfig{FlashAttention: "maybe"}}, neuronapi.CodeInvalidRequest},
		{"bad kv type", neuronapi.LoadRequest{Name: "ns/m", Source: neuronapi.Source{URI: src}, Engine: neuronapi.EngineConfig{KVCacheType: "q3"}}, neuronapi.CodeInvalidRequest},
		{"negative context", neuronapi.LoadRequest{Name: "ns/m", Source: neuronapi.Source{URI: src}, Engine: neuronapi.EngineConfig{ContextLength: -1}}, neuronapi.CodeInvalidRequest},
		{"duplicate devices", neuronapi.LoadRequest{Name: "ns/m", Source: neuronapi.Source{URI: src}, Devices: []int{0, 0}}, neuronapi.CodeInvalidRequest},
		{"absent device", neuronapi.LoadRequest{Name: "ns/m", Source: neuronapi.Source{URI: src}, Devices: []int{3}, Engine: neuronapi.EngineConfig{GPULayers: &gl}}, neuronapi.CodeInvalidRequest},
		{"broken template", neuronapi.LoadRequest{Name: "ns/m", Source: neuronapi.Source{URI: src}, Engine: neuronapi.EngineConfig{ChatTemplate: "{% if %}"}}, neuronapi.CodeInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := h.with(t)
			code, data, _ := h.do(http.MethodPost, neuronapi.PathLoad, tt.body)
			h.wantError(http.StatusBadRequest, data, code, tt.code)
		})
	}
	if len(h.models().Models) != 0 {
		t.Fatal("a refused load left a model behind")
	}
}

// cappedCPU is the real CPU inventory capped to limit bytes.
func cappedCPU(limit int64) devices.Inventory {
	return devices.NewCPU(devices.Options{MemoryLimit: limit})
}

func TestInsufficientMemory(t *testing.T) {
	src := tinyModel(t, 7)
	probe := newHarness(t)
	est := probe.estimateOf(src, neuronapi.EngineConfig{})
	h := newHarness(t, withInventory(cappedCPU(est.TotalBytes/2)))
	code, data, _ := h.do(http.MethodPost, neuronapi.PathLoad, neuronapi.LoadRequest{Name: "ns/big", Source: neuronapi.Source{URI: src}})
	msg := h.wantError(http.StatusInsufficientStorage, data, code, neuronapi.CodeInsufficientMemory)
	if !strings.Contains(msg, "needs ") || !strings.Contains(msg, "device 0 has") {
		t.Fatalf("message %q does not say what is needed and what is free", msg)
	}
	if len(h.models().Models) != 0 || h.eng.Loads() != 0 {
		t.Fatal("a refused load must not start")
	}
	// The manager's own figure overrides the estimate.
	code, data, _ = h.do(http.MethodPost, neuronapi.PathLoad, neuronapi.LoadRequest{Name: "ns/big", Source: neuronapi.Source{URI: src}, VRAMBytes: 1024})
	if code != http.StatusAccepted {
		t.Fatalf("load with vramBytes: %d %s", code, data)
	}
}

func TestConcurrentLoadsCannotOvercommit(t *testing.T) {
	src := tinyModel(t, 8)
	probe := newHarness(t)
	est := probe.estimateOf(src, neuronapi.EngineConfig{})
	h := newHarness(t, withInventory(cappedCPU(est.TotalBytes*3/2)),
		withFake(func(o *enginefake.Options) { o.LoadDelay = 100 * time.Millisecond }))
	const n = 4
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			codes[i], _, _ = h.do(http.MethodPost, neuronapi.PathLoad, neuronapi.LoadRequest{
				Name: "ns/m" + string(rune('a'+i)), Source: neuronapi.Source{URI: src}})
		})
	}
	wg.Wait()
	accepted, refused := 0, 0
	for _, c := range codes {
		switch c {
		case http.StatusAccepted:
			accepted++
		case http.StatusInsufficientStorage:
			refused++
		default:
			t.Fatalf("unexpected status %d", c)
		}
	}
	if accepted != 1 || refused != n-1 {
		t.Fatalf("%d accepted, %d refused; only one fits", accepted, refused)
	}
	m := h.models()
	if m.Devices[0].MemoryFree > m.Devices[0].MemoryTotal-est.TotalBytes {
		t.Fatalf("free %d does not account for the reservation of %d", m.Devices[0].MemoryFree, est.TotalBytes)
	}
}

func TestLoadFailureReleasesMemory(t *testing.T) {
	h := newHarness(t, withFake(func(o *enginefake.Options) { o.LoadError = errors.New("out of device memory") }))
	req := neuronapi.LoadRequest{Name: "ns/bad", Source: neuronapi.Source{URI: tinyModel(t, 9)}}
	code, _, _ := h.do(http.MethodPost, neuronapi.PathLoad, req)
	if code != http.StatusAccepted {
		t.Fatalf("load: %d", code)
	}
	var st neuronapi.ModelStatus
	h.waitFor("failed state", func() bool {
		st, _ = h.model("ns/bad")
		return st.State == neuronapi.StateFailed
	})
	if !strings.Contains(st.Error, "out of device memory") || st.VRAMBytes != 0 {
		t.Fatalf("failed status %+v", st)
	}
	if free := h.models().Devices[0].MemoryFree; free != 1<<30 {
		t.Fatalf("free %d after a failed load", free)
	}
	// Requests for it say why.
	code, data, _ := h.do(http.MethodPost, neuronapi.PathChatCompletions, map[string]any{"model": "ns/bad", "messages": []map[string]string{{"role": "user", "content": "hi"}}})
	if msg := h.wantError(http.StatusServiceUnavailable, data, code, neuronapi.CodeModelNotReady); !strings.Contains(msg, "out of device memory") {
		t.Fatalf("message %q", msg)
	}
	// A new load retries.
	if code, _, _ := h.do(http.MethodPost, neuronapi.PathLoad, req); code != http.StatusAccepted {
		t.Fatalf("retry: %d", code)
	}
	h.waitFor("second attempt", func() bool { return h.eng.Loads() == 2 })
}

func TestLoadFromHTTPSource(t *testing.T) {
	h := newHarness(t)
	data, err := os.ReadFile(strings.TrimPrefix(tinyModel(t, 10), "file://"))
	if err != nil {
		t.Fatal(err)
	}
	var gets int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if r.Header.Get("Range") == "" {
			gets++
		}
		mu.Unlock()
		http.ServeContent(w, r, "m.gguf", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	st := h.load(neuronapi.LoadRequest{Name: "ns/remote", Source: neuronapi.Source{URI: srv.URL + "/m.gguf"}})
	if st.VRAMBytes <= 0 {
		t.Fatalf("status %+v", st)
	}
	if gets != 1 {
		t.Fatalf("%d full downloads", gets)
	}
}

func TestUnloadWhileLoading(t *testing.T) {
	h := newHarness(t, withFake(func(o *enginefake.Options) { o.LoadDelay = time.Hour }))
	req := neuronapi.LoadRequest{Name: "ns/slow", Source: neuronapi.Source{URI: tinyModel(t, 11)}}
	if code, _, _ := h.do(http.MethodPost, neuronapi.PathLoad, req); code != http.StatusAccepted {
		t.Fatalf("load: %d", code)
	}
	code, data, _ := h.do(http.MethodPost, neuronapi.PathChatCompletions, map[string]any{"model": "ns/slow", "messages": []map[string]string{{"role": "user", "content": "hi"}}})
	h.wantError(http.StatusServiceUnavailable, data, code, neuronapi.CodeModelNotReady)
	code, data, _ = h.do(http.MethodPost, neuronapi.PathUnload, neuronapi.UnloadRequest{Name: "ns/slow"})
	if ur := decodeInto[UnloadResponse](t, data); code != http.StatusOK || !ur.Unloaded || ur.FreedBytes <= 0 {
		t.Fatalf("unload: %d %s", code, data)
	}
	if m := h.models(); len(m.Models) != 0 || m.Devices[0].MemoryFree != 1<<30 {
		t.Fatalf("after unloading a loading model: %+v", m)
	}
}

func TestPoisonedModelReloadsOnce(t *testing.T) {
	h := newHarness(t)
	h.load(neuronapi.LoadRequest{Name: "ns/p", Source: neuronapi.Source{URI: tinyModel(t, 12)}})
	chatReq := map[string]any{"model": "ns/p", "messages": []map[string]string{{"role": "user", "content": "hi"}}}

	h.fakeModel("ns/p").Poison(errors.New("cuda error"))
	code, data, hdr := h.do(http.MethodPost, neuronapi.PathChatCompletions, chatReq)
	h.wantError(http.StatusServiceUnavailable, data, code, neuronapi.CodeModelNotReady)
	if hdr.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	h.waitFor("automatic reload", func() bool {
		st, _ := h.model("ns/p")
		return st.State == neuronapi.StateReady && h.eng.Loads() == 2
	})
	if h.eng.Loads() != 2 {
		t.Fatalf("%d loads, want a reload", h.eng.Loads())
	}
	if code, data, _ := h.do(http.MethodPost, neuronapi.PathChatCompletions, chatReq); code != http.StatusOK {
		t.Fatalf("after reload: %d %s", code, data)
	}

	// A second failure is final; the poisoned state is seen by /models too.
	h.fakeModel("ns/p").Poison(errors.New("cuda error again"))
	h.waitFor("failed", func() bool {
		st, _ := h.model("ns/p")
		return st.State == neuronapi.StateFailed
	})
	if h.eng.Loads() != 2 {
		t.Fatalf("%d loads after the second failure", h.eng.Loads())
	}
	if free := h.models().Devices[0].MemoryFree; free != 1<<30 {
		t.Fatalf("failed model still holds memory: free %d", free)
	}
}

// noRangeServer serves data whole, ignoring Range, as some servers do.
func noRangeServer(t *testing.T, data []byte) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		_, _ = w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestDeferredEstimateWithoutRangeSupport(t *testing.T) {
	src := tinyModel(t, 13)
	data, err := os.ReadFile(strings.TrimPrefix(src, "file://"))
	if err != nil {
		t.Fatal(err)
	}
	srv := noRangeServer(t, data)

	h := newHarness(t)
	est := h.estimateOf(src, neuronapi.EngineConfig{})
	st := h.load(neuronapi.LoadRequest{Name: "ns/norange", Source: neuronapi.Source{URI: srv.URL + "/m.gguf"}})
	if st.VRAMBytes != est.TotalBytes {
		t.Fatalf("reserved %d after the download, estimate %d", st.VRAMBytes, est.TotalBytes)
	}

	// On a host too small, the load fails after the download, before the
	// engine sees it, and says why.
	small := newHarness(t, withInventory(cappedCPU(est.TotalBytes/2)))
	code, body, _ := small.do(http.MethodPost, neuronapi.PathLoad, neuronapi.LoadRequest{Name: "ns/norange", Source: neuronapi.Source{URI: srv.URL + "/m.gguf"}})
	if code != http.StatusAccepted {
		t.Fatalf("load: %d %s", code, body)
	}
	var failed neuronapi.ModelStatus
	small.waitFor("failure", func() bool {
		failed, _ = small.model("ns/norange")
		return failed.State == neuronapi.StateFailed
	})
	if !strings.Contains(failed.Error, "needs ") || small.eng.Loads() != 0 {
		t.Fatalf("status %+v, %d engine loads", failed, small.eng.Loads())
	}
}

func TestTokenFileRotation(t *testing.T) {
	for _, tc := range []struct {
		name        string
		grace       time.Duration
		oldAccepted bool
	}{
		{"with a grace period the old token stays good", time.Hour, true},
		{"without one it is refused at once", -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := t.TempDir() + "/token"
			if err := os.WriteFile(p, []byte("first\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, withConfig(func(c *Config) { c.Token, c.TokenFile, c.TokenGrace = "", p, tc.grace }))
			if code, _, _ := h.doToken(http.MethodGet, neuronapi.PathModels, nil, "first"); code != http.StatusOK {
				t.Fatalf("first token: %d", code)
			}
			if err := os.WriteFile(p, []byte("second\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			// The new token is taken at once, without waiting for the
			// recheck period: an unknown token makes the neuron look at
			// the file again.
			if code, _, _ := h.doToken(http.MethodGet, neuronapi.PathModels, nil, "second"); code != http.StatusOK {
				t.Fatalf("rotated token refused: %d", code)
			}
			want := http.StatusUnauthorized
			if tc.oldAccepted {
				want = http.StatusOK
			}
			if code, _, _ := h.doToken(http.MethodGet, neuronapi.PathModels, nil, "first"); code != want {
				t.Fatalf("old token: %d, want %d", code, want)
			}
			if code, _, _ := h.doToken(http.MethodGet, neuronapi.PathModels, nil, "third"); code != http.StatusUnauthorized {
				t.Fatalf("unknown token: %d", code)
			}
		})
	}
}
