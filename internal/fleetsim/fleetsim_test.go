package fleetsim

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func tracesDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CORTEX_TRACES")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "traces")
	}
	if _, err := os.Stat(filepath.Join(dir, "README.md")); err != nil {
		t.Skipf("public traces not found in %s (set CORTEX_TRACES)", dir)
	}
	return dir
}

func oneModel(keepAlive time.Duration) []ModelSpec {
	sz := Sizes[4] // 70B: its load spans several polls
	return []ModelSpec{{Key: "ns/a", Size: sz, Bytes: ReplicaBytes(sz, 8192, 4), Parallel: 4, ContextLength: 8192, KeepAlive: keepAlive, MaxReplicas: 1}}
}

// A cold request under cortex is held, the real planner loads the model
// on the gateway's demand signal, the replica becomes routable at the next
// poll, and a second request a minute later is warm.
func TestCortexColdThenWarm(t *testing.T) {
	tr := &Trace{Name: "two requests", Requests: []Request{{At: 1, In: 1000, Out: 10}, {At: 61, In: 1000, Out: 10}}}
	models := oneModel(15 * time.Minute)
	res, err := Run(Config{Class: Classes["H100"], Nodes: 2, Models: models, Policy: Cortex(), Router: CortexRouter()}, tr)
	if err != nil {
		t.Fatal(err)
	}
	if res.Cold != 1 || res.Failed != 0 || res.Loads != 1 || res.Passes == 0 {
		t.Fatalf("cold %d, failed %d, loads %d, passes %d; want 1 cold, 0 failed, 1 load, some passes", res.Cold, res.Failed, res.Loads, res.Passes)
	}
	rates := RatesFor(Classes["H100"], models[0].Size, models[0].Bytes)
	warm := 1000/rates.PrefillTokPerSec + rates.DecodeStep
	if got := res.TTFT[1]; math.Abs(got-warm) > 1e-9 {
		t.Errorf("warm TTFT = %g s, want prefill + one step = %g s", got, warm)
	}
	// Demand at 1 s + API latency, then the load; polls run every 5 s
	// (0, 5, …) and every second once one finds the load under way (6, 7,
	// …), so the replica is routable at the first whole second after it is
	// Ready.
	ready := 1 + 0.05 + rates.LoadSeconds
	if ready < 5 {
		t.Fatalf("load of %g s ends before the second poll; the test needs a longer one", rates.LoadSeconds)
	}
	poll := math.Ceil(ready)
	if got, want := res.TTFT[0], poll-1+warm; math.Abs(got-want) > 1e-6 {
		t.Errorf("cold TTFT = %g s, want %g s (visible at the poll after the load)", got, want)
	}
}

// The gateway gives up on a held request after its cold-start timeout: a
// model that fits nowhere is never loaded.
func TestColdStartTimeout(t *testing.T) {
	tr := &Trace{Name: "one request", Requests: []Request{{At: 0, In: 10, Out: 1}}}
	models := oneModel(time.Minute)
	models[0].Bytes = 200 * GiB
	for _, p := range []Policy{Cortex(), OllamaStyle(5 * time.Minute)} {
		res, err := Run(Config{Class: Classes["H100"], Nodes: 1, Models: models, Policy: p, Router: CortexRouter(), ColdStartTimeout: 30}, tr)
		if err != nil {
			t.Fatal(err)
		}
		if res.Failed != 1 || res.Loads != 0 {
			t.Errorf("%s: failed %d, loads %d; want 1 and 0", p.Name(), res.Failed, res.Loads)
		}
	}
}

func TestBlockCachePrefix(t *testing.T) {
	c := newBlockCache(3)
	c.use([]uint64{1, 2, 3})
	if got := c.prefix([]uint64{1, 2, 9}); got != 2 {
		t.Errorf("prefix = %d, want 2", got)
	}
	c.use([]uint64{1, 7}) // evicts the least recent: 3 (then 2 is next)
	if got := c.prefix([]uint64{1, 2, 3}); got != 2 {
		t.Errorf("after eviction prefix = %d, want 2", got)
	}
	if got := c.prefix([]uint64{5}); got != 0 {
		t.Errorf("miss prefix = %d, want 0", got)
	}
}

func TestBadInput(t *testing.T) {
	tr := &Trace{Name: "bad", Requests: []Request{{At: 0, Model: 3, In: 1, Out: 1}}}
	if _, err := Run(Config{Class: Classes["H100"], Nodes: 1, Models: oneModel(time.Minute), Policy: Cortex(), Router: CortexRouter()}, tr); err == nil {
		t.Error("a request for a model that does not exist was accepted")
	}
	if _, err := Class("TPU"); err == nil {
		t.Error("an unknown class was accepted")
	}
	if _, err := LoadAzure(filepath.Join(t.TempDir(), "missing.csv")); err == nil {
		t.Error("a missing trace was accepted")
	}
	bad := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(bad, []byte("TIMESTAMP,ContextTokens,GeneratedTokens\nnot a time,1,1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAzure(bad); err == nil {
		t.Error("a malformed trace was accepted")
	}
}

// The regression benchmark: a short churn run and one routing load level
// on the public traces, fixed seed. It is deterministic (virtual time), so
// it asserts what cortex achieves against the baselines of the same run:
// nothing lost that Ollama-style served, and at the load where least-load
// collapses, p99 TTFT at most half of least-load's. The other goals of
// docs/fleet.md are not met yet; they are logged so a change that meets
// them shows.
func TestFleetGoals(t *testing.T) {
	dir := tracesDir(t)
	if testing.Short() {
		t.Skip("a few seconds of simulation")
	}
	azure, err := LoadAzure(filepath.Join(dir, "azure-llm-2023-conv.csv"))
	if err != nil {
		t.Fatal(err)
	}
	tr := azure.AssignZipf(200, 1.0, 1)
	models := ChurnModels(200, 1, 8192, 4, 4, 15*time.Minute)
	run := func(p Policy) *Result {
		r, err := ChurnRun(tr, models, Classes["H100"], 32, p, 0)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	cortex, ollama := run(Cortex()), run(OllamaStyle(5*time.Minute))
	again := run(Cortex())
	if again.Cold != cortex.Cold || again.MemGiBHours != cortex.MemGiBHours || again.SLOMet != cortex.SLOMet {
		t.Fatalf("two runs with the same seed differ: %+v vs %+v", again.Cold, cortex.Cold)
	}
	g := CompareChurn(cortex, ollama)
	t.Logf("churn: cold-start fraction %.4f vs %.4f (%.2f×), memory %.0f vs %.0f GiB·h (%.2f×), lost %d",
		cortex.ColdFraction(), ollama.ColdFraction(), g.ColdRatio, cortex.MemGiBHours, ollama.MemGiBHours, g.MemRatio, g.Lost)
	if g.Lost != 0 {
		t.Errorf("cortex lost %d requests Ollama-style served", g.Lost)
	}
	// Victims by measured requests per byte, keep-alives learned: 0.65×
	// at 1.01× the memory in this first hour, where Ollama-style's cold
	// starts are fewer since models sharing a GPU slow each other (0.59×
	// when they did not; the 6 h run of docs/benchmarks.md is at 0.50×).
	if g.ColdRatio > 0.67 {
		t.Errorf("cortex has %.2f× Ollama-style's cold starts, want ≤ 0.67×", g.ColdRatio)
	}
	if g.MemRatio > 1.01 {
		t.Errorf("cortex holds %.3f× Ollama-style's GPU memory-time, want ≤ 1.01×", g.MemRatio)
	}

	moon, err := LoadMooncake(filepath.Join(dir, "mooncake-synthetic.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	pt := RoutingPoint{Factor: 5, ByName: map[string]*Result{}}
	for _, r := range []Router{LeastLoad(), CHWBL(), CortexRouter(), Oracle()} {
		res, err := RunRouting(moon.Scale(5), Classes["H100"], 8, r)
		if err != nil {
			t.Fatal(err)
		}
		pt.ByName[r.Name()] = res
	}
	rg := CompareRouting(pt)
	t.Logf("routing at 5×: mean %.2f×, p99 %.2f× least-load; max/mean %.2f; hit rate %.2f× oracle; worse than CHWBL on %v",
		rg.MeanVsLeast, rg.P99VsLeast, rg.Imbalance, rg.HitVsOracle, rg.WorseThanCHWBL)
	if rg.P99VsLeast > 0.5 || rg.MeanVsLeast > 0.25 {
		t.Errorf("cortex mean TTFT %.2f×, p99 %.2f× least-load's at 5× load, want ≤ 0.25×, ≤ 0.5×", rg.MeanVsLeast, rg.P99VsLeast)
	}
	// The gateway's prefix table: 1.07× the oracle's hits in this run.
	if rg.HitVsOracle < 0.9 {
		t.Errorf("cortex prefix hit rate %.2f× the oracle's, want ≥ 0.9×", rg.HitVsOracle)
	}
	for _, worse := range rg.WorseThanCHWBL {
		// Prefix affinity costs an even count of requests in flight:
		// cortex keeps a request where its prefix is while its wait
		// there is within 2.5× the soonest replica's, CHWBL caps the
		// count at 1.25× the mean (2.11 against 1.42 max/mean here, the
		// oracle 2.05).
		if worse != "max/mean load" {
			t.Errorf("cortex is worse than CHWBL on %s", worse)
		}
	}

	// Routing to the soonest first token, counting the prefix a replica
	// holds: 1.28× the oracle's mean TTFT in this run (bounding the
	// requests in flight instead, as the gateway did before, 2.07×), at
	// a decode no slower than CHWBL's for the busier replicas.
	cx, or, ch := pt.ByName["cortex"], pt.ByName["oracle"], pt.ByName["chwbl"]
	if cx.Mean() > 1.5*or.Mean() {
		t.Errorf("cortex mean TTFT %.2f s, %.2f× the oracle's; want ≤ 1.5×", cx.Mean(), cx.Mean()/or.Mean())
	}
	if cx.MeanTPOT() > ch.MeanTPOT() {
		t.Errorf("cortex mean time per output token %.2f ms, CHWBL's %.2f ms", 1000*cx.MeanTPOT(), 1000*ch.MeanTPOT())
	}

	// Two gateway replicas (the chart's default) each see half the
	// conversations; the prefix sync gives back what that costs. In this
	// run: hits 0.73× → 1.07× the oracle's, mean TTFT 2.24 → 0.73 s.
	split, err := RunRouting(moon.Scale(5), Classes["H100"], 8, CortexGateways(2, false))
	if err != nil {
		t.Fatal(err)
	}
	synced, err := RunRouting(moon.Scale(5), Classes["H100"], 8, CortexGateways(2, true))
	if err != nil {
		t.Fatal(err)
	}
	oracleHits := pt.ByName["oracle"].HitRate()
	t.Logf("two gateways at 5×: hits %.2f× → %.2f× the oracle's, mean TTFT %.2f → %.2f s with the prefix sync",
		split.HitRate()/oracleHits, synced.HitRate()/oracleHits, split.Mean(), synced.Mean())
	if synced.HitRate() < 1.08*split.HitRate() || synced.Mean() > 0.85*split.Mean() {
		t.Errorf("the prefix sync gains too little: hits %.3f → %.3f (want ≥ 1.08×), mean TTFT %.2f → %.2f s (want ≤ 0.85×)",
			split.HitRate(), synced.HitRate(), split.Mean(), synced.Mean())
	}
	if synced.HitRate() < 0.88*oracleHits {
		t.Errorf("two synced gateways find %.2f× the oracle's prefix hits, want ≥ 0.88×", synced.HitRate()/oracleHits)
	}
}

// On replicas alternately on H100 and L4 (about 8× slower to prefill),
// the balancer weighs each replica's wait by its prefill rate: in this run
// 0.48× least-load's mean TTFT at half the trace's rate, against 1.13×
// when it counted prompt bytes alone.
func TestRoutingOnMixedGPUsWeighsSpeed(t *testing.T) {
	moon, err := LoadMooncake(filepath.Join(tracesDir(t), "mooncake-synthetic.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	classes := []GPUClass{Classes["H100"], Classes["L4"]}
	run := func(r Router) *Result {
		res, err := RunMixedRouting(moon.Scale(0.5), classes, 8, r)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	cx, ll, or := run(CortexRouter()), run(LeastLoad()), run(Oracle())
	t.Logf("mixed GPUs at 0.5×: mean TTFT cortex %.2f s, least-load %.2f s, oracle %.2f s", cx.Mean(), ll.Mean(), or.Mean())
	if cx.Mean() > 0.7*ll.Mean() || cx.Mean() > 1.5*or.Mean() {
		t.Errorf("cortex mean TTFT %.2f s on mixed GPUs: %.2f× least-load's (want ≤ 0.7×), %.2f× the oracle's (want ≤ 1.5×)",
			cx.Mean(), cx.Mean()/ll.Mean(), cx.Mean()/or.Mean())
	}
}

// On nodes whose two GPUs each hold a replica of a different model, the
// balancer counts a replica's load per GPU and its sequence wait per
// model: in this run 1.28× the oracle's mean TTFT at 4× the trace's rate,
// against 1.72× when it counted every request on a neuron together.
func TestRoutingCountsLoadPerGPU(t *testing.T) {
	moon, err := LoadMooncake(filepath.Join(tracesDir(t), "mooncake-synthetic.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	run := func(r Router) *Result {
		res, err := RunSharedRouting(moon.Scale(4), Classes["H100"], 4, r)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	cx, or := run(CortexRouter()), run(Oracle())
	t.Logf("shared nodes at 4×: mean TTFT cortex %.2f s, oracle %.2f s", cx.Mean(), or.Mean())
	if cx.Mean() > 1.5*or.Mean() {
		t.Errorf("cortex mean TTFT %.2f s on shared nodes: %.2f× the oracle's, want ≤ 1.5×", cx.Mean(), cx.Mean()/or.Mean())
	}
}

func TestMinGPUsIsNotFooledByANonMonotoneFleet(t *testing.T) {
	att := func(pass func(g int) bool) func(int) (*Result, error) {
		return func(g int) (*Result, error) {
			r := &Result{Requests: 100, SLOMet: 98}
			if pass(g) {
				r.SLOMet = 100
			}
			return r, nil
		}
	}
	for _, tt := range []struct {
		name string
		pass func(int) bool
		want int
	}{
		{"monotone", func(g int) bool { return g >= 7 }, 7},
		{"a dip above the threshold", func(g int) bool { return g >= 10 && g != 27 }, 28},
		{"never", func(int) bool { return false }, 41},
	} {
		got, tried, err := MinGPUs(1, 40, 0.99, att(tt.pass))
		if err != nil || got != tt.want {
			t.Errorf("%s: %d (tried %v), want %d", tt.name, got, tried, tt.want)
		}
	}
}

func TestLoadImbalanceFloor(t *testing.T) {
	r := &Result{Samples: []Sample{
		{InFlight: map[string]int{"a": 1, "b": 1, "c": 1, "d": 0}}, // mean 0.75: ⌈⌉ 1, 1.33
		{InFlight: map[string]int{"a": 4, "b": 4, "c": 4, "d": 4}}, // 1
		{InFlight: map[string]int{"a": 0, "b": 0, "c": 0, "d": 0}}, // nothing in flight: skipped
	}}
	if got, want := r.LoadImbalanceFloor(), (4.0/3+1)/2; math.Abs(got-want) > 1e-9 {
		t.Errorf("floor %v, want %v", got, want)
	}
	if got, want := r.LoadImbalance(), (4.0/3+1)/2; math.Abs(got-want) > 1e-9 {
		t.Errorf("imbalance %v, want %v (these samples are as even as whole requests allow)", got, want)
	}
}
