package llamacpp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ollama/ollama/llama"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/engine/internal/sched"
)

// model is one loaded model. Its C objects are used by the device worker;
// callers' goroutines only read the vocabulary (tokenising, grammar
// checks), under cmu so that Close cannot free it underneath them.
type model struct {
	log  *slog.Logger
	dev  *device
	cfg  config
	info engine.Info

	cm    *cModel
	cc    *cContext
	batch *cBatch
	// proj is the vision projector (nil for a text-only model) and ebatch
	// the batch that carries image embedding rows.
	proj   *projector
	ebatch *cBatch

	cparams contextParams // what cc was created with
	ctxLen  int           // enforced per-sequence context
	budget  int           // most tokens decoded per step
	nVocab  int
	nEmbd   int
	pooling int
	pieces  [][]byte // per token, as a completion renders it
	eog     []bool

	queue  *sched.Queue
	slots  []*slot // worker only
	prefRR int     // worker only: where prefill budget starts next step
	genRR  int     // worker only: same for decode tokens when budget is short
	// useCount numbers slot assignments (worker only).
	useCount uint64

	cmu    sync.RWMutex
	freed  bool
	closed atomic.Bool

	closeOnce sync.Once
	poisoned  atomic.Bool
	poisonErr error // set once by the worker with poisoned

	promptTokens atomic.Int64
	genTokens    atomic.Int64

	// testFault, set by tests, runs before each batch decode; an error
	// it returns (or a panic) stands for a failed decode.
	testFault atomic.Pointer[func() error]
}

var _ engine.Model = (*model)(nil)

func loadModel(cfg config, plc placement, log *slog.Logger) (*model, error) {
	cm, err := loadCModel(cfg.Path, modelParams{
		devices:   plc.devices,
		gpuLayers: plc.gpuLayers,
		mainGPU:   plc.mainGPU,
		split:     plc.split,
		progress:  cfg.Progress,
	})
	if err != nil {
		return nil, err
	}
	m := &model{log: log, cfg: cfg, cm: cm}
	ok := false
	defer func() {
		if !ok {
			m.freeC()
		}
	}()
	if m.cm.hasEncoder() {
		return nil, errors.New("encoder-decoder models are not supported")
	}
	if cfg.KVCacheType != "f16" {
		if err := m.checkQuantizedKV(); err != nil {
			return nil, err
		}
	}
	trained := m.cm.nCtxTrain()
	m.ctxLen = sched.ContextLength(cfg.ContextLength, trained)
	m.cparams = contextParams{
		nCtx:    m.ctxLen * cfg.Parallel,
		nBatch:  batchSize * cfg.Parallel,
		nUbatch: batchSize,
		nSeq:    cfg.Parallel,
		threads: cfg.Threads,
		flash:   cfg.flash,
		kvType:  cfg.KVCacheType,
	}
	if m.cc, err = newCContext(cm, m.cparams); err != nil {
		return nil, fmt.Errorf("%w (context %d × %d sequences)", err, m.ctxLen, cfg.Parallel)
	}
	// llama.cpp rounds each sequence's cells up to a multiple of 256; the
	// context asked for is what the engine enforces.
	if seq := m.cc.nCtxSeq(); seq < m.ctxLen {
		m.ctxLen = seq
	}
	m.budget = min(m.cc.nBatch(), m.cc.nUbatch())
	if m.batch, err = newCBatch(m.budget); err != nil {
		return nil, err
	}
	if cfg.ProjectorPath != "" {
		if m.proj, err = loadProjector(cfg.ProjectorPath, m.cm, cfg.Threads, plc.gpuLayers != 0); err != nil {
			return nil, err
		}
		if m.ebatch, err = newCEmbdBatch(m.budget, m.proj.nEmbd); err != nil {
			return nil, err
		}
	}
	m.nVocab = m.cm.nVocab()
	m.nEmbd = m.cm.nEmbd()
	m.pooling = m.cc.poolingType()
	m.pieces = make([][]byte, m.nVocab)
	m.eog = make([]bool, m.nVocab)
	for t := range m.nVocab {
		m.pieces[t] = m.cm.piece(t, false)
		m.eog[t] = m.cm.isEOG(t)
	}
	arch, _ := m.cm.meta("general.architecture")
	tmpl, _ := m.cm.meta("tokenizer.chat_template")
	m.info = engine.Info{
		Architecture:         arch,
		ContextLength:        m.ctxLen,
		TrainedContextLength: trained,
		Parallel:             cfg.Parallel,
		VocabSize:            m.nVocab,
		EmbeddingLength:      m.nEmbd,
		ChatTemplate:         tmpl,
		AddBOS:               m.cm.addBOS(),
		SizeBytes:            m.cm.size(),
		Vision:               m.proj != nil,
	}
	if b := m.cm.bos(); b >= 0 && b < m.nVocab {
		m.info.BOS = string(m.cm.piece(b, true))
	}
	if e := m.cm.eos(); e >= 0 && e < m.nVocab {
		m.info.EOS = string(m.cm.piece(e, true))
	}
	m.queue = sched.NewQueue(cfg.Parallel, cfg.QueueSize)
	m.slots = make([]*slot, cfg.Parallel)
	for i := range m.slots {
		m.slots[i] = &slot{id: i, outIdx: -1}
	}
	ok = true
	return m, nil
}

// checkQuantizedKV refuses a quantised KV cache for attention heads that
// are not a whole number of 32-element blocks: ggml asserts (aborting the
// process) when it quantises such rows.
func (m *model) checkQuantizedKV() error {
	arch, _ := m.cm.meta("general.architecture")
	head := 0
	if n := m.cm.nHead(); n > 0 {
		head = m.cm.nEmbd() / n
	}
	dims := map[string]int{"key": head, "value": head}
	for name := range dims {
		if s, ok := m.cm.meta(arch + ".attention." + name + "_length"); ok {
			if n, err := strconv.Atoi(s); err == nil {
				dims[name] = n
			}
		}
	}
	for name, d := range dims {
		if d <= 0 || d%32 != 0 {
			return fmt.Errorf("a %s KV cache needs attention %s heads of a multiple of 32 elements; this model's are %d", m.cfg.KVCacheType, name, d)
		}
	}
	return nil
}

// freeC releases the C objects. It runs on the device worker (or on the
// loading thread when a load is abandoned) once nothing else uses them.
func (m *model) freeC() {
	m.cmu.Lock()
	defer m.cmu.Unlock()
	if m.freed {
		return
	}
	m.freed = true
	m.batch.free()
	m.ebatch.free()
	// The projector refers to the model; it goes first.
	m.proj.free()
	m.proj = nil
	m.cc.free()
	m.cm.free()
}

func (m *model) Info() engine.Info { return m.info }

func (m *model) Stats() engine.Stats {
	active, queued := m.queue.Counts()
	return engine.Stats{
		Active:          active,
		Queued:          queued,
		Slots:           m.cfg.Parallel,
		PromptTokens:    m.promptTokens.Load(),
		GeneratedTokens: m.genTokens.Load(),
		Poisoned:        m.poisoned.Load(),
	}
}

// withVocab runs f while the model's C objects are guaranteed alive.
func (m *model) withVocab(f func() error) error {
	m.cmu.RLock()
	defer m.cmu.RUnlock()
	if m.freed || m.closed.Load() {
		return engine.ErrClosed
	}
	return f()
}

func (m *model) Tokenize(text string, addSpecial, parseSpecial bool) ([]int, error) {
	var toks []int
	err := m.withVocab(func() error {
		var err error
		toks, err = m.cm.tokenize(text, addSpecial, parseSpecial)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tokenizing: %w", err)
	}
	return toks, nil
}

func (m *model) Detokenize(tokens []int) (string, error) {
	if err := sched.ValidateTokens(tokens, m.nVocab); err != nil {
		return "", err
	}
	var s string
	err := m.withVocab(func() error {
		var err error
		s, err = m.cm.detokenize(tokens)
		return err
	})
	return s, err
}

func (m *model) SchemaToGrammar(schema []byte) (string, error) {
	g := llama.SchemaToGrammar(schema)
	if g == nil {
		return "", fmt.Errorf("%w: the JSON schema is invalid or unsupported", engine.ErrInvalidGrammar)
	}
	if err := m.checkGrammar(string(g)); err != nil {
		return "", fmt.Errorf("converting JSON schema: %w", err)
	}
	return string(g), nil
}

// checkGrammar parses a grammar against the vocabulary, so that a bad one
// is refused before it is queued.
func (m *model) checkGrammar(gbnf string) error {
	return m.withVocab(func() error {
		g, err := newGrammar(m.cm, gbnf)
		if err != nil {
			return fmt.Errorf("%w: %w", engine.ErrInvalidGrammar, err)
		}
		g.free()
		return nil
	})
}

func (m *model) admit(r *sched.Request) error {
	if m.closed.Load() {
		return engine.ErrClosed
	}
	if err := m.queue.Admit(r, engine.ErrQueueFull); err != nil {
		return err
	}
	m.dev.signal()
	return nil
}

func (m *model) Generate(ctx context.Context, req engine.GenerateRequest, onChunk func(engine.Chunk) error) (engine.Result, error) {
	if err := ctx.Err(); err != nil {
		return engine.Result{FinishReason: engine.FinishCancelled, PromptTokens: len(req.Prompt)}, err
	}
	if err := sched.Validate(&req, m.nVocab, m.ctxLen); err != nil {
		return engine.Result{}, err
	}
	if len(req.Images) > 0 && !m.info.Vision {
		return engine.Result{}, fmt.Errorf("%w: this model does not accept images: it reads text only", engine.ErrInvalidRequest)
	}
	if req.Grammar != "" {
		if err := m.checkGrammar(req.Grammar); err != nil {
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
			m.dev.signal()
		}
	}()
	return r.Wait(ctx, onChunk)
}

func (m *model) Embed(ctx context.Context, tokens []int) ([]float32, error) {
	if len(tokens) == 0 {
		return nil, fmt.Errorf("%w: no tokens to embed", engine.ErrInvalidRequest)
	}
	if err := sched.ValidateTokens(tokens, m.nVocab); err != nil {
		return nil, err
	}
	if len(tokens) > m.ctxLen {
		return nil, fmt.Errorf("%w: %d tokens, context %d", engine.ErrContextLengthExceeded, len(tokens), m.ctxLen)
	}
	if m.pooling != poolingNone && len(tokens) > m.budget {
		// Pooled (non-causal) models need the whole input in one batch.
		return nil, fmt.Errorf("%w: %d tokens, batch %d", engine.ErrContextLengthExceeded, len(tokens), m.budget)
	}
	if m.pooling == poolingRank {
		return nil, engine.ErrNoEmbeddings
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

// Close fails the queued and running requests with ErrClosed and frees
// the model on its device worker. It is idempotent.
func (m *model) Close() error {
	m.closeOnce.Do(func() {
		m.closed.Store(true)
		for _, r := range m.queue.Close(engine.ErrClosed) {
			r.Fail(engine.ErrClosed)
		}
		if m.dev == nil {
			m.freeC()
			return
		}
		m.dev.remove(m, func() {
			for _, s := range m.slots {
				if s.req != nil {
					m.finish(s, engine.FinishStop, engine.ErrClosed)
				}
			}
			m.freeC()
		})
		m.log.Info("Model unloaded", "path", m.cfg.Path)
	})
	return nil
}
