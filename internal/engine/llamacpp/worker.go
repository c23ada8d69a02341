package llamacpp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/engine/internal/sched"
)

// device is the worker that owns all llama.cpp calls for the models on
// one device.
type device struct {
	key string
	log *slog.Logger

	wake  chan struct{}
	calls chan func()

	mu     sync.Mutex
	models []*model
	rr     int
}

func newDevice(key string, log *slog.Logger) *device {
	d := &device{key: key, log: log, wake: make(chan struct{}, 1), calls: make(chan func())}
	go d.run()
	return d
}

// signal wakes the worker when it idles.
func (d *device) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// do runs f on the worker's thread and waits for it.
func (d *device) do(f func()) {
	done := make(chan struct{})
	d.calls <- func() {
		defer close(done)
		f()
	}
	<-done
}

func (d *device) add(m *model) {
	d.mu.Lock()
	d.models = append(d.models, m)
	d.mu.Unlock()
	d.signal()
}

// remove runs release on the worker, after any step of m in progress, and
// forgets m.
func (d *device) remove(m *model, release func()) {
	d.do(func() {
		d.mu.Lock()
		if i := slices.Index(d.models, m); i >= 0 {
			d.models = slices.Delete(d.models, i, i+1)
		}
		d.mu.Unlock()
		release()
	})
}

// run is the worker loop. The goroutine stays locked to its OS thread for
// its whole life: llama.cpp and GPU drivers may keep per-thread state.
func (d *device) run() {
	runtime.LockOSThread()
	for {
		select {
		case f := <-d.calls:
			f()
			continue
		default:
		}
		if m := d.next(); m != nil {
			m.step()
			continue
		}
		select {
		case f := <-d.calls:
			f()
		case <-d.wake:
		}
	}
}

// next picks the next model with work, round-robin, so that models
// sharing a device take turns step by step.
func (d *device) next() *model {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := len(d.models)
	for i := 0; i < n; i++ {
		k := (d.rr + i) % n
		if d.models[k].hasWork() {
			d.rr = k + 1
			return d.models[k]
		}
	}
	return nil
}

// slot is one sequence of a model's context. Only the worker touches it.
type slot struct {
	id int
	// lastUsed orders sequences by their last assignment.
	lastUsed uint64
	// cache lists the tokens whose keys and values are in the sequence,
	// for prefix reuse by the next request landing here.
	cache []int

	req        *sched.Request
	pending    []int // prompt tokens not yet decoded
	generating bool  // prompt done; last is the next token to decode
	last       int
	sampler    *sampler
	grammar    *grammar
	text       *sched.TextStream
	nPrompt    int
	nCached    int
	nGen       int
	tAssigned  time.Time
	tFirst     time.Time

	nBatched int // tokens of this slot in the batch being built
	outIdx   int // batch index whose logits this slot samples, or -1

	// spans are the image chunks of the prompt (vision.go); imageRun
	// says the positions batched this step are image rows; nImage counts
	// the prompt's image positions.
	spans    []visionSpan
	imageRun bool
	nImage   int
}

func (m *model) hasWork() bool {
	if m.closed.Load() {
		return false
	}
	for _, s := range m.slots {
		if s.req != nil {
			return true
		}
	}
	return m.queue.Waiting()
}

// step advances every active sequence of the model by one decode. A panic
// in it (a bug, or a fault the C code reported as one) poisons this model
// only.
func (m *model) step() {
	defer func() {
		if r := recover(); r != nil {
			m.poison(fmt.Errorf("panic in worker: %v\n%s", r, debug.Stack()))
		}
	}()
	if m.poisoned.Load() {
		return
	}
	m.reap()
	m.assign()
	m.decodeStep()
	m.updateActive()
}

func (m *model) updateActive() {
	n := 0
	for _, s := range m.slots {
		if s.req != nil {
			n++
		}
	}
	m.queue.SetActive(n)
}

// reap frees the sequences of requests their callers abandoned, dropping
// their cache.
func (m *model) reap() {
	for _, s := range m.slots {
		if s.req != nil && s.req.Cancelled() {
			m.clearSeq(s)
			m.finish(s, engine.FinishCancelled, context.Canceled)
		}
	}
}

func (m *model) clearSeq(s *slot) {
	m.cc.seqRm(s.id, 0, -1)
	s.cache = s.cache[:0]
}

// assign hands free sequences to waiting requests. A completion goes to
// the free sequence sharing the longest prefix with its prompt, or on ties
// the least recently used one, so that other cached prefixes survive
// longest. An embedding runs at once on a free sequence and gives it back.
func (m *model) assign() {
	var free []*slot
	for _, s := range m.slots {
		if s.req == nil {
			free = append(free, s)
		}
	}
	if len(free) == 0 {
		return
	}
	for _, r := range m.queue.Take(len(free)) {
		if m.poisoned.Load() {
			// An embedding just poisoned the model.
			r.Fail(m.poisonErr)
			continue
		}
		if r.IsEmbed() {
			s := free[0]
			for _, f := range free {
				if len(f.cache) < len(s.cache) {
					s = f
				}
			}
			v, err := m.embed(s, r.EmbedTokens)
			r.FinishEmbed(v, err)
			continue
		}
		best := sched.PickSlot(free, r.Gen.Prompt)
		s := free[best]
		free = slices.Delete(free, best, best+1)
		m.start(s, r)
	}
}

func (s *slot) CachedTokens() []int { return s.cache }
func (s *slot) LastUse() uint64     { return s.lastUsed }

// start binds a request to a sequence, keeping the cached prefix it shares
// with the prompt. At least the last prompt token is always decoded again,
// since its logits are needed.
func (m *model) start(s *slot, r *sched.Request) {
	prompt := r.Gen.Prompt
	var ex *expansion
	if len(r.Gen.Images) > 0 {
		var err error
		if ex, err = m.expandFor(r); err != nil {
			// The sequence is untouched and stays free.
			r.Finish(engine.Result{FinishReason: engine.FinishStop, PromptTokens: len(r.Gen.Prompt)}, err)
			return
		}
		defer ex.free()
		prompt = ex.prompt
	}
	keep := min(sched.CommonPrefix(s.cache, prompt), len(prompt)-1)
	if ex != nil {
		keep = ex.snap(keep)
	}
	if keep < len(s.cache) {
		if !m.cc.seqRm(s.id, keep, -1) {
			// Some memory types (recurrent, sliding window) cannot drop a
			// suffix; start the sequence over.
			m.clearSeq(s)
			keep = 0
		}
		s.cache = s.cache[:keep]
	}
	*s = slot{id: s.id, cache: s.cache, outIdx: -1}
	m.useCount++
	s.lastUsed = m.useCount
	s.req = r
	s.tAssigned = time.Now()
	s.nPrompt = len(prompt)
	s.nCached = keep
	s.pending = prompt[keep:]
	if ex != nil {
		s.nImage = ex.imageTokens
		if err := ex.encode(m.proj, keep); err != nil {
			m.finish(s, engine.FinishStop, err)
			return
		}
		s.spans = ex.spans
	}
	if r.Gen.Grammar != "" {
		g, err := newGrammar(m.cm, r.Gen.Grammar)
		if err != nil {
			m.finish(s, engine.FinishStop, fmt.Errorf("%w: %w", engine.ErrInvalidGrammar, err))
			return
		}
		s.grammar = g
	}
	if ex != nil {
		prompt = textTokens(prompt)
	}
	s.sampler = newSampler(r.Gen.Sampling, m.ctxLen, prompt)
	s.text = sched.NewTextStream(r.Gen.Stop)
}

// decodeStep builds and decodes one batch: one token for each generating
// sequence, then prompt chunks up to the step budget, rotating which
// sequence's prompt goes first so that long prompts share the budget.
// Tokens are laid out by ascending sequence id, as llama.cpp splits
// batches into runs of consecutive ids.
func (m *model) decodeStep() {
	var gen, pre []*slot
	for _, s := range m.slots {
		switch {
		case s.req == nil:
		case s.generating:
			gen = append(gen, s)
		default:
			pre = append(pre, s)
		}
	}
	if len(gen)+len(pre) == 0 {
		return
	}
	budget := m.budget
	for i := range gen {
		if budget == 0 {
			break
		}
		s := gen[(m.genRR+i)%len(gen)]
		s.nBatched = 1
		budget--
	}
	if len(gen) > 0 {
		m.genRR = (m.genRR + 1) % len(gen)
	}
	for i := range pre {
		if budget == 0 {
			break
		}
		s := pre[(m.prefRR+i)%len(pre)]
		s.nBatched, s.imageRun = m.prefillRun(s, budget)
		budget -= s.nBatched
	}
	if len(pre) > 0 {
		m.prefRR = (m.prefRR + 1) % len(pre)
	}

	m.batch.clear()
	if m.ebatch != nil {
		m.ebatch.clear()
	}
	var batched []*slot
	var err error
	for _, s := range m.slots {
		if s.nBatched == 0 {
			continue
		}
		batched = append(batched, s)
		pos := len(s.cache)
		if s.generating {
			m.batch.add(s.last, pos, true, s.id)
			s.outIdx = m.batch.len() - 1
			continue
		}
		if s.imageRun {
			// A prompt never ends with an image, so no row needs logits.
			var rows []float32
			if rows, err = m.rowsAt(s, pos, s.nBatched); err != nil {
				break
			}
			w := m.proj.nEmbd
			for i := range s.nBatched {
				m.ebatch.addEmbd(rows[i*w:(i+1)*w], pos+i, false, s.id)
			}
			continue
		}
		for i, t := range s.pending[:s.nBatched] {
			last := s.nBatched == len(s.pending) && i == s.nBatched-1
			m.batch.add(t, pos+i, last, s.id)
			if last {
				s.outIdx = m.batch.len() - 1
			}
		}
	}
	if f := m.testFault.Load(); f != nil && err == nil {
		err = (*f)()
	}
	if err == nil {
		err = m.decodeBatches()
	}
	if err != nil {
		for _, s := range batched {
			s.nBatched, s.outIdx = 0, -1
		}
		if errors.Is(err, errKVCacheFull) {
			// Per-sequence limits make this unexpected; fail the requests
			// in the batch rather than the model. llama.cpp has already
			// rolled back what it stored for them.
			for _, s := range batched {
				m.clearSeq(s)
				m.finish(s, engine.FinishStop, fmt.Errorf("decoding: %w", err))
			}
			return
		}
		m.poison(fmt.Errorf("decoding a batch of %d tokens: %w", m.batch.len()+m.ebatchTokens(), err))
		return
	}
	for _, s := range batched {
		n := s.nBatched
		s.nBatched = 0
		if s.generating {
			s.cache = append(s.cache, s.last)
		} else {
			s.cache = append(s.cache, s.pending[:n]...)
			s.pending = s.pending[n:]
			m.promptTokens.Add(int64(n))
		}
		if s.outIdx >= 0 {
			idx := s.outIdx
			s.outIdx = -1
			m.sampleNext(s, idx)
		}
	}
}

// sampleNext picks the token after batch output idx and streams its text.
func (m *model) sampleNext(s *slot, idx int) {
	r := s.req
	logits := m.cc.logits(idx, m.nVocab)
	if logits == nil {
		m.poison(fmt.Errorf("llama.cpp returned no logits for batch output %d", idx))
		return
	}
	if !s.generating {
		s.generating = true
		s.tFirst = time.Now()
	}
	tok, err := s.sampler.sample(logits, s.grammar)
	if err != nil {
		if s.grammar != nil {
			err = fmt.Errorf("%w: no token satisfies the grammar here", engine.ErrInvalidGrammar)
		}
		m.finish(s, engine.FinishStop, err)
		return
	}
	s.nGen++
	m.genTokens.Add(1)
	if m.eog[tok] {
		m.finish(s, engine.FinishStop, nil)
		return
	}
	var lp *engine.TokenLogprob
	if r.Gen.Logprobs {
		v := logprobsFor(logits, tok, r.Gen.TopLogprobs, func(t int) []byte { return m.pieces[t] })
		lp = &v
	}
	if s.grammar != nil {
		s.grammar.accept(tok)
	}
	s.sampler.accept(tok)
	chunk, stopped := s.text.Push(string(m.pieces[tok]), lp)
	r.Emit(chunk, s.nGen)
	switch {
	case stopped:
		m.finish(s, engine.FinishStop, nil)
	case r.Gen.MaxTokens > 0 && s.nGen >= r.Gen.MaxTokens:
		m.finish(s, engine.FinishLength, nil)
	case s.nPrompt+s.nGen >= m.ctxLen:
		m.finish(s, engine.FinishLength, nil)
	default:
		s.last = tok
	}
}

// finish ends the slot's request and frees the slot. The cache is kept
// for prefix reuse unless the caller cleared it.
func (m *model) finish(s *slot, reason engine.FinishReason, err error) {
	r := s.req
	if r == nil {
		return
	}
	now := time.Now()
	if err == nil && s.text != nil {
		r.Emit(s.text.Flush(), s.nGen)
	}
	res := engine.Result{
		FinishReason:     reason,
		PromptTokens:     s.nPrompt,
		CompletionTokens: s.nGen,
		CachedTokens:     s.nCached,
		ImageTokens:      s.nImage,
		QueueTime:        s.tAssigned.Sub(r.Enqueued),
	}
	if s.text != nil && reason == engine.FinishStop {
		res.StopSequence = s.text.Matched()
	}
	if !s.tFirst.IsZero() {
		res.PromptTime = s.tFirst.Sub(s.tAssigned)
		res.GenerateTime = now.Sub(s.tFirst)
	} else {
		res.PromptTime = now.Sub(s.tAssigned)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		// The sequence's state is suspect after an error.
		m.clearSeq(s)
	}
	r.Finish(res, err)
	s.grammar.free()
	*s = slot{id: s.id, cache: s.cache, lastUsed: s.lastUsed, outIdx: -1}
}

// poison marks the model failed after a fatal error: every request, queued
// or running, fails with ErrPoisoned, and so does every later one.
func (m *model) poison(cause error) {
	if !m.poisoned.CompareAndSwap(false, true) {
		return
	}
	err := fmt.Errorf("%w: %w", engine.ErrPoisoned, cause)
	m.poisonErr = err
	m.log.Error("Model poisoned; it must be reloaded", "path", m.cfg.Path, "error", cause)
	for _, r := range m.queue.Close(err) {
		r.Fail(err)
	}
	for _, s := range m.slots {
		if s.req != nil {
			r := s.req
			s.grammar.free()
			*s = slot{id: s.id, outIdx: -1}
			r.Fail(err)
		}
	}
	m.queue.SetActive(0)
}

// embed computes the mean-pooled, L2-normalised embedding of tokens on
// sequence s, whose cache it discards. For models without their own
// pooling the hidden states of every token are averaged here; chunks are
// kept small because llama.cpp also computes logits for each output row.
func (m *model) embed(s *slot, tokens []int) ([]float32, error) {
	m.clearSeq(s)
	m.cc.setEmbeddings(true)
	defer func() {
		m.cc.setEmbeddings(false)
		m.clearSeq(s)
	}()
	sum := make([]float64, m.nEmbd)
	chunk := m.budget
	if m.pooling == poolingNone {
		chunk = min(chunk, 128)
	}
	for off := 0; off < len(tokens); off += chunk {
		part := tokens[off:min(off+chunk, len(tokens))]
		m.batch.clear()
		for i, t := range part {
			m.batch.add(t, off+i, true, s.id)
		}
		if err := m.cc.decode(m.batch); err != nil {
			if !errors.Is(err, errKVCacheFull) {
				m.poison(fmt.Errorf("decoding for embeddings: %w", err))
				return nil, fmt.Errorf("%w: %w", engine.ErrPoisoned, err)
			}
			return nil, fmt.Errorf("embedding: %w", err)
		}
		m.promptTokens.Add(int64(len(part)))
		if m.pooling != poolingNone {
			e := m.cc.embeddingSeq(s.id, m.nEmbd)
			if e == nil {
				return nil, engine.ErrNoEmbeddings
			}
			for j, x := range e {
				sum[j] = float64(x)
			}
			continue
		}
		for i := range part {
			e := m.cc.embeddingIth(i, m.nEmbd)
			if e == nil {
				return nil, engine.ErrNoEmbeddings
			}
			for j, x := range e {
				sum[j] += float64(x)
			}
		}
	}
	return normalize(sum)
}

// normalize scales v to unit length (the mean's 1/n cancels out).
func normalize(v []float64) ([]float32, error) {
	var n float64
	for _, x := range v {
		n += x * x
	}
	n = math.Sqrt(n)
	if n == 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		return nil, fmt.Errorf("%w: the embedding has no direction", engine.ErrNoEmbeddings)
	}
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x / n)
	}
	return out, nil
}
