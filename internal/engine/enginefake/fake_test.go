package enginefake

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/engine"
)

func load(t *testing.T, opts Options, p engine.LoadParams) *Model {
	t.Helper()
	p.Path = "fake.gguf"
	m, err := New(opts).Load(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m.(*Model)
}

func gen(t *testing.T, m engine.Model, prompt string, req engine.GenerateRequest) (string, engine.Result) {
	t.Helper()
	if req.Prompt == nil {
		req.Prompt, _ = m.Tokenize(prompt, true, false)
	}
	var b strings.Builder
	res, err := m.Generate(context.Background(), req, func(c engine.Chunk) error { b.WriteString(c.Text); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return b.String(), res
}

func TestTokenizers(t *testing.T) {
	for _, tc := range []struct {
		kind Tokenizer
		text string
		n    int
	}{
		{Bytes, "héllo <s>", 11},
		{Words, "Hello, big world! 42", 7},
	} {
		m := load(t, Options{Tokenizer: tc.kind}, engine.LoadParams{})
		toks, err := m.Tokenize(tc.text, true, false)
		if err != nil || len(toks) != tc.n || toks[0] != BOS {
			t.Fatalf("tokenizer %d: %v, %v", tc.kind, toks, err)
		}
		back, err := m.Detokenize(toks[1:])
		if err != nil || back != tc.text {
			t.Errorf("tokenizer %d: round trip %q, %v", tc.kind, back, err)
		}
	}
	m := load(t, Options{}, engine.LoadParams{})
	if toks, _ := m.Tokenize("a</s>", false, true); len(toks) != 2 || toks[1] != EOS {
		t.Errorf("special parsing: %v", toks)
	}
}

func TestGenerate(t *testing.T) {
	m := load(t, Options{Tokenizer: Words, Respond: func(p Prompt) string { return "Hello there, dear friend." }},
		engine.LoadParams{ContextLength: 32, Parallel: 2})
	tests := []struct {
		name   string
		req    engine.GenerateRequest
		want   string
		reason engine.FinishReason
		tokens int
	}{
		{"whole reply", engine.GenerateRequest{}, "Hello there, dear friend.", engine.FinishStop, 7},
		{"stop across tokens", engine.GenerateRequest{Stop: []string{"e, d"}}, "Hello ther", engine.FinishStop, 0}, //nolint:misspell // "ther": the text cut before the stop "e, d"
		{"max tokens", engine.GenerateRequest{MaxTokens: 2}, "Hello there", engine.FinishLength, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, res := gen(t, m, "hi", tc.req)
			if out != tc.want || res.FinishReason != tc.reason || (tc.tokens > 0 && res.CompletionTokens != tc.tokens) {
				t.Errorf("got %q %+v; want %q %s %d", out, res, tc.want, tc.reason, tc.tokens)
			}
		})
	}
	long := make([]int, 30)
	for i := range long {
		long[i] = 2
	}
	if _, res := gen(t, m, "", engine.GenerateRequest{Prompt: long}); res.FinishReason != engine.FinishLength || res.CompletionTokens != 2 {
		t.Errorf("context full: %+v", res)
	}
	if _, err := m.Generate(context.Background(), engine.GenerateRequest{Prompt: make([]int, 32)}, nil); !errors.Is(err, engine.ErrContextLengthExceeded) {
		t.Errorf("too long: %v", err)
	}
	if _, err := m.Generate(context.Background(), engine.GenerateRequest{Prompt: []int{1}, Grammar: "nonsense"}, nil); !errors.Is(err, engine.ErrInvalidGrammar) {
		t.Errorf("bad grammar: %v", err)
	}
	// Same prompt, same text, and the prefix is reused.
	a, _ := gen(t, New(Options{}).mustLoad(t), "abc", engine.GenerateRequest{})
	b, r := gen(t, New(Options{}).mustLoad(t), "abc", engine.GenerateRequest{})
	if a != b || a == "" || r.CachedTokens != 0 {
		t.Errorf("determinism: %q vs %q", a, b)
	}
	_, r2 := gen(t, m, "hi", engine.GenerateRequest{})
	if r2.CachedTokens != r2.PromptTokens-1 {
		t.Errorf("prefix reuse: %+v", r2)
	}
}

func (e *Engine) mustLoad(t *testing.T) engine.Model {
	m, err := e.Load(context.Background(), engine.LoadParams{Path: "x"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func TestQueueFullAndCancel(t *testing.T) {
	m := load(t, Options{TokenDelay: time.Millisecond, Respond: func(Prompt) string { return strings.Repeat("x", 10000) }},
		engine.LoadParams{Parallel: 2, QueueSize: 1, ContextLength: 20000})
	prompt, _ := m.Tokenize("go", true, false)
	ctxs := make([]context.CancelFunc, 3)
	errs := make(chan error, 3)
	started := make(chan struct{}, 3)
	for i := range ctxs {
		ctx, cancel := context.WithCancel(context.Background())
		ctxs[i] = cancel
		go func() {
			var once sync.Once
			_, err := m.Generate(ctx, engine.GenerateRequest{Prompt: prompt}, func(engine.Chunk) error {
				once.Do(func() { started <- struct{}{} })
				return nil
			})
			errs <- err
		}()
		if i < 2 {
			<-started
		}
	}
	waitFor(t, func() bool { st := m.Stats(); return st.Active == 2 && st.Queued == 1 })
	if _, err := m.Generate(context.Background(), engine.GenerateRequest{Prompt: prompt}, nil); !errors.Is(err, engine.ErrQueueFull) {
		t.Fatalf("4th request: %v", err)
	}
	ctxs[0]()
	<-started // the queued request got the freed slot
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	ctxs[1]()
	ctxs[2]()
	for range 2 {
		if err := <-errs; err == nil {
			t.Error("a cancelled request reported no error")
		}
	}
	waitFor(t, func() bool { st := m.Stats(); return st.Active == 0 && st.Queued == 0 })
}

func TestCloseAndPoison(t *testing.T) {
	m := load(t, Options{TokenDelay: time.Millisecond, Respond: func(Prompt) string { return strings.Repeat("y", 1000) }},
		engine.LoadParams{Parallel: 1, ContextLength: 4000})
	prompt, _ := m.Tokenize("go", true, false)
	errc := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		var once sync.Once
		_, err := m.Generate(context.Background(), engine.GenerateRequest{Prompt: prompt}, func(engine.Chunk) error {
			once.Do(func() { close(started) })
			return nil
		})
		errc <- err
	}()
	<-started
	m.Poison(errors.New("driver fault"))
	if err := <-errc; !errors.Is(err, engine.ErrPoisoned) {
		t.Errorf("in flight at poisoning: %v", err)
	}
	if !m.Stats().Poisoned {
		t.Error("Stats does not report poisoning")
	}
	if _, err := m.Generate(context.Background(), engine.GenerateRequest{Prompt: prompt}, nil); !errors.Is(err, engine.ErrPoisoned) {
		t.Errorf("after poisoning: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Generate(context.Background(), engine.GenerateRequest{Prompt: prompt}, nil); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestEmbedAndLoad(t *testing.T) {
	e := New(Options{LoadDelay: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Load(ctx, engine.LoadParams{Path: "x"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled load: %v", err)
	}
	if _, err := New(Options{LoadError: errors.New("no VRAM")}).Load(context.Background(), engine.LoadParams{Path: "x"}); err == nil {
		t.Error("LoadError ignored")
	}
	m := load(t, Options{}, engine.LoadParams{})
	a, err := m.Embed(context.Background(), []int{0, 5, 6})
	b, _ := m.Embed(context.Background(), []int{0, 5, 6})
	if err != nil || len(a) != 64 || a[0] != b[0] {
		t.Errorf("Embed: %v", err)
	}
	if m.Info().ContextLength != 4096 || m.Stats().Slots != 4 {
		t.Errorf("defaults: %+v %+v", m.Info(), m.Stats())
	}
}

// The fake must stay cgo-free so that tests using it build fast.
func TestNoCgo(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "runtime/cgo" || strings.Contains(dep, "ollama") || strings.HasSuffix(dep, "/llamacpp") {
			t.Errorf("enginefake depends on %s", dep)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
