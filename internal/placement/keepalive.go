package placement

import (
	"math"
	"time"
)

// KeepAliveSteps are the keep-alives a learned keep-alive chooses from,
// and the bounds of an IdleHistogram's bins: log-spaced from MinKeepAlive
// to four hours, the range over which "Serverless in the Wild" (Shahrad et
// al., USENIX ATC 2020) keeps per-application idle-time histograms.
var KeepAliveSteps = []time.Duration{
	30 * time.Second, time.Minute, 2 * time.Minute, 3 * time.Minute, 5 * time.Minute,
	7*time.Minute + 30*time.Second, 10 * time.Minute, 15 * time.Minute, 20 * time.Minute,
	30 * time.Minute, 45 * time.Minute, time.Hour, 90 * time.Minute, 2 * time.Hour,
	3 * time.Hour, 4 * time.Hour,
}

// IdleHistogram counts a Model's idle gaps — the time from a use to the
// next request — in the bins KeepAliveSteps bound, the last bin holding
// every gap beyond the last step. Older gaps weigh less: every new gap
// scales the others by Decay, so the histogram follows a Model whose
// traffic changes. The zero value is empty and uses DefaultDecay.
type IdleHistogram struct {
	// Decay is the weight an old gap keeps per new one (0 means
	// DefaultDecay).
	Decay float64
	bins  [17]float64
	n     float64
}

// DefaultDecay forgets a gap after about a hundred newer ones.
const DefaultDecay = 0.99

// Observe adds a gap.
func (h *IdleHistogram) Observe(gap time.Duration) {
	d := h.Decay
	if d <= 0 || d > 1 {
		d = DefaultDecay
	}
	for i := range h.bins {
		h.bins[i] *= d
	}
	h.n = h.n*d + 1
	i := 0
	for i < len(KeepAliveSteps) && gap > KeepAliveSteps[i] {
		i++
	}
	h.bins[i]++
}

// Weight is the histogram's total weight (the number of gaps, decayed).
func (h *IdleHistogram) Weight() float64 { return h.n }

// MinIdleObservations is how much weight a histogram needs before it
// overrides a Model's keep-alive.
const MinIdleObservations = 8

// LearnKeepAlive chooses a Model's keep-alive from its idle gaps: the step
// K with the lowest expected cost per idle gap, where a gap longer than K
// costs one cold start, and holding the replica's bytes idle for min(gap,
// K) costs that many byte-seconds at coldStartWorth byte-seconds per cold
// start. So a model used often for its size is kept long, a large model
// used rarely is unloaded soon after its last request, and a model whose
// requests come in bursts separated by long silences is kept through the
// bursts only. With too little history (MinIdleObservations) or no worth
// it returns fallback.
func LearnKeepAlive(h *IdleHistogram, bytes int64, coldStartWorth float64, fallback time.Duration) time.Duration {
	if h == nil || h.n < MinIdleObservations || coldStartWorth <= 0 || bytes <= 0 {
		return fallback
	}
	price := float64(bytes) / coldStartWorth // cold starts per second held
	best, bestCost := fallback, math.Inf(1)
	for k, K := range KeepAliveSteps {
		var cost float64
		for i, w := range h.bins {
			if w == 0 {
				continue
			}
			var held float64
			if i <= k {
				// A gap in bin i ends within K: the replica idles for the
				// gap, taken as the bin's geometric middle.
				held = binMiddle(i).Seconds()
			} else {
				held = K.Seconds()
				cost += w // a cold start
			}
			cost += w * held * price
		}
		if cost < bestCost {
			best, bestCost = K, cost
		}
	}
	return best
}

// binMiddle is a representative gap of bin i.
func binMiddle(i int) time.Duration {
	switch {
	case i == 0:
		return KeepAliveSteps[0] / 2
	case i >= len(KeepAliveSteps):
		return 2 * KeepAliveSteps[len(KeepAliveSteps)-1]
	}
	lo, hi := KeepAliveSteps[i-1].Seconds(), KeepAliveSteps[i].Seconds()
	return time.Duration(math.Sqrt(lo*hi) * float64(time.Second))
}

// Rate is the request rate the histogram implies, requests per second: one
// over its mean gap (each bin taken at its middle); 0 when empty.
func (h *IdleHistogram) Rate() float64 {
	if h.n <= 0 {
		return 0
	}
	var sum float64
	for i, w := range h.bins {
		sum += w * binMiddle(i).Seconds()
	}
	return h.n / sum
}

// IdleTracker learns each Model's idle gaps from what a planner sees on
// each pass: the newest demand signal (a request that found no replica)
// and the newest use of any of its replicas. A demand signal newer than
// the Model's last activity ends a gap cold; a newer use ends one warm,
// unless it is the first use after such a cold wait (that request's gap
// was already counted when it began waiting). Observing the same times
// again adds nothing, so a caller may observe on every pass. The manager
// and the fleet simulator feed it the same way. The zero value is ready;
// it is not safe for concurrent use.
type IdleTracker struct {
	models map[string]*idleState
}

type idleState struct {
	hist    IdleHistogram
	last    time.Time // latest activity seen (zero: none yet)
	waiting bool      // a demand signal is unanswered
}

// Observe records what a pass saw of model: its demand signal and its
// replicas' last use (zero times: none).
func (t *IdleTracker) Observe(model string, demand, used time.Time) {
	if t.models == nil {
		t.models = map[string]*idleState{}
	}
	s := t.models[model]
	if s == nil {
		s = &idleState{}
		t.models[model] = s
	}
	s.see(demand, true)
	s.see(used, false)
}

// see records activity at t (zero: none) newer than the last: it ends the
// gap since the last activity, unless a demand signal already ended it,
// and a demand signal (demand) leaves the Model waiting.
func (s *idleState) see(t time.Time, demand bool) {
	if t.IsZero() || !t.After(s.last) {
		return
	}
	if !s.waiting && !s.last.IsZero() {
		s.hist.Observe(t.Sub(s.last))
	}
	s.waiting, s.last = demand, t
}

// Histogram is model's idle-gap histogram (nil before any observation).
// The caller must not keep it across Observe calls.
func (t *IdleTracker) Histogram(model string) *IdleHistogram {
	if s := t.models[model]; s != nil {
		return &s.hist
	}
	return nil
}

// Forget drops the Models keep does not name (deleted ones).
func (t *IdleTracker) Forget(keep func(model string) bool) {
	for k := range t.models {
		if !keep(k) {
			delete(t.models, k)
		}
	}
}
