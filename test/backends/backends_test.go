// Package backends checks ggml backend libraries built by
// hack/build-backends.sh (CPU variants such as libggml-cpu-haswell.so, or
// libggml-cuda.so) against the real engine: the engine loads them from
// Options.LibraryPath, llama.cpp's greedy continuation of stories260K is
// unchanged, and decode throughput is measured with and without them.
//
// The test is skipped unless CORTEX_BACKENDS_DIR names a folder of built
// libraries, so `make test` needs no CMake and spends nothing here beyond
// building the test binary. To run it:
//
//	hack/build-backends.sh cpu /tmp/ggml native
//	CORTEX_BACKENDS_DIR=/tmp/ggml go test -v -run Backends ./test/backends/
//
// ggml loads backends once per process, so each configuration runs in a
// child process (this test binary again, told what to do through the
// environment). Throughput is logged, not asserted: the numbers depend on
// the machine. CORTEX_BACKENDS_THREADS sets the CPU threads (default 1, the
// steadiest measure on a shared machine); CORTEX_TEST_MODEL the model.
package backends

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/engine/llamacpp"
	"github.com/helexa-ai/cortex/internal/gguf/ggufgen"

	// The backend libraries bind to the ggml compiled into the executable,
	// which must therefore export it. The neuron does because go-nvml
	// links with -Wl,--export-dynamic; link this test the same way.
	_ "github.com/NVIDIA/go-nvml/pkg/nvml"
)

const (
	dirEnv   = "CORTEX_BACKENDS_DIR"
	childEnv = "CORTEX_BACKENDS_CHILD"
	// resultPrefix marks the child's result line on stdout.
	resultPrefix = "CORTEX_BACKENDS_RESULT "
	prompt       = "Once upon a time"
	// storiesGolden is llama.cpp's greedy continuation of prompt on
	// stories260K (the engine's own TestGolden checks the same text).
	storiesGolden = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
)

// randomLlama is a ~20M-parameter Q8_0 llama (about 22 MB), large enough
// that decode speed is the kernels', not the per-token overhead's.
var randomLlama = ggufgen.LlamaParams{
	Name: "random-llama-20M", Layers: 4, Embd: 512, Heads: 8, HeadsKV: 4, FF: 1536,
	Vocab: 16000, Context: 1024, WeightType: "q8_0", Seed: 7,
}

// childConfig is what the parent asks a child to do.
type childConfig struct {
	LibraryPath string
	Stories     string
	Random      string
	Threads     int
}

// childResult is what a child observed.
type childResult struct {
	Backends []string
	// Loaded are ggml's "loaded <name> backend from <path>" lines.
	Loaded []string
	// System is the ggml feature summary ollama's loader logs per backend.
	System     string
	GPULayers  int
	Text       string
	StoriesTPS float64
	RandomTPS  float64
}

func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		os.Exit(child(cfg))
	}
	os.Exit(m.Run())
}

// TestBackends runs the same generations without and with the libraries
// of CORTEX_BACKENDS_DIR and compares what the engine did.
func TestBackends(t *testing.T) {
	dir := os.Getenv(dirEnv)
	if dir == "" {
		t.Skipf("%s is not set; build libraries with hack/build-backends.sh and point it at them", dirEnv)
	}
	libs, err := filepath.Glob(filepath.Join(dir, "libggml-*.so"))
	if err != nil || len(libs) == 0 {
		t.Fatalf("no libggml-*.so in %s (%v)", dir, err)
	}
	// ggml's loader (ollama's OnceLoad) only searches a folder whose path
	// contains lib/ollama or the executable's own folder.
	libDir := filepath.Join(t.TempDir(), "lib", "ollama")
	if err := os.MkdirAll(libDir, 0o755); err != nil {
		t.Fatal(err)
	}
	families := map[string]bool{}
	for _, l := range libs {
		copyFile(t, l, filepath.Join(libDir, filepath.Base(l)))
		families[family(filepath.Base(l))] = true
	}
	threads := 1
	if v := os.Getenv("CORTEX_BACKENDS_THREADS"); v != "" {
		if threads, err = strconv.Atoi(v); err != nil || threads < 1 {
			t.Fatalf("CORTEX_BACKENDS_THREADS=%q is not a positive integer", v)
		}
	}
	cfg := childConfig{Stories: storiesPath(t), Random: writeRandomModel(t), Threads: threads}

	base := runChild(t, cfg)
	cfg.LibraryPath = libDir
	withLibs := runChild(t, cfg)

	if len(base.Loaded) != 0 {
		t.Errorf("without a library path the engine loaded %v", base.Loaded)
	}
	for f := range families {
		i := slices.IndexFunc(withLibs.Loaded, func(l string) bool {
			return strings.Contains(l, filepath.Join(libDir, "libggml-"+f))
		})
		if i < 0 {
			t.Errorf("no %s library from %s was loaded; ggml said %q", f, libDir, withLibs.Loaded)
			continue
		}
		t.Logf("%s", withLibs.Loaded[i])
	}
	// The device llama.cpp computes on is ggml's first CPU device, listed
	// first in the summary as CPU.0; a variant that ran the built-in
	// backend's kernels (its symbols interposed by the executable's) would
	// report the baseline's features there.
	for _, l := range withLibs.Loaded {
		m := variantFile.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if f := variantFeature[m[1]]; f != "" && !strings.Contains(withLibs.System, "CPU.0."+f+"=1") {
			t.Errorf("the %s variant is loaded but the first CPU device lacks %s: %s", m[1], f, withLibs.System)
		}
	}
	if families["cuda"] && !slices.Contains(withLibs.Backends, "cuda") {
		t.Errorf("Backends() = %v with libggml-cuda.so loaded", withLibs.Backends)
	}
	t.Logf("backends: without %v, with %v; ggml system: %s", base.Backends, withLibs.Backends, withLibs.System)
	for name, r := range map[string]childResult{"without libraries": base, "with libraries": withLibs} {
		if !strings.HasPrefix(prompt+r.Text, storiesGolden) {
			t.Errorf("%s (gpuLayers %d): greedy completion %q, want it to begin %q", name, r.GPULayers, prompt+r.Text, storiesGolden)
		}
	}
	t.Logf("decode tok/s, %d thread(s), gpuLayers %d with libraries:", threads, withLibs.GPULayers)
	t.Logf("  stories260K       without %8.1f  with %8.1f  (x%.2f)", base.StoriesTPS, withLibs.StoriesTPS, ratio(withLibs.StoriesTPS, base.StoriesTPS))
	t.Logf("  random-llama-20M  without %8.1f  with %8.1f  (x%.2f)", base.RandomTPS, withLibs.RandomTPS, ratio(withLibs.RandomTPS, base.RandomTPS))
}

var variantFile = regexp.MustCompile(`libggml-cpu-([a-z0-9_.]+)\.so`)

// variantFeature is a ggml CPU feature each x86 variant has and the one
// below it lacks.
var variantFeature = map[string]string{
	"sse42": "SSE3", "sandybridge": "AVX", "haswell": "AVX2", "skylakex": "AVX512",
	"icelake": "AVX512_VBMI", "alderlake": "AVX_VNNI",
}

// family is the backend a library file belongs to: libggml-cpu-haswell.so
// is "cpu", libggml-cuda.so "cuda".
func family(name string) string {
	f := strings.TrimSuffix(strings.TrimPrefix(name, "libggml-"), ".so")
	if i := strings.IndexByte(f, '-'); i >= 0 {
		f = f[:i]
	}
	return f
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func runChild(t *testing.T, cfg childConfig) childResult {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child (library path %q): %v\n%s", cfg.LibraryPath, err, tail(stderr.String(), 4000))
	}
	for _, line := range strings.Split(stdout.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, resultPrefix); ok {
			var r childResult
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				t.Fatalf("child result %q: %v", rest, err)
			}
			return r
		}
	}
	t.Fatalf("child (library path %q) printed no result\nstdout: %s\nstderr: %s", cfg.LibraryPath, tail(stdout.String(), 2000), tail(stderr.String(), 2000))
	return childResult{}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// child runs in its own process: it starts the engine with the library
// path it was given, generates and measures, and prints its result.
func child(cfgJSON string) int {
	var cfg childConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		return 2
	}
	r, err := runEngine(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	b, err := json.Marshal(r)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child result:", err)
		return 1
	}
	fmt.Println(resultPrefix + string(b))
	return 0
}

// lineLog keeps every log line, for the child to search.
type lineLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

var loadedLine = regexp.MustCompile(`load_backend: loaded \S+ backend from [^"\s]+`)

func runEngine(cfg childConfig) (childResult, error) {
	var r childResult
	logs := &lineLog{}
	// ggml's loader reports what it loaded through llama.cpp's log (the
	// engine's logger, at debug level); ollama's loader logs its feature
	// summary through slog's default logger.
	h := slog.NewTextHandler(io.MultiWriter(logs, os.Stderr), &slog.HandlerOptions{Level: slog.LevelDebug})
	slog.SetDefault(slog.New(h))
	eng, err := llamacpp.New(llamacpp.Options{Logger: slog.New(h), LibraryPath: cfg.LibraryPath})
	if err != nil {
		return r, fmt.Errorf("starting the engine: %w", err)
	}
	r.Backends = eng.Backends()
	text := logs.String()
	r.Loaded = loadedLine.FindAllString(text, -1)
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, "msg=system") {
			r.System = strings.TrimSpace(line[strings.Index(line, "msg=system")+len("msg=system"):])
		}
	}
	if slices.Contains(r.Backends, "cuda") {
		r.GPULayers = -1 // the whole model on the GPU
	}

	ctx := context.Background()
	stories, err := load(ctx, eng, cfg.Stories, cfg.Threads, r.GPULayers)
	if err != nil {
		return r, err
	}
	defer func() { _ = stories.Close() }()
	toks, err := stories.Tokenize(prompt, true, false)
	if err != nil {
		return r, fmt.Errorf("tokenizing: %w", err)
	}
	var sb strings.Builder
	if _, err := stories.Generate(ctx, engine.GenerateRequest{Prompt: toks, MaxTokens: 28}, func(c engine.Chunk) error {
		sb.WriteString(c.Text)
		return nil
	}); err != nil {
		return r, fmt.Errorf("generating: %w", err)
	}
	r.Text = sb.String()
	if r.StoriesTPS, err = decodeRate(ctx, stories, 64); err != nil {
		return r, err
	}

	random, err := load(ctx, eng, cfg.Random, cfg.Threads, r.GPULayers)
	if err != nil {
		return r, err
	}
	defer func() { _ = random.Close() }()
	if r.RandomTPS, err = decodeRate(ctx, random, 32); err != nil {
		return r, err
	}
	return r, nil
}

func load(ctx context.Context, eng *llamacpp.Engine, path string, threads, gpuLayers int) (engine.Model, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	m, err := eng.Load(ctx, engine.LoadParams{Path: path, ContextLength: 512, Parallel: 1, Threads: threads, GPULayers: gpuLayers})
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", path, err)
	}
	return m, nil
}

// decodeRate is the median decode throughput of five single-stream
// generations of n tokens after a 4-token prompt.
func decodeRate(ctx context.Context, m engine.Model, n int) (float64, error) {
	var rates []float64
	for i := range 5 {
		r, err := engine.BenchGenerate(ctx, m, [][]int{{1, 100 + i, 200 + i, 300 + i}}, n)
		if err != nil {
			return 0, err
		}
		if r.CompletionTokens == 0 {
			return 0, errors.New("benchmark generated nothing")
		}
		rates = append(rates, r.DecodeTokensPerSecond)
	}
	sort.Float64s(rates)
	return rates[len(rates)/2], nil
}

// storiesPath finds the shared test model; its absence is a broken test
// environment, so the test fails rather than skips.
func storiesPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("CORTEX_TEST_MODEL")
	if p == "" {
		p = filepath.Join("..", "..", "..", "shared", "models", "stories260K.gguf")
	}
	abs, err := filepath.Abs(p)
	if err == nil {
		_, err = os.Stat(abs)
	}
	if err != nil {
		t.Fatalf("test model missing (set CORTEX_TEST_MODEL): %v", err)
	}
	return abs
}

func writeRandomModel(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "random.gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := ggufgen.WriteRandomLlama(f, randomLlama); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
