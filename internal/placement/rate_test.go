package placement

import (
	"math"
	"testing"
	"time"
)

func TestRateEstimator(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var e RateEstimator
	if r := e.Rate(t0); r != 0 {
		t.Fatalf("empty estimator: %v, want 0", r)
	}
	// A steady 2 requests a minute, counted every 10 s as a poll would,
	// is measured as such whether the estimator has run for less or more
	// than its window.
	e.Add(t0, 0)
	at := t0
	for i := 1; i <= 6*60*3; i++ { // three hours
		at = t0.Add(time.Duration(i) * 10 * time.Second)
		n := 0.0
		if i%3 == 0 {
			n = 1
		}
		e.Add(at, n)
		if i == 6*10 || i == 6*60*3 {
			if got, want := e.Rate(at)*60, 2.0; math.Abs(got-want) > 0.1 {
				t.Fatalf("after %s: %.3f requests a minute, want %.1f", at.Sub(t0), got, want)
			}
		}
	}
	// Silence: the rate falls by about e every RateWindow (a little more
	// while the observed time still grows towards the window).
	r0 := e.Rate(at)
	if got, want := e.Rate(at.Add(RateWindow))/r0, math.Exp(-1); math.Abs(got-want) > 0.02 {
		t.Fatalf("after a window of silence the rate is %.3f of before, want %.3f", got, want)
	}
	// Reading the rate does not change it.
	if e.Rate(at) != r0 {
		t.Fatal("Rate changed the estimator")
	}

	// A Model seen for a short time is measured over that time (at least
	// MinKeepAlive), not over a window it has no history for.
	var f RateEstimator
	f.Add(t0, 0)
	f.Add(t0.Add(10*time.Minute), 5)
	if got, want := f.Rate(t0.Add(10*time.Minute))*60, 0.5; math.Abs(got-want) > 0.05 {
		t.Fatalf("5 requests in the first 10 min: %.3f a minute, want about %.1f", got, want)
	}
	var g RateEstimator
	g.Add(t0, 3)
	if got, want := g.Rate(t0), 3/MinKeepAlive.Seconds(); got != want {
		t.Fatalf("3 requests at once: %v per second, want %v (over MinKeepAlive)", got, want)
	}

	// A count learned late, spread over the hour it took, is measured as
	// that hour's rate, not as a burst at the end of it.
	var h RateEstimator
	h.AddSpread(t0, t0.Add(time.Hour), 120)
	if got := h.Rate(t0.Add(time.Hour)) * 60; math.Abs(got-2) > 0.01 {
		t.Fatalf("120 requests over an hour, learned at its end: %.3f a minute, want 2", got)
	}
}
