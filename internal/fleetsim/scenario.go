package fleetsim

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// ChurnModels draws n models' sizes from Sizes by their shares, seeded,
// independently of popularity (the trace's Zipf rank): each serves with
// the given context and parallel sequences, keep-alive and at most
// maxReplicas replicas.
func ChurnModels(n int, seed uint64, contextLength, parallel, maxReplicas int, keepAlive time.Duration) []ModelSpec {
	rng := rand.New(rand.NewPCG(seed, 0x517e))
	out := make([]ModelSpec, n)
	for i := range out {
		u := rng.Float64()
		sz := Sizes[len(Sizes)-1]
		for _, s := range Sizes {
			if u < s.Share {
				sz = s
				break
			}
			u -= s.Share
		}
		out[i] = ModelSpec{Key: fmt.Sprintf("fleet/m%02d-%s", i, sz.Name), Size: sz,
			Bytes: ReplicaBytes(sz, contextLength, parallel), Parallel: parallel, ContextLength: contextLength,
			KeepAlive: keepAlive, MaxReplicas: maxReplicas}
	}
	return out
}

// MinGPUs finds the fewest GPUs in [lo, hi] from which run reaches the
// SLO attainment target at every fleet size it tried up to hi, and the
// attainment at each size tried. Attainment is not monotone in the fleet
// size (a larger fleet places differently and can lose a few more
// requests), so it does not bisect: it tries sizes in steps of a quarter
// up to hi, takes the smallest from which every larger one reaches the
// target, then tries each size below that one, down to the step before,
// while they reach it too. It returns hi+1 if hi does not.
func MinGPUs(lo, hi int, target float64, run func(gpus int) (*Result, error)) (int, map[int]float64, error) {
	tried := map[int]float64{}
	ok := func(g int) (bool, error) {
		if a, seen := tried[g]; seen {
			return a >= target, nil
		}
		r, err := run(g)
		if err != nil {
			return false, err
		}
		tried[g] = r.SLOAttainment()
		return tried[g] >= target, nil
	}
	var sizes []int
	for g := max(1, lo); g < hi; g = max(g+1, g*5/4) {
		sizes = append(sizes, g)
	}
	sizes = append(sizes, hi)
	first := len(sizes)
	for i := len(sizes) - 1; i >= 0; i-- {
		good, err := ok(sizes[i])
		if err != nil {
			return 0, tried, err
		}
		if !good {
			break
		}
		first = i
	}
	if first == len(sizes) {
		return hi + 1, tried, nil
	}
	best := sizes[first]
	floor := lo - 1
	if first > 0 {
		floor = sizes[first-1]
	}
	for g := best - 1; g > floor; g-- {
		good, err := ok(g)
		if err != nil {
			return 0, tried, err
		}
		if !good {
			break
		}
		best = g
	}
	return best, tried, nil
}

// RoutingModel is the routing benchmark's one popular model: an 8B model
// with 8 parallel sequences of 32k context, so each replica's prefix cache
// holds 512 blocks (262,144 tokens).
func RoutingModel(replicas int) ModelSpec {
	sz := Sizes[1]
	return ModelSpec{Key: "fleet/popular-8B", Size: sz, Bytes: ReplicaBytes(sz, 32768, 16), Parallel: 16,
		ContextLength: 32768, KeepAlive: time.Hour, MinReplicas: replicas, MaxReplicas: replicas}
}

// RunRouting replays a prefix-structured trace against replicas fixed
// replicas of RoutingModel on one node each, routed by router.
func RunRouting(trace *Trace, class GPUClass, replicas int, router Router) (*Result, error) {
	return Run(Config{Class: class, Nodes: replicas, Models: []ModelSpec{RoutingModel(replicas)},
		Policy: Static(), Router: router, SampleEvery: 1}, trace)
}

// MixedRoutingModel is RoutingModel sized to fit a 24 GB card as well:
// 8k context × 16 sequences.
func MixedRoutingModel(replicas int) ModelSpec {
	m := RoutingModel(replicas)
	m.Key, m.ContextLength, m.Bytes = "fleet/popular-8B-8k", 8192, ReplicaBytes(m.Size, 8192, m.Parallel)
	return m
}

// RunMixedRouting is RunRouting on a fleet of mixed GPUs: node i has
// classes[i mod len(classes)], and the model is MixedRoutingModel.
func RunMixedRouting(trace *Trace, classes []GPUClass, replicas int, router Router) (*Result, error) {
	return Run(Config{Class: classes[0], NodeClasses: classes, Nodes: replicas, Models: []ModelSpec{MixedRoutingModel(replicas)},
		Policy: Static(), Router: router, SampleEvery: 1}, trace)
}

// SharedRoutingModels are two models of RoutingModel's size, each with
// one replica per node of a fleet of nodes nodes.
func SharedRoutingModels(nodes int) []ModelSpec {
	a, b := RoutingModel(nodes), RoutingModel(nodes)
	b.Key = "fleet/other-8B"
	return []ModelSpec{a, b}
}

// RunSharedRouting is RunRouting on nodes of two GPUs, each holding a
// replica of both SharedRoutingModels (one per GPU), the trace's requests
// split between them by their first block: the gateway routes each
// model's requests among replicas whose neurons also serve the other.
func RunSharedRouting(trace *Trace, class GPUClass, nodes int, router Router) (*Result, error) {
	return Run(Config{Class: class, Nodes: nodes, GPUsPerNode: 2, Models: SharedRoutingModels(nodes),
		Policy: Static(), Router: router, SampleEvery: 1}, trace.AssignByFirstBlock(2))
}

// ChurnRun runs the churn benchmark's fleet: gpus GPUs of the class, one
// per node, serving the models, with the gateway's balancer in front.
func ChurnRun(trace *Trace, models []ModelSpec, class GPUClass, gpus int, policy Policy, sampleEvery float64) (*Result, error) {
	return Run(Config{Class: class, Nodes: gpus, Models: models, Policy: policy, Router: CortexRouter(), SampleEvery: sampleEvery}, trace)
}

// ChurnGoal compares cortex with the Ollama-style baseline of the same
// run: cold-start fraction and GPU memory-time as ratios, and the requests
// Ollama-style served that cortex did not.
type ChurnGoal struct {
	ColdRatio, MemRatio float64
	Lost                int
}

// Met reports whether the goal holds: cold-start fraction ≤ 0.5×, memory
// ≤ 1.0×, nothing lost.
func (g ChurnGoal) Met() bool { return g.ColdRatio <= 0.5 && g.MemRatio <= 1.0 && g.Lost == 0 }

// CompareChurn computes the goal's ratios.
func CompareChurn(cortex, ollama *Result) ChurnGoal {
	return ChurnGoal{ColdRatio: cortex.ColdFraction() / ollama.ColdFraction(),
		MemRatio: cortex.MemGiBHours / ollama.MemGiBHours, Lost: cortex.LostVersus(ollama)}
}

// RoutingPoint is one load level of the routing sweep.
type RoutingPoint struct {
	Factor float64
	ByName map[string]*Result
}

// CollapseIndex is the first load level at which least-load's p99 TTFT
// exceeds ten times its value at the lightest level; -1 if none.
func CollapseIndex(points []RoutingPoint) int {
	if len(points) == 0 {
		return -1
	}
	light := Quantile(points[0].ByName["least-load"].All(), .99)
	for i, p := range points {
		if Quantile(p.ByName["least-load"].All(), .99) > 10*light {
			return i
		}
	}
	return -1
}

// RoutingGoal is cortex against least-load, CHWBL and the oracle at one
// load level.
type RoutingGoal struct {
	MeanVsLeast, P99VsLeast, Imbalance, HitVsOracle float64
	// WorseThanCHWBL names the measures on which cortex is worse.
	WorseThanCHWBL []string
}

// Met reports whether every routing goal holds.
func (g RoutingGoal) Met() bool {
	return g.MeanVsLeast <= 0.25 && g.P99VsLeast <= 0.5 && g.Imbalance <= 1.25 && g.HitVsOracle >= 0.9 && len(g.WorseThanCHWBL) == 0
}

// CompareRouting computes the routing goal at one load level.
func CompareRouting(p RoutingPoint) RoutingGoal {
	c, ll, ch, or := p.ByName["cortex"], p.ByName["least-load"], p.ByName["chwbl"], p.ByName["oracle"]
	g := RoutingGoal{MeanVsLeast: c.Mean() / ll.Mean(), P99VsLeast: Quantile(c.All(), .99) / Quantile(ll.All(), .99),
		Imbalance: c.LoadImbalance(), HitVsOracle: c.HitRate() / or.HitRate()}
	if c.Mean() > ch.Mean() {
		g.WorseThanCHWBL = append(g.WorseThanCHWBL, "mean TTFT")
	}
	if Quantile(c.All(), .99) > Quantile(ch.All(), .99) {
		g.WorseThanCHWBL = append(g.WorseThanCHWBL, "p99 TTFT")
	}
	if c.LoadImbalance() > ch.LoadImbalance() {
		g.WorseThanCHWBL = append(g.WorseThanCHWBL, "max/mean load")
	}
	if c.HitRate() < ch.HitRate() {
		g.WorseThanCHWBL = append(g.WorseThanCHWBL, "hit rate")
	}
	return g
}
