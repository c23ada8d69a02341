package llamacpp

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/gguf/ggufgen"
)

// storiesPath finds the shared test model. Its absence is a broken test
// environment, so the tests fail rather than skip.
func storiesPath(t testing.TB) string {
	t.Helper()
	p := os.Getenv("CORTEX_TEST_MODEL")
	if p == "" {
		p = filepath.Join("..", "..", "..", "..", "shared", "models", "stories260K.gguf")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("test model missing (set CORTEX_TEST_MODEL): %v", err)
	}
	return p
}

var (
	testEngineOnce sync.Once
	testEngine     *Engine
)

func newTestEngine(t testing.TB) *Engine {
	t.Helper()
	testEngineOnce.Do(func() {
		var err error
		l := slog.New(slog.NewTextHandler(io.Discard, nil))
		if os.Getenv("CORTEX_TEST_LLAMA_LOG") != "" {
			l = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		testEngine, err = New(Options{Logger: l})
		if err != nil {
			panic(err)
		}
	})
	return testEngine
}

// loadStories loads stories260K with the given parameters (path filled in)
// and closes it at the end of the test.
func loadStories(t testing.TB, p engine.LoadParams) engine.Model {
	t.Helper()
	p.Path = storiesPath(t)
	return loadModelT(t, p)
}

func loadModelT(t testing.TB, p engine.LoadParams) engine.Model {
	t.Helper()
	if p.Threads == 0 {
		// One thread: the test machine is shared, and llama.cpp's spinning
		// thread barriers slow down by orders of magnitude when cores are
		// oversubscribed. TestGolden covers the multi-threaded path.
		p.Threads = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := newTestEngine(t).Load(ctx, p)
	if err != nil {
		t.Fatalf("loading %s: %v", p.Path, err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// writeRandomModel writes a generated llama GGUF into the test's temp dir.
func writeRandomModel(t testing.TB, p ggufgen.LlamaParams) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "random.gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := ggufgen.WriteRandomLlama(f, p); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// generate runs a greedy completion and returns its text.
func generate(t testing.TB, m engine.Model, prompt string, req engine.GenerateRequest) (string, engine.Result) {
	t.Helper()
	if req.Prompt == nil {
		toks, err := m.Tokenize(prompt, true, false)
		if err != nil {
			t.Fatal(err)
		}
		req.Prompt = toks
	}
	var b strings.Builder
	res, err := m.Generate(context.Background(), req, func(c engine.Chunk) error {
		b.WriteString(c.Text)
		return nil
	})
	if err != nil {
		t.Fatalf("Generate(%q): %v", prompt, err)
	}
	return b.String(), res
}

func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
