package placement

import (
	"math"
	"time"
)

// RateWindow is the time constant of a RateEstimator: a request counts
// with weight e^(-age/RateWindow), so the rate follows a Model whose
// traffic changes within a few windows while one quiet spell between two
// bursts does not erase what the Model is worth keeping.
const RateWindow = time.Hour

// RateEstimator measures a Model's request rate from counts of requests
// seen over time: the requests counted, each weighed by how recent it is,
// over the time observed, weighed the same way. A Model observed for less
// than RateWindow is measured over the time it was observed (at least
// MinKeepAlive), so a new Model's rate is not diluted by history it does
// not have. The zero value has observed nothing. It is not safe for
// concurrent use.
type RateEstimator struct {
	count float64   // requests, decayed
	span  float64   // seconds observed, decayed
	at    time.Time // when count and span were last decayed
}

// Add counts n requests seen at now. The first call (even with n = 0)
// starts the observed time.
func (e *RateEstimator) Add(now time.Time, n float64) {
	e.advance(now)
	e.count += n
}

// AddSpread counts n requests spread evenly from from to to (a count
// learned late: a replica's requests since its load, read by a manager that
// just started). An estimator that has observed nothing starts at from.
func (e *RateEstimator) AddSpread(from, to time.Time, n float64) {
	if e.at.IsZero() {
		e.advance(from)
	}
	e.advance(to)
	dt := to.Sub(from).Seconds()
	if dt <= 0 {
		e.count += n
		return
	}
	tau := RateWindow.Seconds()
	e.count += n / dt * tau * (1 - math.Exp(-dt/tau))
}

// Rate is the requests per second at now; 0 before anything was added.
func (e *RateEstimator) Rate(now time.Time) float64 {
	if e.at.IsZero() {
		return 0
	}
	c := *e
	c.advance(now)
	return c.count / max(c.span, MinKeepAlive.Seconds())
}

func (e *RateEstimator) advance(now time.Time) {
	if e.at.IsZero() {
		e.at = now
		return
	}
	dt := now.Sub(e.at).Seconds()
	if dt <= 0 {
		return
	}
	tau := RateWindow.Seconds()
	d := math.Exp(-dt / tau)
	e.count *= d
	e.span = e.span*d + tau*(1-d)
	e.at = now
}
