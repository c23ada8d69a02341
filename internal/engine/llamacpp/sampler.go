package llamacpp

import (
	"container/heap"
	"errors"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/helexa-ai/cortex/internal/engine"
)

// Token selection runs in Go on the logits llama.cpp leaves in its output
// buffer. llama.cpp's own sampler chain aborts the process when a grammar
// leaves no candidate, so the chain is not used; only its grammar is, to
// mask candidates (see grammar in cgo.go). The order of the steps follows
// llama.cpp's default chain: penalties, top-k, top-p, min-p, temperature.

var (
	negInf = float32(math.Inf(-1))
	// errNoCandidate: every logit was masked (a grammar dead end) or not
	// a number.
	errNoCandidate = errors.New("no token can be sampled: every logit is masked or not finite")
)

func isNegInf(f float32) bool { return math.IsInf(float64(f), -1) }

// defaultRepeatLastN is llama.cpp's default penalty window.
const defaultRepeatLastN = 64

type candidate struct {
	id    int32
	logit float32
}

// sampler holds one request's sampling state.
type sampler struct {
	p   engine.Sampling
	rng *rand.Rand

	// Repeat-penalty window over prompt and completion.
	window       int
	recent       []int
	recentCounts map[int]int
	// Presence and frequency penalties count generated tokens only.
	genCounts map[int]int

	work  []float32   // penalised or masked copy of the logits
	cands []candidate // reused candidate list
	probs []float64
}

func newSampler(p engine.Sampling, ctxLen int, prompt []int) *sampler {
	seed := rand.Uint64()
	if p.Seed != nil {
		seed = uint64(*p.Seed)
	}
	s := &sampler{
		p:            p,
		rng:          rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)),
		recentCounts: map[int]int{},
		genCounts:    map[int]int{},
	}
	switch {
	case p.RepeatLastN == 0:
		s.window = defaultRepeatLastN
	case p.RepeatLastN < 0:
		s.window = ctxLen
	default:
		s.window = p.RepeatLastN
	}
	if s.repeatActive() {
		start := max(0, len(prompt)-s.window)
		for _, t := range prompt[start:] {
			s.pushRecent(t)
		}
	}
	return s
}

func (s *sampler) repeatActive() bool { return s.p.RepeatPenalty != 0 && s.p.RepeatPenalty != 1 }

func (s *sampler) penaltiesActive() bool {
	return s.repeatActive() || s.p.PresencePenalty != 0 || s.p.FrequencyPenalty != 0
}

func (s *sampler) pushRecent(t int) {
	s.recent = append(s.recent, t)
	s.recentCounts[t]++
	if len(s.recent) > s.window {
		old := s.recent[0]
		s.recent = s.recent[1:]
		if s.recentCounts[old]--; s.recentCounts[old] == 0 {
			delete(s.recentCounts, old)
		}
	}
}

// accept records a generated token.
func (s *sampler) accept(t int) {
	if s.repeatActive() {
		s.pushRecent(t)
	}
	if s.p.PresencePenalty != 0 || s.p.FrequencyPenalty != 0 {
		s.genCounts[t]++
	}
}

// sample picks the next token from logits (a read-only view). With a
// grammar, the token is first chosen freely and kept when the grammar
// allows it; otherwise the logits are masked and the choice repeated. This
// is cheaper than masking the whole vocabulary at every step.
func (s *sampler) sample(logits []float32, g *grammar) (int, error) {
	view := logits
	if s.penaltiesActive() {
		view = s.copyLogits(logits)
		s.applyPenalties(view)
	}
	t, err := s.pick(view)
	if g == nil || (err == nil && g.allows(t)) {
		return t, err
	}
	if &view[0] == &logits[0] {
		view = s.copyLogits(logits)
	}
	g.mask(view)
	return s.pick(view)
}

func (s *sampler) copyLogits(logits []float32) []float32 {
	if cap(s.work) < len(logits) {
		s.work = make([]float32, len(logits))
	}
	s.work = s.work[:len(logits)]
	copy(s.work, logits)
	return s.work
}

func (s *sampler) applyPenalties(l []float32) {
	if s.repeatActive() {
		r := s.p.RepeatPenalty
		for t := range s.recentCounts {
			if l[t] > 0 {
				l[t] /= r
			} else {
				l[t] *= r
			}
		}
	}
	for t, n := range s.genCounts {
		l[t] -= float32(n)*s.p.FrequencyPenalty + s.p.PresencePenalty
	}
}

// pick chooses a token from (possibly masked) logits.
func (s *sampler) pick(l []float32) (int, error) {
	if s.p.Temperature <= 0 {
		return argmax(l)
	}
	c := s.candidates(l)
	if len(c) == 0 {
		return 0, errNoCandidate
	}
	if len(c) == 1 {
		return int(c[0].id), nil
	}
	// Probabilities at temperature, then one draw.
	inv := 1 / float64(s.p.Temperature)
	maxL := float64(c[0].logit)
	for _, x := range c {
		maxL = max(maxL, float64(x.logit))
	}
	probs := s.probs[:0]
	var sum float64
	for _, x := range c {
		p := math.Exp((float64(x.logit) - maxL) * inv)
		probs = append(probs, p)
		sum += p
	}
	s.probs = probs
	r := s.rng.Float64() * sum
	for i, p := range probs {
		if r < p {
			return int(c[i].id), nil
		}
		r -= p
	}
	return int(c[len(c)-1].id), nil
}

// candidates applies top-k, min-p and top-p to the finite logits. The
// result is sorted by decreasing logit when top-k or top-p cut it.
func (s *sampler) candidates(l []float32) []candidate {
	c := s.cands[:0]
	maxL := negInf
	for i, x := range l {
		if !isNegInf(x) && !math.IsNaN(float64(x)) {
			c = append(c, candidate{int32(i), x})
			maxL = max(maxL, x)
		}
	}
	s.cands = c
	if len(c) == 0 {
		return c
	}
	if k := s.p.TopK; k > 0 && k < len(c) {
		c = topK(c, k)
	}
	// min-p keeps tokens with p >= min_p * p_max; on logits that is
	// logit >= max + ln(min_p). As top-p and min-p both keep a prefix of
	// the tokens by probability, applying min-p first gives the same set
	// as llama.cpp's order and makes top-p's work smaller.
	if mp := s.p.MinP; mp > 0 {
		cut := maxL + float32(math.Log(float64(mp)))
		c = slices.DeleteFunc(c, func(x candidate) bool { return x.logit < cut })
	}
	if tp := s.p.TopP; tp > 0 && tp < 1 && len(c) > 1 {
		c = topP(c, float64(tp))
	}
	return c
}

// argmax returns the token with the highest logit (lowest id on ties).
func argmax(l []float32) (int, error) {
	best, bestL := -1, negInf
	for i, x := range l {
		if x > bestL {
			best, bestL = i, x
		}
	}
	if best < 0 {
		return 0, errNoCandidate
	}
	return best, nil
}

// topK returns the k highest candidates, sorted by decreasing logit, in
// O(n log k).
func topK(c []candidate, k int) []candidate {
	h := candHeap(make([]candidate, 0, k))
	for _, x := range c {
		if len(h) < k {
			heap.Push(&h, x)
		} else if better(x, h[0]) {
			h[0] = x
			heap.Fix(&h, 0)
		}
	}
	out := []candidate(h)
	slices.SortFunc(out, func(a, b candidate) int {
		if better(a, b) {
			return -1
		}
		if better(b, a) {
			return 1
		}
		return 0
	})
	return out
}

// better orders candidates by logit, then by lower id for determinism.
func better(a, b candidate) bool {
	if a.logit != b.logit {
		return a.logit > b.logit
	}
	return a.id < b.id
}

// candHeap is a min-heap (the worst candidate on top).
type candHeap []candidate

func (h candHeap) Len() int           { return len(h) }
func (h candHeap) Less(i, j int) bool { return better(h[j], h[i]) }
func (h candHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *candHeap) Push(x any)        { *h = append(*h, x.(candidate)) }
func (h *candHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// topP keeps the smallest prefix (by probability) whose mass reaches p.
// Rather than sorting the whole vocabulary, it sorts the best k for a
// growing k until their mass suffices, which is quick for the peaked
// distributions language models produce.
func topP(c []candidate, p float64) []candidate {
	maxL := float64(c[0].logit)
	for _, x := range c {
		maxL = max(maxL, float64(x.logit))
	}
	var total float64
	for _, x := range c {
		total += math.Exp(float64(x.logit) - maxL)
	}
	for k := 64; ; k *= 8 {
		var top []candidate
		if k >= len(c) {
			top = topK(c, len(c))
		} else {
			top = topK(c, k)
		}
		var mass float64
		for i, x := range top {
			mass += math.Exp(float64(x.logit)-maxL) / total
			if mass >= p {
				return top[:i+1]
			}
		}
		if k >= len(c) {
			return top
		}
	}
}

// logprobs computes the log-probability of token under the model's raw
// distribution and, when n > 0, the n most likely alternatives.
func logprobsFor(logits []float32, token, n int, pieceOf func(int) []byte) engine.TokenLogprob {
	maxL := math.Inf(-1)
	for _, x := range logits {
		maxL = max(maxL, float64(x))
	}
	var sum float64
	for _, x := range logits {
		sum += math.Exp(float64(x) - maxL)
	}
	lse := maxL + math.Log(sum)
	piece := pieceOf(token)
	out := engine.TokenLogprob{
		Token:   string(piece),
		Logprob: float32(float64(logits[token]) - lse),
		Bytes:   piece,
	}
	if n > 0 {
		c := make([]candidate, len(logits))
		for i, x := range logits {
			c[i] = candidate{int32(i), x}
		}
		for _, x := range topK(c, min(n, len(c))) {
			b := pieceOf(int(x.id))
			out.Top = append(out.Top, engine.TopLogprob{Token: string(b), Logprob: float32(float64(x.logit) - lse), Bytes: b})
		}
	}
	return out
}
