package realengine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/helexa-ai/cortex/internal/devices"
	"github.com/helexa-ai/cortex/internal/engine/llamacpp"
	"github.com/helexa-ai/cortex/internal/gguf/ggufgen"
	"github.com/helexa-ai/cortex/internal/neuron"
	"github.com/helexa-ai/cortex/internal/neuronapi"
)

const token = "real-engine-token"

// storiesPath is the shared pretrained test model; its absence is a broken
// environment, so tests fail rather than skip.
func storiesPath(t testing.TB) string {
	t.Helper()
	skipShort(t)
	p, err := filepath.Abs(filepath.Join("..", "..", "..", "..", "shared", "models", "stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("test model missing: %v", err)
	}
	return p
}

var (
	engineOnce sync.Once
	theEngine  *llamacpp.Engine
	engineErr  error
)

// realEngine is one llama.cpp engine for the whole test binary (llama.cpp's
// backends are process-wide).
func realEngine(t testing.TB) *llamacpp.Engine {
	t.Helper()
	skipShort(t)
	engineOnce.Do(func() {
		l := slog.New(slog.NewTextHandler(io.Discard, nil))
		if os.Getenv("CORTEX_TEST_LLAMA_LOG") != "" {
			l = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		// CORTEX_LIBRARY_PATH, as the neuron reads it: `make bench-neuron`
		// points it at the CPU variant `make cpu-backend` built, so the
		// benchmark measures the speed this CPU can do. Unset: the built-in
		// baseline backend, which the golden tests are written against.
		theEngine, engineErr = llamacpp.New(llamacpp.Options{Logger: l, LibraryPath: os.Getenv("CORTEX_LIBRARY_PATH")})
	})
	if engineErr != nil {
		t.Fatalf("starting llama.cpp: %v", engineErr)
	}
	return theEngine
}

type harness struct {
	t   testing.TB
	s   *neuron.Server
	url string
}

// startNeuron runs a neuron with the real engine on loopback.
func startNeuron(t testing.TB, mod func(*neuron.Config)) *harness {
	t.Helper()
	cfg := neuron.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.NodeName = "real-node"
	cfg.Token = token
	cfg.CacheDir = t.TempDir()
	cfg.DisableRegistration = true
	cfg.Engine = realEngine(t)
	cfg.Devices = devices.NewStatic(devices.Device{Index: 0, Kind: devices.KindCPU, Name: "cpu", MemoryTotal: 8 << 30, MemoryFree: 8 << 30})
	// One thread per model: the test machine is small and shared, and
	// llama.cpp's spinning barriers collapse when cores are oversubscribed.
	cfg.Threads = 1
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if os.Getenv("CORTEX_TEST_NEURON_LOG") != "" {
		ctx = logr.NewContext(ctx, logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, nil)))
	}
	s, err := neuron.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("starting neuron: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := s.Wait(); err != nil {
			t.Errorf("neuron: %v", err)
		}
	})
	return &harness{t: t, s: s, url: s.URL()}
}

func (h *harness) post(path string, body any) (int, []byte) {
	h.t.Helper()
	return h.request(context.Background(), http.MethodPost, path, body)
}

func (h *harness) request(ctx context.Context, method, path string, body any) (int, []byte) {
	h.t.Helper()
	resp, err := h.send(ctx, method, path, body)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("reading %s: %v", path, err)
	}
	return resp.StatusCode, data
}

// send is request without failing the test (usable off the test goroutine).
func (h *harness) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.url+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	return http.DefaultClient.Do(req)
}

func decode[T any](t testing.TB, data []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decoding %s: %v", data, err)
	}
	return v
}

func (h *harness) models() neuronapi.ModelsResponse {
	h.t.Helper()
	code, data := h.request(context.Background(), http.MethodGet, neuronapi.PathModels, nil)
	if code != 200 {
		h.t.Fatalf("models: %d %s", code, data)
	}
	return decode[neuronapi.ModelsResponse](h.t, data)
}

func (h *harness) status(name string) neuronapi.ModelStatus {
	for _, m := range h.models().Models {
		if m.Name == name {
			return m
		}
	}
	return neuronapi.ModelStatus{}
}

func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// load loads a model through the API and waits until it is ready.
func (h *harness) load(req neuronapi.LoadRequest) neuronapi.ModelStatus {
	h.t.Helper()
	code, data := h.post(neuronapi.PathLoad, req)
	if code != http.StatusAccepted && code != http.StatusOK {
		h.t.Fatalf("load %s: %d %s", req.Name, code, data)
	}
	var st neuronapi.ModelStatus
	h.waitFor(req.Name+" ready", func() bool {
		st = h.status(req.Name)
		if st.State == neuronapi.StateFailed {
			h.t.Fatalf("load failed: %s", st.Error)
		}
		return st.State == neuronapi.StateReady
	})
	return st
}

func (h *harness) loadStories(name string, ec neuronapi.EngineConfig) neuronapi.ModelStatus {
	h.t.Helper()
	return h.load(neuronapi.LoadRequest{Name: name, Source: neuronapi.Source{URI: "file://" + storiesPath(h.t)}, Engine: ec})
}

// randomModel writes a generated llama GGUF and returns its path.
func randomModel(t testing.TB, p ggufgen.LlamaParams) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "random.gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if err := ggufgen.WriteRandomLlama(w, p); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// skipShort leaves the real engine out of `go test -short` (make
// test-short); without -short a missing model or engine fails.
func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("real llama.cpp engine: not run with -short")
	}
}
