package placement

import (
	"testing"
	"time"
)

func histOf(gaps ...time.Duration) *IdleHistogram {
	h := &IdleHistogram{Decay: 1}
	for _, g := range gaps {
		h.Observe(g)
	}
	return h
}

func repeat(n int, d time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

func TestLearnKeepAlive(t *testing.T) {
	const gib = int64(1) << 30
	worth := float64(gib) * 3600 // a cold start is worth 1 GiB·h
	fallback := 15 * time.Minute
	tests := []struct {
		name  string
		h     *IdleHistogram
		bytes int64
		worth float64
		want  time.Duration
	}{
		{"no history: the Model's keep-alive", nil, 4 * gib, worth, fallback},
		{"too little history", histOf(repeat(MinIdleObservations-1, time.Minute)...), 4 * gib, worth, fallback},
		{"no worth given", histOf(repeat(20, time.Minute)...), 4 * gib, 0, fallback},
		// Gaps of 4 minutes: keeping a 4 GiB model 5 minutes costs 4 GiB ×
		// 4 min ≈ 0.27 GiB·h per gap, less than a cold start.
		{"small model, regular 4-minute gaps: kept through them", histOf(repeat(20, 4*time.Minute)...), 4 * gib, worth, 5 * time.Minute},
		// The same gaps for a 40 GiB model cost 2.7 GiB·h each: cheaper to
		// reload.
		{"large model, same gaps: unloaded soon", histOf(repeat(20, 4*time.Minute)...), 40 * gib, worth, 30 * time.Second},
		// Bursts (gaps of 10 s) separated by 3-hour silences: keep through
		// the bursts, not the silences.
		{"bursts and long silences", histOf(append(repeat(30, 10*time.Second), repeat(5, 3*time.Hour)...)...), 4 * gib, worth, 30 * time.Second},
		{"gaps beyond the last step: shortest keep-alive", histOf(repeat(10, 10*time.Hour)...), 4 * gib, worth, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LearnKeepAlive(tt.h, tt.bytes, tt.worth, fallback); got != tt.want {
				t.Errorf("LearnKeepAlive = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestIdleHistogramDecayAndRate(t *testing.T) {
	h := &IdleHistogram{}
	for range 1000 {
		h.Observe(time.Hour)
	}
	for range 500 {
		h.Observe(10 * time.Second)
	}
	// With the default decay, the 500 recent short gaps dominate.
	if r := h.Rate(); r < 0.02 {
		t.Errorf("Rate = %g/s after recent short gaps, want at least 0.02/s", r)
	}
	if w := h.Weight(); w > 101 {
		t.Errorf("Weight = %g, want at most about 100 with DefaultDecay", w)
	}
	if r := (&IdleHistogram{}).Rate(); r != 0 {
		t.Errorf("empty Rate = %g, want 0", r)
	}
}

func TestIdleTracker(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	var tr IdleTracker
	if tr.Histogram("m") != nil {
		t.Fatal("a Model never observed has a histogram")
	}
	// First sight: no gap yet. The same times seen again add nothing.
	tr.Observe("m", time.Time{}, at(0))
	tr.Observe("m", time.Time{}, at(0))
	if w := tr.Histogram("m").Weight(); w != 0 {
		t.Fatalf("weight %g after one use seen twice, want 0", w)
	}
	// A warm gap of 2 minutes.
	tr.Observe("m", time.Time{}, at(2*time.Minute))
	// A cold gap: a demand signal 3 hours later ends it; the first use
	// after the wait is not another gap, nor is a second signal while it
	// waits.
	tr.Observe("m", at(3*time.Hour), time.Time{})
	tr.Observe("m", at(3*time.Hour+5*time.Second), time.Time{})
	tr.Observe("m", at(3*time.Hour), at(3*time.Hour+time.Minute))
	// A stale demand signal (older than the last use) is no gap either.
	tr.Observe("m", at(3*time.Hour), at(3*time.Hour+time.Minute))
	h := tr.Histogram("m")
	if w := h.Weight(); w < 1.9 || w > 2 {
		t.Fatalf("weight %g, want the two gaps (2 min warm, 3 h cold), decayed once", w)
	}
	// The 2-minute gap is in the bin up to 2 minutes, the 3-hour one in
	// the bin up to 3 hours.
	if h.bins[2] == 0 || h.bins[14] == 0 {
		t.Fatalf("bins %v: want the 2 min and 3 h bins filled", h.bins)
	}
	tr.Observe("other", time.Time{}, at(0))
	tr.Forget(func(m string) bool { return m == "other" })
	if tr.Histogram("m") != nil || tr.Histogram("other") == nil {
		t.Fatal("Forget kept a deleted Model or dropped a live one")
	}
}
