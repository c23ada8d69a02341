// Package enginefake is a pure-Go engine.Engine for fast tests of the
// layers above the engine. Its models produce deterministic text from the
// prompt, after configurable delays, and admit, queue, cancel, stream and
// stop requests with the very code the llama.cpp engine uses
// (engine/internal/sched), so ErrQueueFull, slot release on cancellation,
// stop sequences, max tokens, context limits and Stats behave identically.
package enginefake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/engine/internal/sched"
)

// Tokenizer selects how the fake splits text into tokens.
type Tokenizer int

const (
	// Bytes makes every byte a token (vocabulary of 258: BOS, EOS, bytes).
	Bytes Tokenizer = iota
	// Words makes every word, with its leading space, and every
	// punctuation mark a token; the vocabulary grows as text is seen.
	Words
)

// Special tokens of both tokenizers.
const (
	BOS = 0
	EOS = 1
)

const (
	bosText       = "<s>"
	eosText       = "</s>"
	wordVocabSize = 1 << 16
)

// Prompt is what a Respond function sees.
type Prompt struct {
	// Text is the detokenized prompt, special tokens included.
	Text    string
	Tokens  []int
	Grammar string
}

// Options configure the fake engine and the models it loads.
type Options struct {
	Tokenizer Tokenizer
	// Respond returns the completion for a prompt; the model ends it with
	// EOS. Nil: DefaultRespond.
	Respond func(Prompt) string
	// TokenDelay is the duration of one decode step (one token for every
	// active sequence); PromptTokenDelay is added per uncached prompt token
	// in the step that processes a prompt; LoadDelay delays Load.
	TokenDelay       time.Duration
	PromptTokenDelay time.Duration
	LoadDelay        time.Duration
	// LoadError, when set, fails every Load.
	LoadError error
	// Model description reported by Info (defaults: "fake", 4096, 64).
	Architecture         string
	TrainedContextLength int
	EmbeddingLength      int
	ChatTemplate         string
	// Backends and Version reported by the engine (defaults: ["cpu"],
	// "fake").
	Backends []string
	Version  string
}

// DefaultRespond derives a sentence of 12 pseudo-random words from a hash
// of the prompt, so equal prompts get equal completions.
func DefaultRespond(p Prompt) string {
	words := []string{"the", "cat", "sat", "on", "a", "warm", "mat", "and", "dreamed", "of", "blue", "fish",
		"while", "rain", "fell", "softly", "over", "quiet", "hills", "near", "old", "town"}
	h := fnv.New64a()
	h.Write([]byte(p.Text))
	rng := rand.New(rand.NewPCG(h.Sum64(), 0))
	var b strings.Builder
	for i := 0; i < 12; i++ {
		w := words[rng.IntN(len(words))]
		if i == 0 {
			w = strings.ToUpper(w[:1]) + w[1:]
		} else {
			b.WriteByte(' ')
		}
		b.WriteString(w)
	}
	b.WriteByte('.')
	return b.String()
}

// Engine is the fake engine.
type Engine struct {
	opts Options

	mu     sync.Mutex
	models []*Model
	loads  int
}

var _ engine.Engine = (*Engine)(nil)

// New returns a fake engine.
func New(opts Options) *Engine {
	if opts.Respond == nil {
		opts.Respond = DefaultRespond
	}
	if opts.Architecture == "" {
		opts.Architecture = "fake"
	}
	if opts.TrainedContextLength == 0 {
		opts.TrainedContextLength = 4096
	}
	if opts.EmbeddingLength == 0 {
		opts.EmbeddingLength = 64
	}
	if opts.Backends == nil {
		opts.Backends = []string{"cpu"}
	}
	if opts.Version == "" {
		opts.Version = "fake"
	}
	return &Engine{opts: opts}
}

func (e *Engine) Backends() []string { return append([]string(nil), e.opts.Backends...) }
func (e *Engine) Version() string    { return e.opts.Version }

// Loads counts calls to Load that succeeded.
func (e *Engine) Loads() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.loads
}

// Models lists the models loaded and not yet closed.
func (e *Engine) Models() []*Model {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*Model
	for _, m := range e.models {
		if !m.closed.Load() {
			out = append(out, m)
		}
	}
	return out
}

// Load "loads" a model after LoadDelay. The file is not read; Path only
// has to be set.
func (e *Engine) Load(ctx context.Context, p engine.LoadParams) (engine.Model, error) {
	if p.Path == "" {
		return nil, errors.New("loading: no model path")
	}
	parallel, queue, err := sched.Slots(p)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", p.Path, err)
	}
	if p.ContextLength < 0 {
		return nil, fmt.Errorf("loading %s: context length %d is negative", p.Path, p.ContextLength)
	}
	if p.Progress != nil {
		p.Progress(0)
	}
	if e.opts.LoadDelay > 0 {
		t := time.NewTimer(e.opts.LoadDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if e.opts.LoadError != nil {
		return nil, fmt.Errorf("loading %s: %w", p.Path, e.opts.LoadError)
	}
	if p.Progress != nil {
		p.Progress(1)
	}
	m := newModel(e.opts, p, parallel, queue)
	e.mu.Lock()
	e.models = append(e.models, m)
	e.loads++
	e.mu.Unlock()
	return m, nil
}

// Model is a fake loaded model.
type Model struct {
	opts   Options
	params engine.LoadParams
	info   engine.Info
	queue  *sched.Queue
	vocab  *vocab

	wake   chan struct{}
	quit   chan struct{}
	exited chan struct{}

	closeOnce sync.Once
	closed    atomic.Bool
	poisoned  atomic.Bool
	poisonCh  chan poisonMsg

	promptTokens atomic.Int64
	genTokens    atomic.Int64

	slots    []*slot // worker only
	useCount uint64  // worker only: numbers slot assignments
}

var _ engine.Model = (*Model)(nil)

func newModel(opts Options, p engine.LoadParams, parallel, queue int) *Model {
	m := &Model{
		opts:     opts,
		params:   p,
		queue:    sched.NewQueue(parallel, queue),
		vocab:    newVocab(opts.Tokenizer),
		wake:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		exited:   make(chan struct{}),
		poisonCh: make(chan poisonMsg),
	}
	m.info = engine.Info{
		Architecture:         opts.Architecture,
		ContextLength:        sched.ContextLength(p.ContextLength, opts.TrainedContextLength),
		TrainedContextLength: opts.TrainedContextLength,
		Parallel:             parallel,
		VocabSize:            m.vocab.size(),
		EmbeddingLength:      opts.EmbeddingLength,
		ChatTemplate:         opts.ChatTemplate,
		BOS:                  bosText,
		EOS:                  eosText,
		AddBOS:               true,
		SizeBytes:            1 << 20,
	}
	m.slots = make([]*slot, parallel)
	for i := range m.slots {
		m.slots[i] = &slot{}
	}
	go m.run()
	return m
}

// Params returns the LoadParams the model was loaded with.
func (m *Model) Params() engine.LoadParams { return m.params }

func (m *Model) Info() engine.Info { return m.info }

func (m *Model) Stats() engine.Stats {
	active, queued := m.queue.Counts()
	return engine.Stats{
		Active:          active,
		Queued:          queued,
		Slots:           m.info.Parallel,
		PromptTokens:    m.promptTokens.Load(),
		GeneratedTokens: m.genTokens.Load(),
		Poisoned:        m.poisoned.Load(),
	}
}

func (m *Model) Tokenize(text string, addSpecial, parseSpecial bool) ([]int, error) {
	if m.closed.Load() {
		return nil, engine.ErrClosed
	}
	return m.vocab.tokenize(text, addSpecial, parseSpecial), nil
}

func (m *Model) Detokenize(tokens []int) (string, error) {
	if err := sched.ValidateTokens(tokens, m.vocab.size()); err != nil {
		return "", err
	}
	var b strings.Builder
	for _, t := range tokens {
		b.WriteString(m.vocab.piece(t))
	}
	return b.String(), nil
}

// SchemaToGrammar checks that schema is JSON and returns a placeholder
// grammar carrying it; the fake does not constrain decoding (use Respond).
func (m *Model) SchemaToGrammar(schema []byte) (string, error) {
	if !json.Valid(schema) {
		return "", fmt.Errorf("%w: the JSON schema is invalid", engine.ErrInvalidGrammar)
	}
	var compact bytes.Buffer
	_ = json.Compact(&compact, schema)
	return "root ::= object # schema " + compact.String(), nil
}

// checkGrammar accepts any text that defines a root rule.
func checkGrammar(g string) error {
	if !strings.Contains(g, "root") || !strings.Contains(g, "::=") {
		return fmt.Errorf("%w: no root rule", engine.ErrInvalidGrammar)
	}
	return nil
}

func (m *Model) admit(r *sched.Request) error {
	if m.closed.Load() {
		return engine.ErrClosed
	}
	if err := m.queue.Admit(r, engine.ErrQueueFull); err != nil {
		return err
	}
	m.signal()
	return nil
}

func (m *Model) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Model) Generate(ctx context.Context, req engine.GenerateRequest, onChunk func(engine.Chunk) error) (engine.Result, error) {
	if err := ctx.Err(); err != nil {
		return engine.Result{FinishReason: engine.FinishCancelled, PromptTokens: len(req.Prompt)}, err
	}
	if err := sched.Validate(&req, m.vocab.size(), m.info.ContextLength); err != nil {
		return engine.Result{}, err
	}
	if len(req.Images) > 0 {
		// The fake has no projector; vision runs on the real engine.
		return engine.Result{}, fmt.Errorf("%w: this model does not accept images: it reads text only", engine.ErrInvalidRequest)
	}
	if req.Grammar != "" {
		if err := checkGrammar(req.Grammar); err != nil {
			return engine.Result{}, err
		}
	}
	r := sched.NewGenerate(req, time.Now())
	if err := m.admit(r); err != nil {
		return engine.Result{}, err
	}
	defer func() {
		m.queue.Leave(r)
		if r.Cancelled() {
			m.signal()
		}
	}()
	return r.Wait(ctx, onChunk)
}

func (m *Model) Embed(ctx context.Context, tokens []int) ([]float32, error) {
	if len(tokens) == 0 {
		return nil, fmt.Errorf("%w: no tokens to embed", engine.ErrInvalidRequest)
	}
	if err := sched.ValidateTokens(tokens, m.vocab.size()); err != nil {
		return nil, err
	}
	if len(tokens) > m.info.ContextLength {
		return nil, fmt.Errorf("%w: %d tokens, context %d", engine.ErrContextLengthExceeded, len(tokens), m.info.ContextLength)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := sched.NewEmbed(tokens, time.Now())
	if err := m.admit(r); err != nil {
		return nil, err
	}
	defer m.queue.Leave(r)
	return r.WaitEmbed(ctx)
}

// Poison simulates a fatal engine error: requests in flight and later ones
// fail with ErrPoisoned, and Stats reports it.
// Poison returns once the worker has acted.
func (m *Model) Poison(cause error) {
	msg := poisonMsg{cause: cause, done: make(chan struct{})}
	select {
	case m.poisonCh <- msg:
		<-msg.done
	case <-m.exited:
	}
}

type poisonMsg struct {
	cause error
	done  chan struct{}
}

// Close fails queued and running requests with ErrClosed. It is idempotent.
func (m *Model) Close() error {
	m.closeOnce.Do(func() {
		m.closed.Store(true)
		for _, r := range m.queue.Close(engine.ErrClosed) {
			r.Fail(engine.ErrClosed)
		}
		close(m.quit)
		<-m.exited
	})
	return nil
}

// slot is one fake sequence.
type slot struct {
	cache    []int
	lastUsed uint64

	req       *sched.Request
	pending   int   // uncached prompt tokens, processed in the next step
	out       []int // completion tokens still to emit, EOS last
	text      *sched.TextStream
	nPrompt   int
	nCached   int
	nGen      int
	tAssigned time.Time
	tFirst    time.Time
}

// run is the model's worker: like the llama.cpp engine's device worker it
// assigns free sequences to waiting requests, then advances every active
// sequence by one token per step.
func (m *Model) run() {
	defer close(m.exited)
	for {
		select {
		case <-m.quit:
			m.failActive(engine.ErrClosed)
			return
		case msg := <-m.poisonCh:
			m.poison(msg.cause)
			close(msg.done)
			continue
		default:
		}
		m.reap()
		m.assign()
		active := m.activeSlots()
		m.queue.SetActive(len(active))
		if len(active) == 0 {
			select {
			case <-m.quit:
			case <-m.wake:
			case msg := <-m.poisonCh:
				m.poison(msg.cause)
				close(msg.done)
			}
			continue
		}
		delay := m.opts.TokenDelay
		for _, s := range active {
			delay += time.Duration(s.pending) * m.opts.PromptTokenDelay
		}
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-m.quit:
				t.Stop()
				continue
			}
		}
		for _, s := range active {
			if !s.req.Cancelled() {
				m.advance(s)
			}
		}
		m.queue.SetActive(len(m.activeSlots()))
	}
}

func (m *Model) activeSlots() []*slot {
	var out []*slot
	for _, s := range m.slots {
		if s.req != nil {
			out = append(out, s)
		}
	}
	return out
}

func (m *Model) reap() {
	for _, s := range m.slots {
		if s.req != nil && s.req.Cancelled() {
			s.cache = nil
			m.finish(s, engine.FinishCancelled, context.Canceled)
		}
	}
}

func (m *Model) assign() {
	var free []*slot
	for _, s := range m.slots {
		if s.req == nil {
			free = append(free, s)
		}
	}
	if len(free) == 0 || m.poisoned.Load() {
		return
	}
	for _, r := range m.queue.Take(len(free)) {
		if r.IsEmbed() {
			m.promptTokens.Add(int64(len(r.EmbedTokens)))
			r.FinishEmbed(embedding(r.EmbedTokens, m.opts.EmbeddingLength), nil)
			continue
		}
		best := sched.PickSlot(free, r.Gen.Prompt)
		s := free[best]
		free = append(free[:best], free[best+1:]...)
		m.start(s, r)
	}
}

func (s *slot) CachedTokens() []int { return s.cache }
func (s *slot) LastUse() uint64     { return s.lastUsed }

func (m *Model) start(s *slot, r *sched.Request) {
	prompt := r.Gen.Prompt
	keep := min(sched.CommonPrefix(s.cache, prompt), len(prompt)-1)
	text, _ := m.Detokenize(prompt)
	reply := m.opts.Respond(Prompt{Text: text, Tokens: prompt, Grammar: r.Gen.Grammar})
	out := m.vocab.tokenize(reply, false, false)
	m.useCount++
	*s = slot{
		lastUsed:  m.useCount,
		cache:     append(s.cache[:keep:keep], prompt[keep:]...),
		req:       r,
		pending:   len(prompt) - keep,
		out:       append(out, EOS),
		text:      sched.NewTextStream(r.Gen.Stop),
		nPrompt:   len(prompt),
		nCached:   keep,
		tAssigned: time.Now(),
	}
	m.promptTokens.Add(int64(s.pending))
}

// advance emits the slot's next token under the same rules as the real
// engine: EOS ends with FinishStop, a stop sequence too, MaxTokens and a
// full context with FinishLength.
func (m *Model) advance(s *slot) {
	r := s.req
	if s.tFirst.IsZero() {
		s.tFirst = time.Now()
		s.pending = 0
	}
	tok := s.out[0]
	s.out = s.out[1:]
	s.nGen++
	m.genTokens.Add(1)
	if tok == EOS {
		m.finish(s, engine.FinishStop, nil)
		return
	}
	s.cache = append(s.cache, tok)
	piece := m.vocab.piece(tok)
	var lp *engine.TokenLogprob
	if r.Gen.Logprobs {
		v := engine.TokenLogprob{Token: piece, Logprob: 0, Bytes: []byte(piece)}
		if r.Gen.TopLogprobs > 0 {
			v.Top = []engine.TopLogprob{{Token: piece, Logprob: 0, Bytes: []byte(piece)}}
		}
		lp = &v
	}
	chunk, stopped := s.text.Push(piece, lp)
	r.Emit(chunk, s.nGen)
	switch {
	case stopped:
		m.finish(s, engine.FinishStop, nil)
	case r.Gen.MaxTokens > 0 && s.nGen >= r.Gen.MaxTokens:
		m.finish(s, engine.FinishLength, nil)
	case s.nPrompt+s.nGen >= m.info.ContextLength:
		m.finish(s, engine.FinishLength, nil)
	}
}

func (m *Model) finish(s *slot, reason engine.FinishReason, err error) {
	r := s.req
	now := time.Now()
	if err == nil {
		r.Emit(s.text.Flush(), s.nGen)
	}
	res := engine.Result{
		FinishReason:     reason,
		PromptTokens:     s.nPrompt,
		CompletionTokens: s.nGen,
		CachedTokens:     s.nCached,
		QueueTime:        s.tAssigned.Sub(r.Enqueued),
	}
	if reason == engine.FinishStop {
		res.StopSequence = s.text.Matched()
	}
	if !s.tFirst.IsZero() {
		res.PromptTime = s.tFirst.Sub(s.tAssigned)
		res.GenerateTime = now.Sub(s.tFirst)
	} else {
		res.PromptTime = now.Sub(s.tAssigned)
	}
	r.Finish(res, err)
	*s = slot{cache: s.cache, lastUsed: s.lastUsed}
}

func (m *Model) failActive(err error) {
	for _, s := range m.slots {
		if s.req != nil {
			r := s.req
			*s = slot{}
			r.Fail(err)
		}
	}
	m.queue.SetActive(0)
}

func (m *Model) poison(cause error) {
	if !m.poisoned.CompareAndSwap(false, true) {
		return
	}
	err := fmt.Errorf("%w: %w", engine.ErrPoisoned, cause)
	for _, r := range m.queue.Close(err) {
		r.Fail(err)
	}
	m.failActive(err)
}

// embedding is a deterministic unit vector derived from the tokens.
func embedding(tokens []int, n int) []float32 {
	h := fnv.New64a()
	for _, t := range tokens {
		fmt.Fprintf(h, "%d,", t)
	}
	rng := rand.New(rand.NewPCG(h.Sum64(), 1))
	v := make([]float32, n)
	var norm float64
	for i := range v {
		x := rng.NormFloat64()
		v[i] = float32(x)
		norm += x * x
	}
	norm = math.Sqrt(norm)
	for i := range v {
		v[i] = float32(float64(v[i]) / norm)
	}
	return v
}

// vocab is the fake tokenizer.
type vocab struct {
	kind Tokenizer

	mu    sync.RWMutex
	words []string
	ids   map[string]int
}

func newVocab(kind Tokenizer) *vocab {
	return &vocab{kind: kind, words: []string{bosText, eosText}, ids: map[string]int{bosText: BOS, eosText: EOS}}
}

func (v *vocab) size() int {
	if v.kind == Bytes {
		return 258
	}
	return wordVocabSize
}

func (v *vocab) piece(t int) string {
	switch {
	case t == BOS:
		return bosText
	case t == EOS:
		return eosText
	case v.kind == Bytes:
		return string([]byte{byte(t - 2)})
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	if t < len(v.words) {
		return v.words[t]
	}
	return ""
}

func (v *vocab) tokenize(text string, addSpecial, parseSpecial bool) []int {
	var out []int
	if addSpecial {
		out = append(out, BOS)
	}
	for text != "" {
		if parseSpecial {
			if strings.HasPrefix(text, bosText) {
				out = append(out, BOS)
				text = text[len(bosText):]
				continue
			}
			if strings.HasPrefix(text, eosText) {
				out = append(out, EOS)
				text = text[len(eosText):]
				continue
			}
		}
		var n int
		if v.kind == Bytes {
			out = append(out, int(text[0])+2)
			n = 1
		} else {
			n = wordLen(text)
			out = append(out, v.intern(text[:n]))
		}
		text = text[n:]
	}
	return out
}

// wordLen is the length of the next word piece: leading spaces, then
// letters and digits, or a single other character.
func wordLen(s string) int {
	i := 0
	for i < len(s) && s[i] == ' ' {
		i++
	}
	start := i
	for j, r := range s[i:] {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			if j == 0 {
				// One punctuation mark, symbol or other rune.
				_, size := firstRune(s[start:])
				return start + size
			}
			return start + j
		}
	}
	if start == len(s) {
		return len(s)
	}
	return len(s)
}

func firstRune(s string) (rune, int) { return utf8.DecodeRuneInString(s) }

func (v *vocab) intern(w string) int {
	v.mu.RLock()
	id, ok := v.ids[w]
	v.mu.RUnlock()
	if ok {
		return id
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if id, ok := v.ids[w]; ok {
		return id
	}
	if len(v.words) >= wordVocabSize {
		return EOS // the vocabulary is full; a test never gets here
	}
	id = len(v.words)
	v.words = append(v.words, w)
	v.ids[w] = id
	return id
}
