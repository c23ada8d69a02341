package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/devices"
	"github.com/helexa-ai/cortex/internal/engine/llamacpp"
	"github.com/helexa-ai/cortex/internal/gateway"
	"github.com/helexa-ai/cortex/internal/neuron"
	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// The overload sweep (-overload): a real neuron with the llama.cpp engine
// on a small real model, behind the real gateway, both in this process on
// loopback. For every offered load and configuration it starts a fresh
// stack, measures capacity with a closed loop, then offers open-loop Poisson
// arrivals at that multiple of it, and reports goodput (answers that
// succeeded within the SLO, per second of offered load), rejections and the
// latency of successes. The configurations:
//
//   - limits: the gateway's defaults (per-replica and gateway-wide bounds,
//     a bounded admission wait) over a neuron with its default queue;
//   - neuron queue only: no gateway bounds; the neuron's own bounded queue
//     (parallel + 4 × parallel) answers 429 when full;
//   - no limits: no gateway bounds and a neuron queue too deep to fill, the
//     unbounded queueing the limits prevent.
var (
	overload      = flag.Bool("overload", false, "run the overload sweep instead of the overhead table")
	olModel       = flag.String("model", filepath.Join("..", "shared", "models", "stories260K.gguf"), "GGUF the neuron serves (overload)")
	olLoads       = flag.String("loads", "0.5,1,1.5,2,3", "offered load as multiples of measured capacity (overload)")
	olCell        = flag.Duration("cell", 20*time.Second, "how long arrivals are offered per load (overload)")
	olSLO         = flag.Duration("slo", 5*time.Second, "a success counts as goodput when answered within this (overload)")
	olTimeout     = flag.Duration("client-timeout", 15*time.Second, "clients give up after this (overload)")
	olParallel    = flag.Int("parallel", 4, "the Model's parallel sequences (overload)")
	olThreads     = flag.Int("threads", 1, "CPU threads for the model (overload)")
	olMaxTokens   = flag.Int("max-tokens", 48, "tokens generated per request (overload)")
	olConfigs     = flag.String("configs", "limits,neuron-queue,none", "configurations to sweep: limits, neuron-queue, none (overload)")
	olCapacityFor = flag.Duration("capacity-time", 10*time.Second, "how long the closed loop measuring capacity runs (overload)")
)

// olConfig is one way of running the stack.
type olConfig struct {
	name      string
	admission gateway.AdmissionConfig
	queueSize int // the neuron's; 0: its default
}

func overloadConfigs() ([]olConfig, error) {
	all := map[string]olConfig{
		"limits":       {name: "limits (defaults)", admission: gateway.DefaultAdmissionConfig()},
		"neuron-queue": {name: "neuron queue only", admission: gateway.AdmissionConfig{}},
		"none":         {name: "no limits", admission: gateway.AdmissionConfig{}, queueSize: 1 << 20},
	}
	var out []olConfig
	for _, n := range strings.Split(*olConfigs, ",") {
		c, ok := all[strings.TrimSpace(n)]
		if !ok {
			return nil, fmt.Errorf("unknown configuration %q", n)
		}
		out = append(out, c)
	}
	return out, nil
}

// olStack is a neuron and a gateway in front of it.
type olStack struct {
	gatewayURL string
	stop       func()
}

const (
	olToken = "overload-bench"
	olKey   = "bench/stories"
)

var (
	engineOnce sync.Once
	theEngine  *llamacpp.Engine
	engineErr  error
)

func startOverloadStack(cfg olConfig, modelPath string) (*olStack, error) {
	engineOnce.Do(func() {
		theEngine, engineErr = llamacpp.New(llamacpp.Options{Logger: slog.New(slog.DiscardHandler)})
	})
	if engineErr != nil {
		return nil, fmt.Errorf("starting llama.cpp: %w", engineErr)
	}
	cache, err := os.MkdirTemp("", "overload-bench-")
	if err != nil {
		return nil, err
	}
	ncfg := neuron.DefaultConfig()
	ncfg.Addr = "127.0.0.1:0"
	ncfg.NodeName = "bench-node"
	ncfg.Token = olToken
	ncfg.CacheDir = cache
	ncfg.DisableRegistration = true
	ncfg.Engine = theEngine
	ncfg.Threads = *olThreads
	ncfg.QueueSize = cfg.queueSize
	ncfg.Devices = devices.NewStatic(devices.Device{Index: 0, Kind: devices.KindCPU, Name: "cpu", MemoryTotal: 8 << 30, MemoryFree: 8 << 30})
	ctx, cancel := context.WithCancel(context.Background())
	n, err := neuron.Start(ctx, ncfg)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("starting the neuron: %w", err)
	}
	stop := func() {
		cancel()
		_ = n.Wait()
		_ = os.RemoveAll(cache)
	}
	nc := neuronapi.NewClient(olToken)
	_, err = nc.Load(ctx, n.URL(), neuronapi.LoadRequest{
		Name: olKey, Source: neuronapi.Source{URI: "file://" + modelPath},
		Engine: neuronapi.EngineConfig{Parallel: *olParallel, ContextLength: 512},
	})
	if err != nil {
		stop()
		return nil, fmt.Errorf("loading %s: %w", modelPath, err)
	}
	for deadline := time.Now().Add(time.Minute); ; {
		ms, err := nc.Models(ctx, n.URL())
		if err == nil && len(ms.Models) == 1 && ms.Models[0].State == neuronapi.StateReady {
			break
		}
		if err == nil && len(ms.Models) == 1 && ms.Models[0].State == neuronapi.StateFailed {
			stop()
			return nil, fmt.Errorf("loading %s: %s", modelPath, ms.Models[0].Error)
		}
		if time.Now().After(deadline) {
			stop()
			return nil, errors.New("the model did not load within a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}

	gcfg := gateway.DefaultConfig()
	gcfg.AllowAnonymous = true
	gcfg.NeuronToken = olToken
	gcfg.Admission = cfg.admission
	g, err := gateway.New(gcfg, gateway.Options{})
	if err != nil {
		stop()
		return nil, err
	}
	nn := &cortexv1.NeuronNode{ObjectMeta: metav1.ObjectMeta{Name: "bench-node"}}
	nn.Status.Endpoint = n.URL()
	nn.Status.Conditions = []metav1.Condition{{Type: cortexv1.NeuronNodeConditionReady, Status: metav1.ConditionTrue}}
	g.Catalog().UpsertNode(nn)
	m := &cortexv1.Model{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "stories"}}
	m.Spec.Engine.Parallel = int32(*olParallel)
	m.Status.Replicas = []cortexv1.Replica{{Node: "bench-node", State: cortexv1.ReplicaReady}}
	g.Catalog().UpsertModel(m)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		stop()
		return nil, err
	}
	srv := &http.Server{Handler: g.Handler(logr.Discard()), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &olStack{gatewayURL: "http://" + ln.Addr().String(), stop: func() {
		_ = srv.Close()
		stop()
	}}, nil
}

// olOutcome is one request's end.
type olOutcome struct {
	status  int // 0: no answer (client timeout or connection error)
	latency time.Duration
}

// olRequests are the two dialects the sweep alternates between.
func olRequests() [2]struct {
	path string
	body []byte
} {
	prompt := "Once upon a time, a little girl named Lily"
	return [2]struct {
		path string
		body []byte
	}{
		{"/v1/chat/completions", []byte(fmt.Sprintf(`{"model":"stories","max_tokens":%d,"temperature":0.8,"messages":[{"role":"user","content":%q}]}`, *olMaxTokens, prompt))},
		{"/v1/messages", []byte(fmt.Sprintf(`{"model":"stories","max_tokens":%d,"messages":[{"role":"user","content":%q}]}`, *olMaxTokens, prompt))},
	}
}

func olSend(client *http.Client, base string, i int) olOutcome {
	reqs := olRequests()
	r := reqs[i%2]
	ctx, cancel := context.WithTimeout(context.Background(), *olTimeout)
	defer cancel()
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+r.path, bytes.NewReader(r.body))
	if err != nil {
		return olOutcome{}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("anthropic-version", "2023-06-01")
	resp, err := client.Do(req)
	if err != nil {
		return olOutcome{latency: time.Since(start)}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return olOutcome{latency: time.Since(start)}
	}
	return olOutcome{status: resp.StatusCode, latency: time.Since(start)}
}

// measureCapacity runs a closed loop with enough clients to keep every
// sequence busy and returns the successful answers per second.
func measureCapacity(client *http.Client, base string, d time.Duration) float64 {
	conc := 4 * *olParallel
	var mu sync.Mutex
	ok := 0
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for c := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; time.Now().Before(deadline); i += conc {
				if o := olSend(client, base, i); o.status == http.StatusOK {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return float64(ok) / time.Since(start).Seconds()
}

// olCellResult summarises one offered load.
type olCellResult struct {
	offered, goodput  float64
	sent, ok, inSLO   int
	rejected, failed  int
	p50, p99          time.Duration
	rejectP99         time.Duration
	maxOutstandingReq int
}

// offer sends Poisson arrivals at rate per second for d, waits for every
// answer, and summarises.
func offer(client *http.Client, base string, rate float64, d time.Duration, seed uint64) olCellResult {
	rng := rand.New(rand.NewPCG(seed, 7))
	var mu sync.Mutex
	var outs []olOutcome
	var wg sync.WaitGroup
	outstanding, maxOut := 0, 0
	start := time.Now()
	next := start
	for i := 0; ; i++ {
		next = next.Add(time.Duration(rng.ExpFloat64() / rate * float64(time.Second)))
		if next.Sub(start) >= d {
			break
		}
		time.Sleep(time.Until(next))
		wg.Add(1)
		mu.Lock()
		outstanding++
		maxOut = max(maxOut, outstanding)
		mu.Unlock()
		go func() {
			defer wg.Done()
			o := olSend(client, base, i)
			mu.Lock()
			outs = append(outs, o)
			outstanding--
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := olCellResult{offered: float64(len(outs)) / d.Seconds(), sent: len(outs), maxOutstandingReq: maxOut}
	var okLat, rejLat []time.Duration
	for _, o := range outs {
		switch o.status {
		case http.StatusOK:
			r.ok++
			okLat = append(okLat, o.latency)
			if o.latency <= *olSLO {
				r.inSLO++
			}
		case http.StatusTooManyRequests, 529:
			r.rejected++
			rejLat = append(rejLat, o.latency)
		default:
			r.failed++
		}
	}
	r.goodput = float64(r.inSLO) / d.Seconds()
	r.p50, r.p99 = quantile(okLat, 0.5), quantile(okLat, 0.99)
	r.rejectP99 = quantile(rejLat, 0.99)
	return r
}

// loadAverage is the host's 1-minute load average, which says how much of
// the CPU other work took while a cell ran ("?" where unknown).
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(math.Floor(q*float64(len(d)))))]
}

func secs(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + " s"
}

func runOverload() error {
	modelPath, err := filepath.Abs(*olModel)
	if err != nil {
		return err
	}
	if _, err := os.Stat(modelPath); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	configs, err := overloadConfigs()
	if err != nil {
		return err
	}
	var loads []float64
	for _, s := range strings.Split(*olLoads, ",") {
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || f <= 0 {
			return fmt.Errorf("bad load %q", s)
		}
		loads = append(loads, f)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4096, MaxIdleConns: 4096, DisableCompression: true}}

	fmt.Printf("overload sweep: %s, parallel %d, %d thread(s), %d tokens per answer, half OpenAI chat and half Anthropic messages\n",
		filepath.Base(modelPath), *olParallel, *olThreads, *olMaxTokens)
	fmt.Printf("per cell: a fresh stack, capacity measured by a closed loop (%d clients, %s), then %s of Poisson arrivals at load × that capacity; SLO %s; clients give up after %s\n\n",
		4**olParallel, *olCapacityFor, *olCell, *olSLO, *olTimeout)
	// Cells run load by load, every configuration in turn, each against the
	// capacity measured just before it: on a shared machine the CPU left to
	// the benchmark drifts, and goodput is only comparable to the capacity
	// of the same moment.
	type row struct {
		capacity float64
		loadavg  string
		olCellResult
	}
	rows := make([][]row, len(configs))
	for li, l := range loads {
		for ci, cfg := range configs {
			st, err := startOverloadStack(cfg, modelPath)
			if err != nil {
				return err
			}
			for i := range 2 * *olParallel {
				_ = olSend(client, st.gatewayURL, i) // warm the model and connections
			}
			loadavg := loadAverage()
			capacity := measureCapacity(client, st.gatewayURL, *olCapacityFor)
			if capacity <= 0 {
				st.stop()
				return errors.New("no request succeeded while measuring capacity")
			}
			r := offer(client, st.gatewayURL, l*capacity, *olCell, uint64(li+1))
			st.stop()
			rows[ci] = append(rows[ci], row{capacity, loadavg, r})
			fmt.Fprintf(os.Stderr, "%s at %.1f×: capacity %.1f, goodput %.1f\n", cfg.name, l, capacity, r.goodput)
		}
	}
	fmt.Println("| configuration | load | host load avg | capacity req/s | offered req/s | goodput req/s | goodput / capacity | of peak | ok | in SLO | 429/529 | failed | p50 ok | p99 ok | p99 rejection | most outstanding |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for ci, cfg := range configs {
		peak := 0.0
		for _, r := range rows[ci] {
			peak = max(peak, r.goodput/r.capacity)
		}
		for li, r := range rows[ci] {
			rel := r.goodput / r.capacity
			fmt.Printf("| %s | %.1f× | %s | %.1f | %.1f | %.1f | %.2f | %.2f | %d | %d | %d | %d | %s | %s | %s | %d |\n",
				cfg.name, loads[li], r.loadavg, r.capacity, r.offered, r.goodput, rel, rel/peak, r.ok, r.inSLO, r.rejected, r.failed,
				secs(r.p50), secs(r.p99), secs(r.rejectP99), r.maxOutstandingReq)
		}
	}
	return nil
}
