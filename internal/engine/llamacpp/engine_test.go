package llamacpp

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/gguf/ggufgen"
)

// storiesGolden is how llama.cpp greedily continues "Once upon a time"
// (with BOS, as llama.cpp tokenises prompts for this SPM model).
const storiesGolden = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."

func TestGolden(t *testing.T) {
	// Two threads: the multi-threaded CPU path the engine uses by default.
	m := loadStories(t, engine.LoadParams{Threads: 2})
	out, res := generate(t, m, "Once upon a time", engine.GenerateRequest{MaxTokens: 28})
	if full := "Once upon a time" + out; !strings.HasPrefix(full, storiesGolden) {
		t.Fatalf("greedy completion = %q, want it to begin %q", full, storiesGolden)
	}
	if res.FinishReason != engine.FinishLength || res.CompletionTokens != 28 || res.PromptTokens != 5 {
		t.Errorf("result = %+v", res)
	}
}

func TestInfoAndTokenizer(t *testing.T) {
	m := loadStories(t, engine.LoadParams{ContextLength: 256, Parallel: 2})
	info := m.Info()
	want := engine.Info{
		Architecture: "llama", ContextLength: 256, TrainedContextLength: 2048, Parallel: 2,
		VocabSize: 512, EmbeddingLength: 64, BOS: "<s>", EOS: "</s>", AddBOS: true, SizeBytes: 1171200,
	}
	if info != want {
		t.Errorf("Info = %+v\nwant %+v", info, want)
	}
	toks, err := m.Tokenize("Once upon a time", true, false)
	if err != nil || len(toks) != 5 || toks[0] != 1 {
		t.Fatalf("Tokenize = %v, %v", toks, err)
	}
	text, err := m.Detokenize(toks[1:])
	if err != nil || text != "Once upon a time" {
		t.Errorf("Detokenize = %q, %v", text, err)
	}
	if _, err := m.Detokenize([]int{1, 9999}); !errors.Is(err, engine.ErrInvalidRequest) {
		t.Errorf("Detokenize out of range: %v", err)
	}
	if toks, err := m.Tokenize("", false, false); err != nil || len(toks) != 0 {
		t.Errorf("Tokenize empty = %v, %v", toks, err)
	}
	e := newTestEngine(t)
	if b := e.Backends(); len(b) == 0 || b[0] != "cpu" {
		t.Errorf("Backends = %v", b)
	}
	if v := e.Version(); !strings.Contains(v, "ec98e2002") {
		t.Errorf("Version = %q", v)
	}
}

var concurrentPrompts = []string{
	"Once upon a time",
	"The little dog",
	"Tom and Sue went to the",
	"One day, a big bird",
	"Lily had a red ball",
	"The sun was hot and",
	"There was a tiny frog who",
	"Mom said",
}

// Batching several sequences must not change any of them: each greedy
// completion equals the one the prompt gets alone.
func TestConcurrentMatchesAlone(t *testing.T) {
	m := loadStories(t, engine.LoadParams{Parallel: 4, QueueSize: 8})
	req := engine.GenerateRequest{MaxTokens: 64}
	alone := make([]string, len(concurrentPrompts))
	for i, p := range concurrentPrompts {
		alone[i], _ = generate(t, m, p, req)
	}
	got := make([]string, len(concurrentPrompts))
	var wg sync.WaitGroup
	for i, p := range concurrentPrompts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = generate(t, m, p, req)
		}()
	}
	wg.Wait()
	for i := range got {
		if got[i] != alone[i] {
			t.Errorf("prompt %q:\nconcurrent %q\n     alone %q", concurrentPrompts[i], got[i], alone[i])
		}
	}
	if st := m.Stats(); st.Active != 0 || st.Queued != 0 || st.Slots != 4 || st.GeneratedTokens == 0 {
		t.Errorf("Stats after the burst = %+v", st)
	}
}

func TestQueueFull(t *testing.T) {
	m := loadStories(t, engine.LoadParams{Parallel: 2, QueueSize: 1, ContextLength: 1024})
	prompt, _ := m.Tokenize("Once upon a time", true, false)
	// A stalled client does not stall the engine, so the two admitted
	// requests must stay busy on their own while the test fills the queue:
	// a grammar that never completes rules out an early end-of-sequence,
	// and they run for 400 tokens (a few hundred milliseconds, where the
	// checks below take microseconds).
	long := engine.GenerateRequest{Prompt: prompt, MaxTokens: 400, Grammar: `root ::= [a-z ] root`}
	release := make(chan struct{})
	started := make(chan struct{}, 3)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			_, err := m.Generate(context.Background(), long, func(engine.Chunk) error {
				if first {
					first = false
					started <- struct{}{}
				}
				<-release // a stalled client keeps its request in flight
				return nil
			})
			if err != nil {
				t.Errorf("admitted request failed: %v", err)
			}
		}()
	}
	// Two requests stream; the third waits for a sequence.
	<-started
	<-started
	waitFor(t, func() bool { return m.Stats().Queued == 1 })
	if _, err := m.Generate(context.Background(), engine.GenerateRequest{Prompt: prompt}, nil); !errors.Is(err, engine.ErrQueueFull) {
		t.Fatalf("4th request: err = %v, want ErrQueueFull", err)
	}
	close(release)
	wg.Wait()
}

// A cancelled generation gives its sequence to the queued request at once.
func TestCancelFreesSlot(t *testing.T) {
	m := loadStories(t, engine.LoadParams{Parallel: 1, QueueSize: 1})
	prompt, _ := m.Tokenize("Once upon a time", true, false)
	ctx, cancel := context.WithCancel(context.Background())
	started, proceed := make(chan struct{}), make(chan struct{})
	aDone := make(chan engine.Result, 1)
	go func() {
		// The grammar never lets the story end: uncancelled, this request
		// would fill the 2048-token context.
		res, err := m.Generate(ctx, engine.GenerateRequest{Prompt: prompt, Grammar: `root ::= "a" root`}, func(engine.Chunk) error {
			select {
			case <-started:
			default:
				close(started)
				<-proceed
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled request: err = %v", err)
		}
		aDone <- res
	}()
	<-started
	bDone := make(chan engine.Result, 1)
	go func() {
		_, res := generate(t, m, "", engine.GenerateRequest{Prompt: prompt, MaxTokens: 5})
		bDone <- res
	}()
	waitFor(t, func() bool { return m.Stats().Queued == 1 })
	close(proceed)
	a, b := <-aDone, <-bDone
	if a.FinishReason != engine.FinishCancelled || b.CompletionTokens != 5 || b.FinishReason != engine.FinishLength {
		t.Errorf("cancelled %+v; queued %+v", a, b)
	}
	if st := m.Stats(); st.GeneratedTokens > 1000 || st.Active != 0 {
		t.Errorf("stats %+v: the cancelled sequence kept running", st)
	}
	// Cancelling through an onChunk error works the same way.
	boom := errors.New("client went away")
	if _, err := m.Generate(context.Background(), engine.GenerateRequest{Prompt: prompt}, func(engine.Chunk) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("onChunk error: %v", err)
	}
	if _, res := generate(t, m, "", engine.GenerateRequest{Prompt: prompt, MaxTokens: 3}); res.CompletionTokens != 3 {
		t.Errorf("after an onChunk error: %+v", res)
	}
	// A context already ended never starts.
	if res, err := m.Generate(ctx, engine.GenerateRequest{Prompt: prompt}, nil); !errors.Is(err, context.Canceled) || res.FinishReason != engine.FinishCancelled {
		t.Errorf("ended context: %+v, %v", res, err)
	}
}

func TestStopAndLength(t *testing.T) {
	m := loadStories(t, engine.LoadParams{ContextLength: 64, Parallel: 1})
	tests := []struct {
		name   string
		req    engine.GenerateRequest
		want   string
		reason engine.FinishReason
		tokens int
	}{
		// "little girl" spans the tokens "▁little" and "▁girl".
		{"stop across tokens", engine.GenerateRequest{Stop: []string{"little girl"}}, ", there was a ", engine.FinishStop, 0},
		{"stop inside a token", engine.GenerateRequest{Stop: []string{"Li"}}, ", there was a little girl named ", engine.FinishStop, 0},
		{"earliest stop wins", engine.GenerateRequest{Stop: []string{"park", "."}}, ", there was a little girl named Lily", engine.FinishStop, 0},
		{"max tokens", engine.GenerateRequest{MaxTokens: 3}, ", there was", engine.FinishLength, 3},
		// 5 prompt tokens + 59 generated fill the 64-token context.
		{"context full", engine.GenerateRequest{}, "", engine.FinishLength, 59},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, res := generate(t, m, "Once upon a time", tc.req)
			if tc.want != "" && out != tc.want {
				t.Errorf("text = %q, want %q", out, tc.want)
			}
			if res.FinishReason != tc.reason || (tc.tokens > 0 && res.CompletionTokens != tc.tokens) {
				t.Errorf("result = %+v, want %s after %d tokens", res, tc.reason, tc.tokens)
			}
		})
	}
}

func TestRequestErrors(t *testing.T) {
	m := loadStories(t, engine.LoadParams{ContextLength: 32, Parallel: 1})
	long := make([]int, 32)
	for i := range long {
		long[i] = 100
	}
	tests := []struct {
		name string
		req  engine.GenerateRequest
		want error
	}{
		{"prompt fills context", engine.GenerateRequest{Prompt: long}, engine.ErrContextLengthExceeded},
		{"empty prompt", engine.GenerateRequest{}, engine.ErrInvalidRequest},
		{"token outside vocabulary", engine.GenerateRequest{Prompt: []int{1, 512}}, engine.ErrInvalidRequest},
		{"bad grammar", engine.GenerateRequest{Prompt: []int{1}, Grammar: "root ::= ( \"a\""}, engine.ErrInvalidGrammar},
		{"undefined rule", engine.GenerateRequest{Prompt: []int{1}, Grammar: "root ::= foo"}, engine.ErrInvalidGrammar},
		{"bad top_p", engine.GenerateRequest{Prompt: []int{1}, Sampling: engine.Sampling{TopP: 2}}, engine.ErrInvalidRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := m.Generate(context.Background(), tc.req, nil); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := m.Embed(context.Background(), make([]int, 33)); !errors.Is(err, engine.ErrContextLengthExceeded) {
		t.Errorf("Embed too long: %v", err)
	}
	if _, err := m.SchemaToGrammar([]byte(`{"type": `)); !errors.Is(err, engine.ErrInvalidGrammar) {
		t.Errorf("invalid schema: %v", err)
	}
	// The model still serves after all that.
	if out, _ := generate(t, m, "Once upon a time", engine.GenerateRequest{MaxTokens: 3}); out != ", there was" {
		t.Errorf("after errors: %q", out)
	}
}

func TestGrammarJSONSchema(t *testing.T) {
	m := loadStories(t, engine.LoadParams{Parallel: 2})
	schema := `{"type":"object","properties":{"name":{"type":"string","maxLength":12},"age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false}`
	g, err := m.SchemaToGrammar([]byte(schema))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []engine.Sampling{{}, {Temperature: 0.8, Seed: ptr(uint32(7))}} {
		out, res := generate(t, m, "Once upon a time", engine.GenerateRequest{Grammar: g, MaxTokens: 200, Sampling: s})
		var v struct {
			Name *string `json:"name"`
			Age  *int    `json:"age"`
		}
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil || v.Name == nil || v.Age == nil {
			t.Fatalf("output %q (%+v) is not the schema's object: %v", out, res, err)
		}
		if res.FinishReason != engine.FinishStop {
			t.Errorf("grammar-complete output should end with EOS, got %+v", res)
		}
	}
}

func TestLogprobs(t *testing.T) {
	m := loadStories(t, engine.LoadParams{Parallel: 1})
	prompt, _ := m.Tokenize("Once upon a time", true, false)
	var lps []engine.TokenLogprob
	var text strings.Builder
	res, err := m.Generate(context.Background(), engine.GenerateRequest{Prompt: prompt, MaxTokens: 10, Logprobs: true, TopLogprobs: 3},
		func(c engine.Chunk) error {
			text.WriteString(c.Text)
			lps = append(lps, c.Logprobs...)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if len(lps) != res.CompletionTokens {
		t.Fatalf("%d logprobs for %d tokens", len(lps), res.CompletionTokens)
	}
	var joined strings.Builder
	for _, lp := range lps {
		joined.WriteString(lp.Token)
		if len(lp.Top) != 3 || lp.Top[0].Token != lp.Token || lp.Top[0].Logprob != lp.Logprob {
			t.Errorf("greedy token %q is not the top alternative: %+v", lp.Token, lp.Top)
		}
		if lp.Logprob > 0 || lp.Top[1].Logprob > lp.Top[0].Logprob || math.IsNaN(float64(lp.Logprob)) {
			t.Errorf("implausible logprobs %+v", lp)
		}
	}
	if joined.String() != text.String() {
		t.Errorf("tokens %q do not spell the text %q", joined.String(), text.String())
	}
}

func TestSeededSampling(t *testing.T) {
	m := loadStories(t, engine.LoadParams{Parallel: 2})
	run := func(seed uint32) string {
		out, _ := generate(t, m, "Once upon a time", engine.GenerateRequest{MaxTokens: 30,
			Sampling: engine.Sampling{Temperature: 1, TopK: 40, TopP: 0.95, MinP: 0.01, Seed: &seed, RepeatPenalty: 1.1, PresencePenalty: 0.2, FrequencyPenalty: 0.2}})
		return out
	}
	a, b, c := run(1), run(1), run(2)
	if a != b {
		t.Errorf("same seed, different text:\n%q\n%q", a, b)
	}
	if a == c {
		t.Errorf("seeds 1 and 2 gave the same text %q", a)
	}
}

func TestPrefixReuse(t *testing.T) {
	m := loadStories(t, engine.LoadParams{Parallel: 2})
	first, r1 := generate(t, m, "Once upon a time, there was a little girl", engine.GenerateRequest{MaxTokens: 10})
	second, r2 := generate(t, m, "Once upon a time, there was a little girl", engine.GenerateRequest{MaxTokens: 10})
	if r1.CachedTokens != 0 || r2.CachedTokens != r2.PromptTokens-1 {
		t.Errorf("cached tokens: first %d, second %d of %d", r1.CachedTokens, r2.CachedTokens, r2.PromptTokens)
	}
	if first != second {
		t.Errorf("reused prefix changed the output: %q vs %q", first, second)
	}
	// A prompt sharing only a prefix lands on the slot holding it.
	_, r3 := generate(t, m, "Once upon a time, there was a big dog", engine.GenerateRequest{MaxTokens: 5})
	if r3.CachedTokens < 5 {
		t.Errorf("shared prefix not reused: %+v", r3)
	}
}

func TestEmbeddings(t *testing.T) {
	m := loadStories(t, engine.LoadParams{Parallel: 2})
	embed := func(s string) []float32 {
		toks, _ := m.Tokenize(s, true, false)
		v, err := m.Embed(context.Background(), toks)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	a, b, c := embed("The cat sat on the mat."), embed("The cat sat on the mat."), embed("A big red ball!")
	if len(a) != 64 {
		t.Fatalf("dimension %d", len(a))
	}
	var norm, dot float64
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("embedding not deterministic at %d: %v vs %v", i, a[i], b[i])
		}
		norm += float64(a[i]) * float64(a[i])
		dot += float64(a[i]) * float64(c[i])
	}
	if math.Abs(norm-1) > 1e-5 {
		t.Errorf("norm² = %v", norm)
	}
	if dot > 0.9999 {
		t.Errorf("different texts embed alike (cos %v)", dot)
	}
	// Embedding between generations leaves them intact.
	out, _ := generate(t, m, "Once upon a time", engine.GenerateRequest{MaxTokens: 3})
	if out != ", there was" {
		t.Errorf("generation after Embed: %q", out)
	}
	// Longer than one embedding chunk.
	long := make([]int, 300)
	for i := range long {
		long[i] = 100 + i%200
	}
	if v, err := m.Embed(context.Background(), long); err != nil || len(v) != 64 {
		t.Errorf("long embed: %d, %v", len(v), err)
	}
}

func TestClose(t *testing.T) {
	m := loadStories(t, engine.LoadParams{Parallel: 1, QueueSize: 2})
	prompt, _ := m.Tokenize("Once upon a time", true, false)
	inflight := make(chan error, 2)
	var once sync.Once
	started := make(chan struct{})
	for i := 0; i < 2; i++ {
		go func() {
			_, err := m.Generate(context.Background(), engine.GenerateRequest{Prompt: prompt}, func(engine.Chunk) error {
				once.Do(func() { close(started) })
				time.Sleep(time.Millisecond)
				return nil
			})
			inflight <- err
		}()
	}
	<-started
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := <-inflight; !errors.Is(err, engine.ErrClosed) {
			t.Errorf("request in flight at Close: %v", err)
		}
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := m.Generate(context.Background(), engine.GenerateRequest{Prompt: prompt}, nil); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Generate after Close: %v", err)
	}
	if _, err := m.Embed(context.Background(), prompt); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Embed after Close: %v", err)
	}
	if _, err := m.Tokenize("x", true, false); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Tokenize after Close: %v", err)
	}
}

// A fatal decode error or a panic poisons its model only: its requests
// fail with ErrPoisoned while another model on the same device goes on.
func TestPoison(t *testing.T) {
	for _, fault := range []struct {
		name string
		f    func() error
	}{
		{"decode error", func() error { return errors.New("llama_decode failed with code -3") }},
		{"panic", func() error { panic("driver fault") }},
	} {
		t.Run(fault.name, func(t *testing.T) {
			bad := loadStories(t, engine.LoadParams{Parallel: 1})
			good := loadStories(t, engine.LoadParams{Parallel: 1})
			prompt, _ := bad.Tokenize("Once upon a time", true, false)
			bad.(*model).testFault.Store(&fault.f)
			if _, err := bad.Generate(context.Background(), engine.GenerateRequest{Prompt: prompt}, nil); !errors.Is(err, engine.ErrPoisoned) {
				t.Fatalf("request on the faulty model: %v", err)
			}
			if !bad.Stats().Poisoned {
				t.Error("Stats does not report the poisoning")
			}
			if _, err := bad.Generate(context.Background(), engine.GenerateRequest{Prompt: prompt}, nil); !errors.Is(err, engine.ErrPoisoned) {
				t.Errorf("later request: %v", err)
			}
			if out, _ := generate(t, good, "Once upon a time", engine.GenerateRequest{MaxTokens: 3}); out != ", there was" {
				t.Errorf("healthy model: %q", out)
			}
			if err := bad.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

// Several models on one device take turns and all finish.
func TestModelsShareDevice(t *testing.T) {
	a := loadStories(t, engine.LoadParams{Parallel: 2})
	b := loadStories(t, engine.LoadParams{Parallel: 2})
	var wg sync.WaitGroup
	outs := make([]string, 4)
	for i := 0; i < 4; i++ {
		m := a
		if i%2 == 1 {
			m = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], _ = generate(t, m, "Once upon a time", engine.GenerateRequest{MaxTokens: 20})
		}()
	}
	wg.Wait()
	for i, o := range outs {
		if o != outs[0] {
			t.Errorf("output %d = %q, want %q", i, o, outs[0])
		}
	}
}

func TestRandomModel(t *testing.T) {
	tmpl := "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
	path := writeRandomModel(t, ggufgen.LlamaParams{Layers: 2, Embd: 64, Heads: 4, HeadsKV: 2, FF: 128, Vocab: 600,
		Context: 1024, ChatTemplate: tmpl, SpecialTokens: []string{"<|im_start|>", "<|im_end|>"}, WeightType: "q8_0"})
	m := loadModelT(t, engine.LoadParams{Path: path, Parallel: 2})
	info := m.Info()
	if info.ChatTemplate != tmpl || info.VocabSize != 600 || info.TrainedContextLength != 1024 || info.EmbeddingLength != 64 {
		t.Errorf("Info = %+v", info)
	}
	toks, err := m.Tokenize("<|im_start|>user\nhello there<|im_end|>", true, true)
	if err != nil || len(toks) < 3 || toks[1] != 259 {
		t.Fatalf("Tokenize with specials = %v, %v", toks, err)
	}
	_, res := generate(t, m, "", engine.GenerateRequest{Prompt: toks, MaxTokens: 16})
	if res.CompletionTokens == 0 {
		t.Errorf("no tokens generated: %+v", res)
	}
	if v, err := m.Embed(context.Background(), toks); err != nil || len(v) != 64 {
		t.Errorf("Embed: %d, %v", len(v), err)
	}
}

func TestLoadErrors(t *testing.T) {
	e := newTestEngine(t)
	ctx := context.Background()
	bad := []engine.LoadParams{
		{Path: "/nonexistent.gguf"},
		{Path: storiesPath(t), Parallel: 1000},
		{Path: storiesPath(t), FlashAttention: "sometimes"},
		{Path: storiesPath(t), KVCacheType: "q2_k"},
		{Path: storiesPath(t), KVCacheType: "q8_0", FlashAttention: "disabled"},
		// stories260K's heads have 8 elements: too small to quantise.
		{Path: storiesPath(t), KVCacheType: "q8_0"},
	}
	for _, p := range bad {
		if m, err := e.Load(ctx, p); err == nil {
			_ = m.Close()
			t.Errorf("Load(%+v) succeeded", p)
		}
	}
	notGGUF := writeFile(t, "junk.gguf", []byte("this is not a model"))
	if _, err := e.Load(ctx, engine.LoadParams{Path: notGGUF}); err == nil {
		t.Error("junk file loaded")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.Load(cancelled, engine.LoadParams{Path: storiesPath(t)}); !errors.Is(err, context.Canceled) {
		t.Errorf("Load with an ended context: %v", err)
	}
	// Other options load and serve.
	path := writeRandomModel(t, ggufgen.LlamaParams{Layers: 1, Embd: 128, Heads: 4, FF: 256, Vocab: 300})
	for _, p := range []engine.LoadParams{
		{Path: path, FlashAttention: "enabled", KVCacheType: "q8_0", Parallel: 1},
		{Path: path, FlashAttention: "auto", KVCacheType: "q4_0", Parallel: 2},
		{Path: storiesPath(t), FlashAttention: "enabled", Parallel: 1},
		{Path: storiesPath(t), FlashAttention: "disabled", Threads: 1, Parallel: 1},
	} {
		m := loadModelT(t, p)
		if _, res := generate(t, m, "Once upon a time", engine.GenerateRequest{MaxTokens: 3}); res.CompletionTokens == 0 {
			t.Errorf("options %+v: no output", p)
		}
	}
}

func ptr[T any](v T) *T { return &v }

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
