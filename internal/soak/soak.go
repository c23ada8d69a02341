// Package soak drives sustained mixed traffic through a local cortex stack
// (internal/localstack: real API server, two managers, two gateways behind
// a loopback balancer, three CPU neurons with the real engine) while it
// injects faults one at a time and then together, and reports, per fault,
// what the clients saw, how long the affected Models took to be routable
// again and how many loads each fault caused; over the whole run, the
// footprint of the processes that lived through it. hack/soak prints the
// full report; test/soak runs a short version and asserts the goals that
// are firm.
package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/localstack"
	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// Namespace holds the soak's Models.
const Namespace = "soak"

// Config sizes a soak run.
type Config struct {
	// Root is the repository (CRDs); BinDir holds the built binaries;
	// Assets the envtest binaries; Work a scratch directory; Model the
	// stories260K.gguf file.
	Root, BinDir, Assets, Work, Model string
	// Faults run in order, each once traffic is steady again; see
	// Faults for the names.
	Faults []string
	// Workers is how many clients send requests back to back.
	Workers int
	// MaxRequests and MaxDuration bound the run: it stops at whichever
	// comes first (faults not yet run are skipped).
	MaxRequests int
	MaxDuration time.Duration
	// Steady is how long traffic runs before the first fault, between two
	// faults and after the last.
	Steady time.Duration
	// RequestTimeout is when a client gives up on one request.
	RequestTimeout time.Duration
	// StaleAfter and Heartbeat are the fleet's heartbeat settings.
	StaleAfter, Heartbeat time.Duration
	// Logf reports progress; Logs gets every process's output.
	Logf func(format string, args ...any)
	Logs io.Writer
}

func (c *Config) defaults() {
	if c.Workers == 0 {
		c.Workers = 6
	}
	if c.MaxRequests == 0 {
		c.MaxRequests = 100000
	}
	if c.MaxDuration == 0 {
		c.MaxDuration = 15 * time.Minute
	}
	if c.Steady == 0 {
		c.Steady = 8 * time.Second
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 90 * time.Second
	}
	if c.StaleAfter == 0 {
		c.StaleAfter = 4 * time.Second
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = time.Second
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// The soak's Models: two warm ones (one replica; a replica on each of two
// nodes) and one that scales to zero and is loaded by its requests.
const (
	warmOne = "warm-one"
	warmTwo = "warm-two"
	cold    = "cold"
)

func models(file string) []*cortexv1.Model {
	mk := func(name, spec string) *cortexv1.Model {
		var m cortexv1.Model
		y := fmt.Sprintf("apiVersion: cortex.helexa.ai/v1alpha1\nkind: Model\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  source:\n    uri: file://%s\n%s", name, Namespace, file, spec)
		if err := yaml.UnmarshalStrict([]byte(y), &m); err != nil {
			panic(err)
		}
		return &m
	}
	return []*cortexv1.Model{
		mk(warmOne, "  replicas: {min: 1, max: 1}\n  engine: {contextLength: 512, parallel: 4}\n"),
		mk(warmTwo, "  replicas: {min: 2, max: 2}\n  engine: {contextLength: 512, parallel: 4}\n"),
		mk(cold, "  replicas: {min: 0, max: 1}\n  keepAlive: 6s\n  engine: {contextLength: 512, parallel: 2}\n"),
	}
}

// Report is what a run measured.
type Report struct {
	// Phases are the fault windows in order, then "steady" (everything
	// outside them).
	Phases []Phase
	// Resources are the footprints of the processes that ran the whole
	// soak, at its start and end (both with no request in flight).
	Resources []Footprint
	Requests  int
	Duration  time.Duration
	// Skipped lists faults the bounds left no room for.
	Skipped []string
	// PrefixesLearned is, with several gateway replicas, how many routed
	// prompt prefixes each learned from the others (the prefix sync), read
	// at the end; a replaced replica counts from its start.
	PrefixesLearned map[string]float64
}

// Phase is one fault's window and what happened in it.
type Phase struct {
	Fault      string
	Note       string
	Start, End time.Time
	Sent       int
	Completed  int
	Abandoned  int
	// Failed counts failures by outcome; WarmFailed those to warm Models.
	Failed     map[Outcome]int
	WarmFailed int
	// NonDialect counts failed answers an SDK would not parse as its
	// dialect's error (connection resets, cut streams, bare bodies).
	NonDialect int
	// Routable is how long after the fault the affected Models were
	// routable again (-1: not measured for this fault).
	Routable time.Duration
	// Loads and DoubleLoads count loads of warm Models in the window, and
	// those beyond what the fault made necessary.
	Loads, DoubleLoads int
	// Examples holds a few failures' details.
	Examples []string
}

// FailedTotal sums the failures.
func (p Phase) FailedTotal() int {
	n := 0
	for _, v := range p.Failed {
		n += v
	}
	return n
}

// Footprint is one process at the start and end of the soak.
type Footprint struct {
	Process    string
	Start, End Resources
}

// Run starts the stack, runs the soak and stops the stack.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	for _, f := range cfg.Faults {
		if _, ok := faults[f]; !ok {
			return nil, fmt.Errorf("unknown fault %q (known: %v)", f, FaultNames())
		}
	}
	cache := filepath.Join(cfg.Work, "cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	file := filepath.Join(cache, "stories260K.gguf")
	if err := copyFile(cfg.Model, file); err != nil {
		return nil, fmt.Errorf("seeding the model cache: %w", err)
	}
	cfg.Logf("Starting the stack: API server, 2 managers, 2 gateways behind a balancer, 3 neurons")
	st, err := localstack.Start(ctx, localstack.Options{
		Dir: filepath.Join(cfg.Work, "stack"), BinDir: cfg.BinDir, Assets: cfg.Assets,
		CRDDir: filepath.Join(cfg.Root, "config", "crd", "bases"), CacheDir: cache,
		Neurons: []localstack.NeuronSpec{
			{Name: "neuron-a", MemoryLimit: "1Gi"}, {Name: "neuron-b", MemoryLimit: "1Gi"}, {Name: "neuron-c", MemoryLimit: "1Gi"},
		},
		StaleAfter: cfg.StaleAfter, Heartbeat: cfg.Heartbeat, PollInterval: 300 * time.Millisecond,
		Gateways: 2, Managers: 2, Logs: cfg.Logs,
		NeuronArgs: []string{"--token-grace=" + TokenGrace.String()},
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := st.Stop(); err != nil {
			cfg.Logf("Stopping the stack: %v", err)
		}
	}()
	return run(ctx, cfg, st, file)
}

func run(ctx context.Context, cfg Config, st *localstack.Stack, file string) (*Report, error) {
	begin := time.Now()
	ctx, cancel := context.WithTimeout(ctx, cfg.MaxDuration)
	defer cancel()
	if err := st.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}); err != nil {
		return nil, err
	}
	for _, m := range models(file) {
		if err := st.Client.Create(ctx, m); err != nil {
			return nil, fmt.Errorf("creating Model %s: %w", m.Name, err)
		}
	}
	rec := &recorder{}
	c := newClient(st.GatewayURL, st.APIKey, cfg.Workers+8, cfg.RequestTimeout)
	f := &fixture{cfg: cfg, st: st, c: c, rec: rec}
	supCtx, stopSup := context.WithCancel(ctx)
	defer stopSup()
	go f.supervise(supCtx)
	if err := f.waitConverged(ctx, 3*time.Minute); err != nil {
		return nil, fmt.Errorf("the warm Models never became Ready: %w", err)
	}
	cfg.Logf("Models ready; starting %d clients", cfg.Workers)

	tokens, err := neuronapi.NewTokenSource(st.TokenFile, "", neuronapi.TokenOptions{Recheck: time.Second})
	if err != nil {
		return nil, err
	}
	res := newResidency(st.NeuronURLs, tokens)
	resCtx, stopRes := context.WithCancel(ctx)
	defer stopRes()
	go res.run(resCtx, 300*time.Millisecond)

	gen := &generator{c: c, rec: rec, warm: []string{warmOne, warmTwo}, cold: cold, workers: cfg.Workers,
		budget: cfg.MaxRequests, coldGap: 9 * time.Second}
	trafficCtx, stopTraffic := context.WithCancel(ctx)
	trafficDone := make(chan struct{})
	go func() { gen.run(trafficCtx); close(trafficDone) }()
	defer func() { stopTraffic(); <-trafficDone }()
	trafficOn := func() bool {
		select {
		case <-trafficDone:
			return false
		default:
			return true
		}
	}

	// Warm every path, then take the starting footprint with no request
	// in flight and no idle client connection.
	sleep(ctx, cfg.Steady)
	startRes := f.footprint(ctx, gen, c)

	rep := &Report{}
	var windows []Phase
	for i, name := range cfg.Faults {
		if ctx.Err() != nil || !trafficOn() {
			rep.Skipped = cfg.Faults[i:]
			break
		}
		cfg.Logf("Fault %s", name)
		ph := Phase{Fault: name, Start: time.Now(), Routable: -1}
		expected, err := faults[name].inject(f, ctx, &ph)
		if err != nil {
			return nil, fmt.Errorf("fault %s: %w", name, err)
		}
		if err := f.waitConverged(ctx, 3*time.Minute); err != nil {
			return nil, fmt.Errorf("after fault %s: %w", name, err)
		}
		// The window closes once every request that could have met the
		// fault has ended.
		sleep(ctx, 2*time.Second)
		ph.End = time.Now()
		for _, l := range res.between(ph.Start, ph.End) {
			if l.model == Namespace+"/"+cold {
				continue
			}
			ph.Loads++
		}
		ph.DoubleLoads = max(0, ph.Loads-expected)
		windows = append(windows, ph)
		cfg.Logf("Fault %s done: %s", name, ph.Note)
		sleep(ctx, cfg.Steady)
	}
	endRes := f.footprint(ctx, gen, c)
	stopTraffic()
	<-trafficDone
	stopRes()

	results := rec.all()
	rep.Requests = len(results)
	rep.Duration = time.Since(begin)
	rep.Phases = attribute(windows, results)
	for _, name := range slices.Concat(st.Gateways, []string{"neuron-a", "neuron-b", "neuron-c"}) {
		s, e := startRes[name], endRes[name]
		if f.restarted[name] {
			continue
		}
		rep.Resources = append(rep.Resources, Footprint{Process: name, Start: s, End: e})
	}
	if len(st.Gateways) > 1 {
		rep.PrefixesLearned = map[string]float64{}
		for _, name := range st.Gateways {
			rep.PrefixesLearned[name] = scrapeAll(ctx, st.MetricsURLs[name], prefixesLearned)[prefixesLearned]
		}
	}
	return rep, nil
}

// prefixesLearned counts the routed prefixes a gateway learned from its
// peers.
const prefixesLearned = `cortex_gateway_prefix_sync_records_total{direction="received"}`

// attribute puts each request in the first fault window its lifetime
// overlaps, or in "steady".
func attribute(windows []Phase, results []Result) []Phase {
	steady := Phase{Fault: "steady", Routable: -1}
	out := append(windows, steady)
	for i := range out {
		out[i].Failed = map[Outcome]int{}
	}
	for _, r := range results {
		p := &out[len(out)-1]
		for i := range windows {
			if r.Start.Before(out[i].End) && r.End.After(out[i].Start) {
				p = &out[i]
				break
			}
		}
		p.Sent++
		switch r.Outcome {
		case OK:
			p.Completed++
		case Abandoned:
			p.Abandoned++
		default:
			p.Failed[r.Outcome]++
			if r.Kind != KindCold {
				p.WarmFailed++
			}
			if !r.Dialect {
				p.NonDialect++
			}
			if len(p.Examples) < 4 {
				p.Examples = append(p.Examples, fmt.Sprintf("%s %s %s: %s", r.Kind, r.Model, r.Outcome, r.Detail))
			}
		}
	}
	return out
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func copyFile(from, to string) error {
	if _, err := os.Stat(to); err == nil {
		return nil
	}
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if len(data) == 0 {
		return errors.New(from + " is empty")
	}
	return os.WriteFile(to, data, 0o644)
}

func keyOf(name string) crclient.ObjectKey {
	return crclient.ObjectKey{Namespace: Namespace, Name: name}
}
