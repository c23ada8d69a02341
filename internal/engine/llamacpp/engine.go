// Package llamacpp implements engine.Engine on llama.cpp (ec98e2002),
// which the pinned github.com/ollama/ollama module's llama package compiles
// into the binary. This package calls it through its own cgo bindings
// (cgo.go), compiled against that module's llama.h and ggml headers; it is
// the only package of cortex that imports "C".
//
// Concurrency: one goroutine per device, locked to its OS thread, owns
// every llama.cpp call for the models placed on that device (a CPU-only
// host is one device). It steps the models round-robin; a step of a model
// builds one batch with the next prompt chunk or the next token of each of
// its active sequences (continuous batching), decodes it and samples each
// sequence. Callers of Generate and Embed run on their own goroutines and
// exchange requests and chunks with the worker through buffers, so a slow
// client never stalls the worker. Loading runs on a separate locked thread
// so that a long load does not stall inference of the models already on the
// device; the loaded context is then handed to the device worker.
package llamacpp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"

	// The wrapper's package compiles llama.cpp (and, through its imports,
	// ggml) into the binary; this package calls it through cgo.go.
	_ "github.com/ollama/ollama/llama"
	ggml "github.com/ollama/ollama/ml/backend/ggml/ggml/src"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/engine/internal/sched"
)

// Options configures the engine.
type Options struct {
	// Logger receives engine events and llama.cpp's log lines (at debug
	// level, errors at warn). llama.cpp's logging is process-wide, so the
	// logger of the last engine created wins. Nil: slog.Default().
	Logger *slog.Logger
	// LibraryPath is the folder holding ggml backend libraries (the CUDA
	// backend, CPU variants), exported as OLLAMA_LIBRARY_PATH before they
	// are loaded; it must contain "lib/ollama" or be the executable's
	// folder, as the loader requires. Empty: the loader's default,
	// <executable>/../lib/ollama. Only the first engine's value counts.
	LibraryPath string
}

// Engine loads models into llama.cpp. It is safe for concurrent use.
type Engine struct {
	log *slog.Logger

	mu      sync.Mutex
	devices map[string]*device
}

var _ engine.Engine = (*Engine)(nil)

var backendOnce sync.Once

func init() {
	// Route llama.cpp's log output through slog from the start; the
	// wrapper's own hook would print to stderr.
	installLogger()
}

// New initialises llama.cpp's backends (once per process) and returns an
// engine.
func New(opts Options) (*Engine, error) {
	l := opts.Logger
	if l == nil {
		l = slog.Default()
	}
	logger.Store(l)
	backendOnce.Do(func() {
		if opts.LibraryPath != "" {
			_ = os.Setenv("OLLAMA_LIBRARY_PATH", opts.LibraryPath)
		}
		// ggml's loader reads OLLAMA_LIBRARY_PATH and loads the backend
		// libraries (CPU variants, CUDA) before llama.cpp initialises.
		ggml.OnceLoad()
		backendInit()
		installLogger()
	})
	return &Engine{log: l, devices: map[string]*device{}}, nil
}

// Backends lists "cpu" and every other ggml backend loaded, e.g. "cuda".
func (e *Engine) Backends() []string {
	out := []string{"cpu"}
	for _, n := range backendNames() {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// Version names the llama.cpp revision compiled in.
func (e *Engine) Version() string {
	return "llama.cpp " + llamaCommit() + " (github.com/ollama/ollama " + pinnedModule + ")"
}

// config is LoadParams with defaults applied.
type config struct {
	engine.LoadParams
	flash llamaFlash
}

type llamaFlash = int32

const (
	// batchSize is the micro-batch (n_ubatch) and the most tokens one
	// worker step decodes, which bounds the latency a long prompt adds to
	// the other sequences' next token.
	batchSize = 512
)

func resolve(p engine.LoadParams) (config, error) {
	c := config{LoadParams: p}
	if p.Path == "" {
		return c, errors.New("no model path")
	}
	if p.ContextLength < 0 {
		return c, fmt.Errorf("context length %d is negative", p.ContextLength)
	}
	var err error
	if c.Parallel, c.QueueSize, err = sched.Slots(p); err != nil {
		return c, err
	}
	switch strings.ToLower(p.FlashAttention) {
	case "", "auto":
		c.flash = -1
	case "enabled", "on", "true":
		c.flash = 1
	case "disabled", "off", "false":
		c.flash = 0
	default:
		return c, fmt.Errorf("flash attention %q is not auto, enabled or disabled", p.FlashAttention)
	}
	switch strings.ToLower(p.KVCacheType) {
	case "", "f16":
		c.KVCacheType = "f16"
	case "q8_0", "q4_0":
		c.KVCacheType = strings.ToLower(p.KVCacheType)
		if c.flash == 0 {
			return c, fmt.Errorf("a quantised KV cache (%s) needs flash attention", c.KVCacheType)
		}
	default:
		return c, fmt.Errorf("KV cache type %q is not f16, q8_0 or q4_0", p.KVCacheType)
	}
	if p.Threads < 0 {
		return c, fmt.Errorf("threads %d is negative", p.Threads)
	}
	if p.Threads == 0 {
		c.Threads = defaultThreads()
	}
	return c, nil
}

// defaultThreads follows GOMAXPROCS, which respects the container's CPU
// limit, and approximates physical cores on larger hosts: llama.cpp's CPU
// kernels gain nothing from SMT siblings, and its threads spin at every
// barrier, so oversubscribed cores cost far more than idle ones.
func defaultThreads() int {
	n := runtime.GOMAXPROCS(0)
	if n >= 8 {
		return n / 2
	}
	return max(1, n)
}

// Load reads a GGUF file, creates its context and places it on its
// device's worker. If ctx ends first, Load returns ctx.Err() and the model,
// whose load cannot be interrupted, is freed once it finishes loading.
func (e *Engine) Load(ctx context.Context, p engine.LoadParams) (engine.Model, error) {
	cfg, err := resolve(p)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", p.Path, err)
	}
	if _, err := os.Stat(cfg.Path); err != nil {
		return nil, fmt.Errorf("loading %s: %w", cfg.Path, err)
	}
	plc, err := place(cfg)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", cfg.Path, err)
	}
	type loaded struct {
		m   *model
		err error
	}
	done := make(chan loaded, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		m, err := loadModel(cfg, plc, e.log)
		done <- loaded{m, err}
	}()
	var r loaded
	select {
	case r = <-done:
	case <-ctx.Done():
		go func() {
			if r := <-done; r.m != nil {
				r.m.freeC()
			}
		}()
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, fmt.Errorf("loading %s: %w", cfg.Path, r.err)
	}
	d := e.device(plc.key)
	r.m.dev = d
	d.add(r.m)
	e.log.Info("Model loaded", "path", cfg.Path, "device", plc.key, "context", r.m.ctxLen,
		"parallel", cfg.Parallel, "gpuLayers", plc.gpuLayers, "bytes", r.m.info.SizeBytes)
	return r.m, nil
}

func (e *Engine) device(key string) *device {
	e.mu.Lock()
	defer e.mu.Unlock()
	d, ok := e.devices[key]
	if !ok {
		d = newDevice(key, e.log)
		e.devices[key] = d
	}
	return d
}

// placement is where a model's layers go.
type placement struct {
	key       string // device worker: "cpu" or "cuda:<ordinal>"
	gpuLayers int
	devices   []uint64 // ggml device indices
	split     []float32
	mainGPU   int
}

// place maps CUDA ordinals to ggml devices. The CUDA backend registers its
// devices in ordinal order, so ordinal k is the k-th CUDA device ggml
// enumerates. Layers are split in proportion to each device's free memory.
func place(cfg config) (placement, error) {
	var cuda []gpuDevice
	for _, d := range gpuDevices() {
		if strings.EqualFold(d.library, "CUDA") {
			cuda = append(cuda, d)
		}
	}
	if len(cuda) == 0 || cfg.GPULayers == 0 {
		return placement{key: "cpu"}, nil
	}
	p := placement{gpuLayers: cfg.GPULayers}
	if p.gpuLayers < 0 {
		// llama.cpp reads a negative count as none; 999 means all.
		p.gpuLayers = 999
	}
	ordinals := cfg.Devices
	if len(ordinals) == 0 {
		ordinals = []int{0}
	}
	seen := map[int]bool{}
	for _, o := range ordinals {
		if o < 0 || o >= len(cuda) {
			return p, fmt.Errorf("CUDA device %d does not exist (%d found)", o, len(cuda))
		}
		if seen[o] {
			return p, fmt.Errorf("CUDA device %d listed twice", o)
		}
		seen[o] = true
		p.devices = append(p.devices, cuda[o].index)
	}
	if len(p.devices) > 1 {
		p.split = memorySplit(p.devices)
	}
	p.key = fmt.Sprintf("cuda:%d", ordinals[0])
	return p, nil
}
