package fleetsim

import (
	"math"
	"slices"
)

// SLO bounds on time to first token: a request that found a routable
// replica (warm) and one that waited for a load (cold).
const (
	SLOWarm = 1.0
	SLOCold = 10.0
)

// Result is what one run measured.
type Result struct {
	Policy, Router string
	Requests       int
	// Cold counts requests that found no routable replica and were held.
	Cold int
	// ColdBy counts cold requests by cause.
	ColdBy map[ColdCause]int
	// Failed counts requests never answered: held past the cold-start
	// timeout, or cut off by an unload.
	Failed int
	// TTFTWarm and TTFTCold are the times to first token, seconds, sorted.
	TTFTWarm, TTFTCold []float64
	// SLOMet counts requests within their SLO.
	SLOMet int
	// MemGiBHours is the GPU memory held by replicas over the run.
	MemGiBHours float64
	// Loads, Evictions (unloads to make room) and IdleUnloads.
	Loads, Evictions, IdleUnloads int
	// Drained counts requests in flight on a replica when it was unloaded
	// (the manager planned on a poll older than they were): they finish,
	// and the load that needed the memory waits for them.
	Drained int
	// HitBlocks and Blocks are prefix blocks reused and asked for.
	HitBlocks, Blocks int
	// Passes is the planner passes run (cortex only).
	Passes  int
	Samples []Sample
	// Served says per request whether it was answered.
	Served []bool
	// TTFT is per request (NaN when failed).
	TTFT []float64
	// TPOT is the time per output token after the first, seconds, of
	// each served request with more than one, sorted: what a replica's
	// decode batch costs the requests in it.
	TPOT []float64
}

func (s *Sim) result() *Result {
	res := &Result{Policy: s.cfg.Policy.Name(), Router: s.cfg.Router.Name(), Requests: len(s.reqs),
		MemGiBHours: s.memByteSec / float64(GiB) / 3600, Loads: s.loads, Evictions: s.evictions,
		IdleUnloads: s.idleUnl, ColdBy: s.coldBy, Drained: s.drained, Samples: s.samples,
		Served: make([]bool, len(s.reqs)), TTFT: make([]float64, len(s.reqs))}
	if p, ok := s.cfg.Policy.(*cortexPolicy); ok {
		res.Passes = p.passes
	}
	for i, r := range s.reqs {
		res.TTFT[i] = r.ttft
		res.HitBlocks += r.hitBlocks
		res.Blocks += r.blocks
		if r.cold {
			res.Cold++
		}
		if r.failed || math.IsNaN(r.ttft) {
			res.Failed++
			res.TTFT[i] = math.NaN()
			continue
		}
		res.Served[i] = true
		if r.tpot > 0 {
			res.TPOT = append(res.TPOT, r.tpot)
		}
		if r.cold {
			res.TTFTCold = append(res.TTFTCold, r.ttft)
			if r.ttft <= SLOCold {
				res.SLOMet++
			}
		} else {
			res.TTFTWarm = append(res.TTFTWarm, r.ttft)
			if r.ttft <= SLOWarm {
				res.SLOMet++
			}
		}
	}
	slices.Sort(res.TTFTWarm)
	slices.Sort(res.TTFTCold)
	slices.Sort(res.TPOT)
	return res
}

// ColdFraction is the share of requests that waited for a load.
func (r *Result) ColdFraction() float64 { return ratio(r.Cold, r.Requests) }

// SLOAttainment is the share of requests within their SLO.
func (r *Result) SLOAttainment() float64 { return ratio(r.SLOMet, r.Requests) }

// HitRate is the share of prompt blocks found in the replica's cache.
func (r *Result) HitRate() float64 { return ratio(r.HitBlocks, r.Blocks) }

// All is every served request's TTFT, sorted.
func (r *Result) All() []float64 {
	out := append(slices.Clone(r.TTFTWarm), r.TTFTCold...)
	slices.Sort(out)
	return out
}

// Mean is the mean TTFT of the served requests.
func (r *Result) Mean() float64 {
	all := r.All()
	if len(all) == 0 {
		return math.NaN()
	}
	var s float64
	for _, v := range all {
		s += v
	}
	return s / float64(len(all))
}

// MeanTPOT is the mean time per output token after the first, seconds,
// over the served requests with more than one (NaN if none).
func (r *Result) MeanTPOT() float64 {
	if len(r.TPOT) == 0 {
		return math.NaN()
	}
	var s float64
	for _, v := range r.TPOT {
		s += v
	}
	return s / float64(len(r.TPOT))
}

// LoadImbalance is the mean over samples of max/mean requests in flight
// per replica, over samples with any request in flight.
func (r *Result) LoadImbalance() float64 {
	return r.overBusySamples(func(mx int, mean float64) float64 { return float64(mx) / mean })
}

// LoadImbalanceFloor is the least LoadImbalance any router could have
// reached with the same requests in flight at each sample: the total
// spread as evenly as whole requests allow, ⌈mean⌉ ÷ mean (3 requests on 8
// replicas: 1 ÷ 0.375 = 2.67). A router that keeps queues short samples
// few requests in flight, so its floor is high.
func (r *Result) LoadImbalanceFloor() float64 {
	return r.overBusySamples(func(_ int, mean float64) float64 { return math.Ceil(mean) / mean })
}

// overBusySamples is the mean of f(max, mean requests in flight per
// replica) over the samples with any request in flight; NaN if none.
func (r *Result) overBusySamples(f func(mx int, mean float64) float64) float64 {
	var sum float64
	var n int
	for _, smp := range r.Samples {
		var tot, mx int
		for _, v := range smp.InFlight {
			tot += v
			mx = max(mx, v)
		}
		if tot == 0 || len(smp.InFlight) == 0 {
			continue
		}
		sum += f(mx, float64(tot)/float64(len(smp.InFlight)))
		n++
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / float64(n)
}

// Quantile is the q-quantile of sorted values (NaN when empty).
func Quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// LostVersus counts requests base served and r did not.
func (r *Result) LostVersus(base *Result) int {
	n := 0
	for i := range r.Served {
		if i < len(base.Served) && base.Served[i] && !r.Served[i] {
			n++
		}
	}
	return n
}
