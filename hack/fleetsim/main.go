// Command fleetsim runs the fleet simulator's benchmarks (internal/fleetsim):
// the churn comparison of cortex against Ollama-style, LRU and dedicated
// GPUs, the fewest GPUs each needs for 99 % SLO attainment, and the
// routing comparison; it prints Markdown tables and writes plots.
package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/helexa-ai/cortex/internal/fleetsim"
	"github.com/helexa-ai/cortex/internal/gateway"
)

type config struct {
	traces, out           string
	hours, sweepHours     int
	models, gpus          int
	skew                  float64
	seed                  uint64
	class                 string
	routingReplicas       int
	skipBisect, skipSweep bool
}

func main() {
	var c config
	flag.StringVar(&c.traces, "traces", "../shared/traces", "directory of the public traces")
	flag.StringVar(&c.out, "out", "docs/img", "directory for the plots")
	flag.IntVar(&c.hours, "hours", 24, "hours simulated in the main churn run (the Azure hour repeated)")
	flag.IntVar(&c.sweepHours, "sweep-hours", 6, "hours simulated per run of the sweeps and the bisection")
	flag.IntVar(&c.models, "models", 200, "models in the churn fleet")
	flag.IntVar(&c.gpus, "gpus", 32, "GPUs in the churn fleet (one per node)")
	flag.Float64Var(&c.skew, "skew", 1.0, "Zipf exponent of model popularity")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the model sizes and the popularity draw")
	flag.StringVar(&c.class, "class", "H100", "GPU class (H100, H200, L4, A10, CPU)")
	flag.IntVar(&c.routingReplicas, "replicas", 8, "replicas in the routing benchmark")
	flag.BoolVar(&c.skipBisect, "skip-bisect", false, "skip the fewest-GPUs bisection")
	flag.BoolVar(&c.skipSweep, "skip-sweep", false, "skip the keep-alive and skew sweeps")
	flag.Parse()
	if err := run(c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fleetsim:", err)
		os.Exit(1)
	}
}

func run(c config, w io.Writer) error {
	class, err := fleetsim.Class(c.class)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	azure, err := fleetsim.LoadAzure(filepath.Join(c.traces, "azure-llm-2023-conv.csv"))
	if err != nil {
		return err
	}
	started := time.Now()
	models := fleetsim.ChurnModels(c.models, c.seed, 8192, 4, 4, 15*time.Minute)
	var total int64
	for _, m := range models {
		total += m.Bytes
	}
	day := azure.Repeat(c.hours).AssignZipf(c.models, c.skew, c.seed)
	fmt.Fprintf(w, "## Churn: %d models on %d %s GPUs\n\n", c.models, c.gpus, class.Name)
	fmt.Fprintf(w, "Trace: %s (%d requests over %.1f h). Models: %d, %.0f GiB in all (replicas with 8k context × 4 parallel), sizes drawn from the 3B–70B mix with seed %d; fleet memory %.0f GiB.\n\n",
		day.Name, len(day.Requests), day.Duration()/3600, c.models, gib(total), c.seed, gib(int64(c.gpus)*class.MemoryBytes))
	policies := []fleetsim.Policy{
		fleetsim.Cortex(),
		fleetsim.CortexSpecKeepAlive(),
		fleetsim.CortexNoRate(),
		fleetsim.CortexLoadingPoll(5 * time.Second),
		fleetsim.OllamaStyle(5 * time.Minute),
		fleetsim.LRU(),
		fleetsim.Dedicated(30 * time.Second),
	}
	var rows []*fleetsim.Result
	for _, p := range policies {
		r, err := fleetsim.ChurnRun(day, models, class, c.gpus, p, 0)
		if err != nil {
			return err
		}
		rows = append(rows, r)
	}
	churnTable(w, rows)
	cortex, ollama := rows[0], rows[4]
	g := fleetsim.CompareChurn(cortex, ollama)
	fmt.Fprintf(w, "\nGoal (cortex vs Ollama-style, same run): cold-start fraction %.2f× (goal ≤ 0.5×), GPU memory-time %.2f× (goal ≤ 1.0×), requests Ollama-style served that cortex lost: %d — %s.\n\n",
		g.ColdRatio, g.MemRatio, g.Lost, metStr(g.Met()))
	var cdf []fleetsim.Series
	for _, r := range rows {
		cdf = append(cdf, fleetsim.CDF(r.Policy, r.All(), r.Requests))
	}
	if err := fleetsim.PlotXY(filepath.Join(c.out, "fleet-ttft-cdf.svg"), fmt.Sprintf("TTFT, %d models on %d GPUs, %d h", c.models, c.gpus, c.hours),
		"time to first token (s)", "fraction of requests", true, cdf); err != nil {
		return err
	}

	short := azure.Repeat(c.sweepHours).AssignZipf(c.models, c.skew, c.seed)
	if !c.skipSweep {
		if err := frontier(w, c, short, models, class); err != nil {
			return err
		}
		if err := skews(w, c, azure, models, class); err != nil {
			return err
		}
	}
	if !c.skipBisect {
		if err := fewestGPUs(w, c, short, models, class); err != nil {
			return err
		}
	}
	if err := routing(w, c, class); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nAll runs took %s of wall time.\n", time.Since(started).Round(time.Second))
	return nil
}

func gib(b int64) float64 { return float64(b) / float64(fleetsim.GiB) }

func metStr(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**not met**"
}

func churnTable(w io.Writer, rows []*fleetsim.Result) {
	fmt.Fprintln(w, "| Policy | Cold-start fraction | Cold: first / evicted / idled out / loading | TTFT p50 / p99 warm (s) | TTFT p50 / p99 cold (s) | Failed | SLO attainment | GPU memory (GiB·h) | Loads | Evictions | Idle unloads |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %.4f | %d / %d / %d / %d | %s / %s | %s / %s | %d | %.4f | %.0f | %d | %d | %d |\n", r.Policy, r.ColdFraction(),
			r.ColdBy[fleetsim.ColdFirst], r.ColdBy[fleetsim.ColdEvicted], r.ColdBy[fleetsim.ColdIdle], r.ColdBy[fleetsim.ColdLoading],
			sec(fleetsim.Quantile(r.TTFTWarm, .5)), sec(fleetsim.Quantile(r.TTFTWarm, .99)),
			sec(fleetsim.Quantile(r.TTFTCold, .5)), sec(fleetsim.Quantile(r.TTFTCold, .99)),
			r.Failed, r.SLOAttainment(), r.MemGiBHours, r.Loads, r.Evictions, r.IdleUnloads)
	}
}

func sec(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	if v < 10 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// frontier sweeps the fixed keep-alive of Ollama-style and the learned
// keep-alive's worth of a cold start: cold-start fraction against memory.
func frontier(w io.Writer, c config, tr *fleetsim.Trace, models []fleetsim.ModelSpec, class fleetsim.GPUClass) error {
	fmt.Fprintf(w, "### Cold starts against GPU memory-time (%d h)\n\n", c.sweepHours)
	fmt.Fprintln(w, "| Policy | Setting | Cold-start fraction | GPU memory (GiB·h) |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	var ol, learned, fixed fleetsim.Series
	ol.Name, learned.Name, fixed.Name = "ollama-style, keep-alive 1–60 min", "cortex, learned keep-alive", "cortex, spec keep-alive 1–60 min"
	for _, ka := range []time.Duration{time.Minute, 2 * time.Minute, 5 * time.Minute, 15 * time.Minute, 60 * time.Minute} {
		r, err := fleetsim.ChurnRun(tr, models, class, c.gpus, fleetsim.OllamaStyle(ka), 0)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "| ollama-style | keep-alive %s | %.4f | %.0f |\n", ka, r.ColdFraction(), r.MemGiBHours)
		ol.X, ol.Y = append(ol.X, r.MemGiBHours), append(ol.Y, r.ColdFraction())
		ms := make([]fleetsim.ModelSpec, len(models))
		for i, m := range models {
			m.KeepAlive = ka
			ms[i] = m
		}
		r, err = fleetsim.ChurnRun(tr, ms, class, c.gpus, fleetsim.CortexSpecKeepAlive(), 0)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "| cortex, spec keep-alive | keep-alive %s | %.4f | %.0f |\n", ka, r.ColdFraction(), r.MemGiBHours)
		fixed.X, fixed.Y = append(fixed.X, r.MemGiBHours), append(fixed.Y, r.ColdFraction())
	}
	for _, worth := range []float64{0.5, 1, 2, 4, 8} {
		r, err := fleetsim.ChurnRun(tr, models, class, c.gpus, fleetsim.CortexLearned(worth*float64(fleetsim.GiB)*3600), 0)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "| cortex, learned keep-alive | a cold start worth %g GiB·h | %.4f | %.0f |\n", worth, r.ColdFraction(), r.MemGiBHours)
		learned.X, learned.Y = append(learned.X, r.MemGiBHours), append(learned.Y, r.ColdFraction())
	}
	lru, err := fleetsim.ChurnRun(tr, models, class, c.gpus, fleetsim.LRU(), 0)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "| lru | – | %.4f | %.0f |\n\n", lru.ColdFraction(), lru.MemGiBHours)
	pts := fleetsim.Series{Name: "lru", X: []float64{lru.MemGiBHours}, Y: []float64{lru.ColdFraction()}, Points: true}
	return fleetsim.PlotXY(filepath.Join(c.out, "fleet-cold-vs-memory.svg"),
		fmt.Sprintf("Cold starts vs GPU memory-time, %d models on %d GPUs, %d h", c.models, c.gpus, c.sweepHours),
		"GPU memory held (GiB·h)", "cold-start fraction", false, []fleetsim.Series{ol, fixed, learned, pts})
}

func skews(w io.Writer, c config, azure *fleetsim.Trace, models []fleetsim.ModelSpec, class fleetsim.GPUClass) error {
	fmt.Fprintf(w, "### Skew swept (%d h each)\n\n", c.sweepHours)
	fmt.Fprintln(w, "| Zipf s | Cold-start fraction cortex / ollama-style | Ratio | GPU memory cortex / ollama-style (GiB·h) | Ratio | Lost vs ollama-style | SLO cortex / ollama-style |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
	for _, s := range []float64{0.8, 1.0, 1.2} {
		tr := azure.Repeat(c.sweepHours).AssignZipf(c.models, s, c.seed)
		cx, err := fleetsim.ChurnRun(tr, models, class, c.gpus, fleetsim.Cortex(), 0)
		if err != nil {
			return err
		}
		ol, err := fleetsim.ChurnRun(tr, models, class, c.gpus, fleetsim.OllamaStyle(5*time.Minute), 0)
		if err != nil {
			return err
		}
		g := fleetsim.CompareChurn(cx, ol)
		fmt.Fprintf(w, "| %g | %.4f / %.4f | %.2f× | %.0f / %.0f | %.2f× | %d | %.4f / %.4f |\n", s, cx.ColdFraction(), ol.ColdFraction(), g.ColdRatio,
			cx.MemGiBHours, ol.MemGiBHours, g.MemRatio, g.Lost, cx.SLOAttainment(), ol.SLOAttainment())
	}
	fmt.Fprintln(w)
	return nil
}

func fewestGPUs(w io.Writer, c config, tr *fleetsim.Trace, models []fleetsim.ModelSpec, class fleetsim.GPUClass) error {
	fmt.Fprintf(w, "### Fewest GPUs for 99 %% SLO attainment (%d h, TTFT ≤ %g s warm, ≤ %g s cold)\n\n", c.sweepHours, fleetsim.SLOWarm, fleetsim.SLOCold)
	fmt.Fprintln(w, "The fewest GPUs from which every larger fleet tried also reaches 99 % (attainment is not monotone in the fleet size), with the attainment at each size tried.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Policy | GPUs | Attainment by GPUs tried |")
	fmt.Fprintln(w, "| --- | --- | --- |")
	hi := 2 * c.models
	found := map[string]int{}
	for _, mk := range []func() fleetsim.Policy{
		fleetsim.Cortex,
		func() fleetsim.Policy { return fleetsim.CortexLoadingPoll(5 * time.Second) },
		func() fleetsim.Policy { return fleetsim.OllamaStyle(5 * time.Minute) },
		fleetsim.LRU,
		func() fleetsim.Policy { return fleetsim.Dedicated(30 * time.Second) },
	} {
		name := mk().Name()
		n, tried, err := fleetsim.MinGPUs(1, hi, 0.99, func(g int) (*fleetsim.Result, error) {
			return fleetsim.ChurnRun(tr, models, class, g, mk(), 0)
		})
		if err != nil {
			return err
		}
		found[name] = n
		var gs []int
		for g := range tried {
			gs = append(gs, g)
		}
		slices.Sort(gs)
		var scan []string
		for _, g := range gs {
			scan = append(scan, fmt.Sprintf("%d: %.4f", g, tried[g]))
		}
		if n > hi {
			fmt.Fprintf(w, "| %s | not reached with %d | %s |\n", name, hi, strings.Join(scan, ", "))
		} else {
			fmt.Fprintf(w, "| %s | %d | %s |\n", name, n, strings.Join(scan, ", "))
		}
	}
	d := found["dedicated"]
	r := float64(found["cortex"]) / float64(d)
	fmt.Fprintf(w, "\nGoal (cortex ≤ 0.4× dedicated): %.2f× — %s.\n", r, metStr(found["cortex"] <= hi && r <= 0.4))
	fmt.Fprintln(w)
	return nil
}

func routing(w io.Writer, c config, class fleetsim.GPUClass) error {
	base, err := fleetsim.LoadMooncake(filepath.Join(c.traces, "mooncake-synthetic.jsonl"))
	if err != nil {
		return err
	}
	m := fleetsim.RoutingModel(c.routingReplicas)
	fmt.Fprintf(w, "## Routing: one %s model, %d replicas on %s\n\n", m.Size.Name, c.routingReplicas, class.Name)
	fmt.Fprintf(w, "Trace: %s (%d requests over %.0f s at 1×), time compressed by the load factor. Prefix cache per replica: %d blocks of %d tokens.\n\n",
		base.Name, len(base.Requests), base.Duration(), m.ContextLength*m.Parallel/fleetsim.BlockTokens, fleetsim.BlockTokens)
	fmt.Fprintln(w, "| Load | Router | Mean TTFT (s) | p99 TTFT (s) | TPOT mean / p99 (ms) | Max/mean load | Even floor | Prefix hit rate |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- |")
	var points []fleetsim.RoutingPoint
	series := map[string]*fleetsim.Series{}
	var order []string
	for _, f := range []float64{0.5, 1, 2, 3, 4, 5, 6} {
		tr := base.Scale(f)
		pt := fleetsim.RoutingPoint{Factor: f, ByName: map[string]*fleetsim.Result{}}
		for _, r := range []fleetsim.Router{fleetsim.RoundRobin(), fleetsim.LeastLoad(), fleetsim.CHWBL(), fleetsim.CortexRouter(), fleetsim.Oracle()} {
			res, err := fleetsim.RunRouting(tr, class, c.routingReplicas, r)
			if err != nil {
				return err
			}
			pt.ByName[r.Name()] = res
			p99 := fleetsim.Quantile(res.All(), .99)
			fmt.Fprintf(w, "| %g× | %s | %s | %s | %s | %.2f | %.2f | %.3f |\n", f, r.Name(), sec(res.Mean()), sec(p99), tpot(res), res.LoadImbalance(), res.LoadImbalanceFloor(), res.HitRate())
			s := series[r.Name()]
			if s == nil {
				s = &fleetsim.Series{Name: r.Name()}
				series[r.Name()] = s
				order = append(order, r.Name())
			}
			s.X, s.Y = append(s.X, f), append(s.Y, p99)
		}
		points = append(points, pt)
	}
	var ss []fleetsim.Series
	for _, n := range order {
		ss = append(ss, *series[n])
	}
	if err := fleetsim.PlotXY(filepath.Join(c.out, "fleet-routing-p99.svg"), fmt.Sprintf("p99 TTFT by router, %d replicas", c.routingReplicas),
		"load (× the trace's rate)", "p99 TTFT (s)", false, ss); err != nil {
		return err
	}
	i := fleetsim.CollapseIndex(points)
	if i < 0 {
		fmt.Fprintln(w, "\nLeast-load did not collapse within the sweep.")
		return nil
	}
	pt := points[i]
	g := fleetsim.CompareRouting(pt)
	fmt.Fprintf(w, "\nLeast-load's p99 first exceeds 10× its light-load value at %g×. There, cortex against least-load: mean TTFT %.2f× (goal ≤ 0.25×), p99 %.2f× (≤ 0.5×); max/mean load %.2f (≤ 1.25); prefix hit rate %.2f× the oracle's (≥ 0.9×); worse than CHWBL on: %s — %s.\n",
		pt.Factor, g.MeanVsLeast, g.P99VsLeast, g.Imbalance, g.HitVsOracle, orNone(g.WorseThanCHWBL), metStr(g.Met()))
	if err := routingFrontier(w, c, class, base.Scale(pt.Factor), pt); err != nil {
		return err
	}
	if err := routingGateways(w, c, class, base, pt); err != nil {
		return err
	}
	if err := routingShared(w, c, class, base); err != nil {
		return err
	}
	if err := routingMixed(w, c, base); err != nil {
		return err
	}
	var load []fleetsim.Series
	for _, name := range []string{"least-load", "cortex"} {
		for _, s := range fleetsim.InFlightSeries(pt.ByName[name]) {
			s.Name = name + " " + strings.TrimPrefix(s.Name, m.Key+"@")
			load = append(load, s)
		}
	}
	return fleetsim.PlotXY(filepath.Join(c.out, "fleet-replica-load.svg"), fmt.Sprintf("Requests in flight per replica at %g× load", pt.Factor),
		"time (s)", "requests in flight", false, load)
}

// routingFrontier runs the gateway's balancer at several settings of
// --prefix-imbalance at one load level and sets them beside the other
// routers: the trade between serving each request soonest and finding
// the next one's prefix cached, with the least max/mean load whole
// requests allow at each run's own samples.
func routingFrontier(w io.Writer, c config, class fleetsim.GPUClass, tr *fleetsim.Trace, pt fleetsim.RoutingPoint) error {
	fmt.Fprintf(w, "\nAt %g×, by the gateway's --prefix-imbalance (default %g), beside the other routers. \"Even floor\" is the max/mean load a perfectly even spread of the same requests in flight would have had at each sample.\n\n",
		pt.Factor, gateway.DefaultPrefixImbalance)
	fmt.Fprintln(w, "| Router | Mean TTFT (s) | p99 TTFT (s) | TPOT mean / p99 (ms) | Max/mean load | Even floor | Prefix hits ÷ oracle |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
	oracleHits := pt.ByName["oracle"].HitRate()
	row := func(name string, res *fleetsim.Result) {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %.2f | %.2f | %.2f |\n", name, sec(res.Mean()), sec(fleetsim.Quantile(res.All(), .99)),
			tpot(res), res.LoadImbalance(), res.LoadImbalanceFloor(), res.HitRate()/oracleHits)
	}
	var ss []fleetsim.Series
	for _, name := range []string{"least-load", "chwbl", "oracle"} {
		res := pt.ByName[name]
		row(name, res)
		if name != "least-load" { // off the scale
			ss = append(ss, fleetsim.Series{Name: name, X: []float64{res.HitRate() / oracleHits}, Y: []float64{res.Mean()}, Points: true})
		}
	}
	front := fleetsim.Series{Name: "cortex by --prefix-imbalance (0 … 3)"}
	for _, eps := range []float64{0, 0.5, 1, 1.5, 2, 3} {
		res, err := fleetsim.RunRouting(tr, class, c.routingReplicas, fleetsim.CortexRouterWith(eps))
		if err != nil {
			return err
		}
		row(fmt.Sprintf("cortex, --prefix-imbalance=%g", eps), res)
		front.X, front.Y = append(front.X, res.HitRate()/oracleHits), append(front.Y, res.Mean())
	}
	ss = append(ss, front)
	return fleetsim.PlotXY(filepath.Join(c.out, "fleet-routing-frontier.svg"), fmt.Sprintf("Mean TTFT against prefix hits at %g× load, %d replicas", pt.Factor, c.routingReplicas),
		"prefix hit rate ÷ the oracle's", "mean TTFT (s)", false, ss)
}

// routingGateways runs several gateway replicas, each with its own
// balancer, with and without the prefix sync, at light load and at the
// collapse load: the chart runs two.
func routingGateways(w io.Writer, c config, class fleetsim.GPUClass, base *fleetsim.Trace, pt fleetsim.RoutingPoint) error {
	fmt.Fprintf(w, "\nSeveral gateway replicas, each with its own balancer (load and prefix table), requests spread over them by a hash of the request as a Service spreads connections; \"prefix sync\" shares each replica's routed prefixes and load (requests in flight, prompt bytes awaiting prefill) with the others every %s (--peers). At 2×, %g× and %g×; hits ÷ the oracle's at the same load.\n\n",
		gateway.DefaultPeerSyncInterval, pt.Factor, pt.Factor+1)
	fmt.Fprintln(w, "| Load | Router | Mean TTFT (s) | p99 TTFT (s) | Max/mean load | Prefix hits ÷ oracle |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	for _, f := range []float64{2, pt.Factor, pt.Factor + 1} {
		tr := base.Scale(f)
		oracle, err := fleetsim.RunRouting(tr, class, c.routingReplicas, fleetsim.Oracle())
		if err != nil {
			return err
		}
		for _, r := range []fleetsim.Router{fleetsim.CHWBL(), fleetsim.CortexGateways(1, false), fleetsim.CortexGateways(2, false), fleetsim.CortexGateways(2, true), fleetsim.CortexGateways(3, false), fleetsim.CortexGateways(3, true)} {
			res, err := fleetsim.RunRouting(tr, class, c.routingReplicas, r)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "| %g× | %s | %s | %s | %.2f | %.2f |\n", f, r.Name(), sec(res.Mean()), sec(fleetsim.Quantile(res.All(), .99)),
				res.LoadImbalance(), res.HitRate()/oracle.HitRate())
		}
	}
	return nil
}

// tpot is a run's mean and p99 time per output token, in milliseconds:
// what a replica's decode batch costs the requests in it.
func tpot(r *fleetsim.Result) string {
	return fmt.Sprintf("%.1f / %.1f", 1000*r.MeanTPOT(), 1000*fleetsim.Quantile(r.TPOT, .99))
}

// routingMixed runs the routers on a fleet of mixed GPUs: half the
// replicas on H100, half on L4, which prefills about 8× slower; the
// balancer learns each replica's speed from its answers.
func routingMixed(w io.Writer, c config, base *fleetsim.Trace) error {
	classes := []fleetsim.GPUClass{fleetsim.Classes["H100"], fleetsim.Classes["L4"]}
	m := fleetsim.MixedRoutingModel(c.routingReplicas)
	fmt.Fprintf(w, "\nMixed GPUs: %d replicas of one %s model (%d k context × %d sequences, to fit 24 GB), alternately on H100 and L4; the same trace at lower rates, as this fleet has about 0.56× the prefill capacity.\n\n",
		c.routingReplicas, m.Size.Name, m.ContextLength/1024, m.Parallel)
	fmt.Fprintln(w, "| Load | Router | Mean TTFT (s) | p99 TTFT (s) | Prefix hit rate |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- |")
	for _, f := range []float64{0.5, 1, 2} {
		for _, r := range []fleetsim.Router{fleetsim.LeastLoad(), fleetsim.CHWBL(), fleetsim.CortexRouter(), fleetsim.Oracle()} {
			res, err := fleetsim.RunMixedRouting(base.Scale(f), classes, c.routingReplicas, r)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "| %g× | %s | %s | %s | %.3f |\n", f, r.Name(), sec(res.Mean()), sec(fleetsim.Quantile(res.All(), .99)), res.HitRate())
		}
	}
	return nil
}

// routingShared runs the routers on nodes of two GPUs, each GPU holding a
// replica of one of two models: a neuron serves both, and only the
// requests on one GPU delay each other.
func routingShared(w io.Writer, c config, class fleetsim.GPUClass, base *fleetsim.Trace) error {
	nodes := c.routingReplicas / 2
	fmt.Fprintf(w, "\nModels sharing nodes: %d nodes of two %s, two %s models with a replica on each node, one per GPU; the trace's requests split between the models by their first block.\n\n",
		nodes, class.Name, fleetsim.RoutingModel(nodes).Size.Name)
	fmt.Fprintln(w, "| Load | Router | Mean TTFT (s) | p99 TTFT (s) | Prefix hit rate |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- |")
	for _, f := range []float64{1, 2, 3, 4, 5, 6} {
		for _, r := range []fleetsim.Router{fleetsim.LeastLoad(), fleetsim.CHWBL(), fleetsim.CortexRouter(), fleetsim.Oracle()} {
			res, err := fleetsim.RunSharedRouting(base.Scale(f), class, nodes, r)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "| %g× | %s | %s | %s | %.3f |\n", f, r.Name(), sec(res.Mean()), sec(fleetsim.Quantile(res.All(), .99)), res.HitRate())
		}
	}
	return nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
