// Command scalebench measures the manager's control plane at fleet scale on
// a real kube-apiserver and etcd (envtest): many Models and many simulated
// NeuronNodes (internal/neurontest, which answer the neuron API and reserve
// memory as the real neuron does), with the real manager binary as a
// separate process. It prints one table:
//
//   - time until every Model is Ready (all are placeable: replicas.min 1),
//   - p50/p99 from creating a Model to its status routing a Ready replica
//     (what the gateway routes by), weight loading excluded (the simulated
//     neurons load at once),
//   - p50/p99 from a node's failure (heartbeat stops, API unreachable) to its
//     Models Ready elsewhere,
//   - the manager's API requests per second while converging and at steady
//     state, its CPU seconds and resident memory (from its own /metrics).
//
// It is a benchmark, not a test: it asserts nothing and stops by itself.
// `make bench-scale` runs the full size; -models/-nodes shrink it.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/neurontest"
	"github.com/helexa-ai/cortex/internal/testenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "scalebench:", err)
		os.Exit(1)
	}
}

type options struct {
	models, nodes, gpus int
	gpuGiB              int64
	heartbeat, stale    time.Duration
	poll                time.Duration
	timeout, steady     time.Duration
	managerArgs         string
	singles             int
}

func run() error {
	var o options
	flag.IntVar(&o.models, "models", 1000, "Models to create")
	flag.IntVar(&o.nodes, "nodes", 200, "simulated NeuronNodes")
	flag.IntVar(&o.gpus, "gpus", 8, "GPUs per node")
	flag.Int64Var(&o.gpuGiB, "gpu-gib", 80, "memory per GPU, GiB")
	flag.DurationVar(&o.heartbeat, "heartbeat", 10*time.Second, "NeuronNode heartbeat interval")
	flag.DurationVar(&o.stale, "stale-after", 30*time.Second, "manager --heartbeat-stale-after")
	flag.DurationVar(&o.poll, "poll", 5*time.Second, "manager --poll-interval")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up converging after this long")
	flag.DurationVar(&o.steady, "steady", 30*time.Second, "how long to measure the steady state")
	flag.StringVar(&o.managerArgs, "manager-args", "", "extra manager flags, space-separated")
	flag.IntVar(&o.singles, "singles", 20, "Models applied one at a time after converging")
	flag.Parse()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	work, err := os.MkdirTemp("", "cortex-scale-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()

	fmt.Fprintf(os.Stderr, "building the manager...\n")
	bin := filepath.Join(work, "manager")
	build := exec.Command("go", "build", "-o", bin, "./cmd/manager")
	build.Dir = testenv.RepoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building the manager: %w", err)
	}

	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	c := env.Client

	// Simulated neurons, each registered with a heartbeat.
	fmt.Fprintf(os.Stderr, "starting %d simulated neurons...\n", o.nodes)
	token := "scale-token"
	neurons := make([]*neurontest.Server, o.nodes)
	beats := make([]*neurontest.Heartbeat, o.nodes)
	devs := make([]int64, o.gpus)
	for i := range devs {
		devs[i] = o.gpuGiB << 30
	}
	for i := range neurons {
		s := neurontest.Start(neurontest.Config{Name: fmt.Sprintf("node-%04d", i), Devices: devs, Token: token, DefaultSize: 8 << 30})
		defer s.Close()
		if err := s.Register(ctx, c, map[string]string{"zone": strconv.Itoa(i % 3)}); err != nil {
			return err
		}
		neurons[i] = s
		beats[i] = s.StartHeartbeat(ctx, c, o.heartbeat)
	}

	// The manager, as its own process.
	tokenFile := filepath.Join(work, "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		return err
	}
	metricsPort, err := freePort()
	if err != nil {
		return err
	}
	args := []string{
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metricsPort), "--health-probe-bind-address=0",
		"--neuron-token-file=" + tokenFile, "--heartbeat-stale-after=" + o.stale.String(), "--poll-interval=" + o.poll.String(),
		"--kubeconfig=" + env.Kubeconfig, "--zap-log-level=error",
	}
	args = append(args, strings.Fields(o.managerArgs)...)
	mgr := exec.CommandContext(ctx, bin, args...)
	mgrLog, err := os.Create(filepath.Join(work, "manager.log"))
	if err != nil {
		return err
	}
	mgr.Stdout, mgr.Stderr = mgrLog, mgrLog
	if err := mgr.Start(); err != nil {
		return err
	}
	defer func() { _ = mgr.Process.Kill(); _ = mgr.Wait() }()
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	if err := waitFor(ctx, 60*time.Second, func() bool { _, err := scrape(metricsURL); return err == nil }); err != nil {
		return fmt.Errorf("the manager's metrics never answered (log in %s)", mgrLog.Name())
	}

	// Models: replicas.min 1 so each wants a replica without traffic; sizes
	// from a 3B–70B-class mix (Q4), which the fleet holds several times over.
	sizes := []int64{2, 4, 5, 8, 10, 20, 40}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "scale"}}); err != nil {
		return err
	}
	before, err := scrape(metricsURL)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "creating %d Models...\n", o.models)
	created := make(map[string]time.Time, o.models)
	start := time.Now()
	for i := range o.models {
		name := fmt.Sprintf("m%04d", i)
		q := resource.NewQuantity(sizes[i%len(sizes)]<<30, resource.BinarySI)
		m := scaleModel(name, q)
		if err := c.Create(ctx, m); err != nil {
			return fmt.Errorf("creating %s: %w", name, err)
		}
		created["scale/"+name] = time.Now()
	}
	createdIn := time.Since(start)

	ready, err := watchReady(ctx, c, created, o.timeout)
	converged := time.Since(start)
	if err != nil {
		fmt.Fprintf(os.Stderr, "not converged: %v\n", err)
	}
	mid, err := scrape(metricsURL)
	if err != nil {
		return err
	}
	var lat []time.Duration
	for k, t := range ready {
		lat = append(lat, t.Sub(created[k]))
	}

	// Steady state: nothing changes; count what the manager still does.
	time.Sleep(o.steady)
	steady, err := scrape(metricsURL)
	if err != nil {
		return err
	}

	// One apply at a time on the converged fleet: what a user applying a
	// Model waits for when the manager is not busy with a burst.
	var single []time.Duration
	for i := range o.singles {
		name := fmt.Sprintf("single%03d", i)
		m := scaleModel(name, resource.NewQuantity(8<<30, resource.BinarySI))
		t0 := time.Now()
		if err := c.Create(ctx, m); err != nil {
			return fmt.Errorf("creating %s: %w", name, err)
		}
		got, err := watchReady(ctx, c, map[string]time.Time{"scale/" + name: t0}, 30*time.Second)
		if err != nil {
			return err
		}
		single = append(single, got["scale/"+name].Sub(t0))
	}

	// A node hangs (its process stopped without dying: heartbeat and API
	// silent, connections held) just after it joined, empty, so it is
	// where new Models go. A batch of Models applied together meanwhile
	// measures how much one hung neuron holds up everyone else: the one
	// sent there waits out the neuron client's timeouts either way.
	hungNode := neurontest.Start(neurontest.Config{Name: "node-hung", Devices: devs, Token: token, DefaultSize: 8 << 30})
	defer hungNode.Close()
	if err := hungNode.Register(ctx, c, map[string]string{"zone": "0"}); err != nil {
		return err
	}
	hungBeat := hungNode.StartHeartbeat(ctx, c, o.heartbeat)
	if err := waitFor(ctx, 60*time.Second, func() bool {
		var nn cortexv1.NeuronNode
		return c.Get(ctx, client.ObjectKey{Name: "node-hung"}, &nn) == nil && nn.Status.Ready == "True"
	}); err != nil {
		return fmt.Errorf("node-hung never turned Ready: %w", err)
	}
	hungBeat.Stop()
	hungNode.SetHung(true)
	batch := map[string]time.Time{}
	for i := range o.singles {
		name := fmt.Sprintf("hang%03d", i)
		m := scaleModel(name, resource.NewQuantity(8<<30, resource.BinarySI))
		batch["scale/"+name] = time.Now()
		if err := c.Create(ctx, m); err != nil {
			return fmt.Errorf("creating %s: %w", name, err)
		}
	}
	got, err := watchReady(ctx, c, batch, 3*time.Minute)
	if err != nil {
		return err
	}
	var duringHang []time.Duration
	for k, t := range got {
		duringHang = append(duringHang, t.Sub(batch[k]))
	}
	hungNode.SetHung(false)

	// A node fails: its heartbeat stops and its API stops answering.
	victim := neurons[0]
	var moved map[string]time.Time
	var failAt time.Time
	onVictim := map[string]time.Time{}
	for _, m := range victim.Resident() {
		onVictim[m] = time.Time{}
	}
	if len(onVictim) > 0 {
		beats[0].Stop()
		victim.SetDown(true)
		failAt = time.Now()
		for k := range onVictim {
			onVictim[k] = failAt
		}
		moved, err = watchMoved(ctx, c, onVictim, victim.Name(), 3*o.stale+o.timeout/4)
		if err != nil {
			fmt.Fprintf(os.Stderr, "node failure: %v\n", err)
		}
	}
	var failLat []time.Duration
	for _, t := range moved {
		failLat = append(failLat, t.Sub(failAt))
	}

	// The table.
	convergeReqs := counterDelta(before, mid, "rest_client_requests_total")
	steadyReqs := counterDelta(mid, steady, "rest_client_requests_total")
	fmt.Printf("\nscale: %d Models, %d NeuronNodes × %d GPUs × %d GiB; manager %s (poll %s, heartbeat %s, stale-after %s)\n\n",
		o.models, o.nodes, o.gpus, o.gpuGiB, strings.TrimSpace("defaults "+o.managerArgs), o.poll, o.heartbeat, o.stale)
	fmt.Printf("| measure | value |\n| --- | --- |\n")
	fmt.Printf("| Models created (client, serial) | %s |\n", createdIn.Round(time.Millisecond))
	fmt.Printf("| every Model Ready (from the first create) | %s (%d of %d) |\n", converged.Round(time.Millisecond), len(ready), o.models)
	fmt.Printf("| create → routable during the burst, p50 / p99 / max | %s / %s / %s |\n", pct(lat, 50), pct(lat, 99), pct(lat, 100))
	fmt.Printf("| create → routable, one at a time on the converged fleet, p50 / p99 / max | %s / %s / %s (%d) |\n",
		pct(single, 50), pct(single, 99), pct(single, 100), len(single))
	fmt.Printf("| create → routable, a batch applied while a new, empty node hangs, p50 / p99 / max | %s / %s / %s (%d) |\n",
		pct(duringHang, 50), pct(duringHang, 99), pct(duringHang, 100), len(duringHang))
	fmt.Printf("| node failure → its %d Models routable elsewhere, p50 / p99 / max | %s / %s / %s (%d moved) |\n",
		len(onVictim), pct(failLat, 50), pct(failLat, 99), pct(failLat, 100), len(moved))
	fmt.Printf("| manager API requests while converging | %.0f (%.1f/s) |\n", convergeReqs, convergeReqs/converged.Seconds())
	fmt.Printf("| manager API requests at steady state | %.1f/s |\n", steadyReqs/o.steady.Seconds())
	fmt.Printf("| manager CPU while converging / steady | %.1f s / %.2f s/s |\n",
		counterDelta(before, mid, "process_cpu_seconds_total"), counterDelta(mid, steady, "process_cpu_seconds_total")/o.steady.Seconds())
	fmt.Printf("| manager resident memory at the end | %.0f MiB |\n", gauge(steady, "process_resident_memory_bytes")/(1<<20))
	fmt.Printf("| manager reconcile errors | %.0f |\n", counterDelta(before, steady, "cortex_manager_reconcile_errors_total"))
	return nil
}

// scaleModel is a Model that wants one replica (replicas.min 1) of the
// given memory need, so it is placed without traffic.
func scaleModel(name string, vram *resource.Quantity) *cortexv1.Model {
	return &cortexv1.Model{
		ObjectMeta: metav1.ObjectMeta{Namespace: "scale", Name: name},
		Spec: cortexv1.ModelSpec{
			Source:    cortexv1.ModelSource{URI: "https://models.example/" + name + ".gguf"},
			Replicas:  cortexv1.ReplicaRange{Min: 1, Max: 1},
			Resources: cortexv1.ModelResources{VRAM: vram},
		},
	}
}

// watchReady polls Model status until every created Model is Ready and
// returns when each was first seen Ready.
func watchReady(ctx context.Context, c client.Client, created map[string]time.Time, timeout time.Duration) (map[string]time.Time, error) {
	return watchUntil(ctx, c, created, timeout, "Ready", func(m *cortexv1.Model) bool {
		return m.Status.Phase == cortexv1.ModelPhaseReady
	})
}

// watchMoved waits until each Model in keys is Ready on a node other than
// from.
func watchMoved(ctx context.Context, c client.Client, keys map[string]time.Time, from string, timeout time.Duration) (map[string]time.Time, error) {
	return watchUntil(ctx, c, keys, timeout, "moved", func(m *cortexv1.Model) bool {
		return m.Status.Phase == cortexv1.ModelPhaseReady && m.Status.Nodes != "" &&
			!slices.Contains(strings.Split(m.Status.Nodes, ","), from)
	})
}

// watchUntil polls the Models of keys until each satisfies done, and
// returns when each was first seen so.
func watchUntil(ctx context.Context, c client.Client, keys map[string]time.Time, timeout time.Duration, what string,
	done func(*cortexv1.Model) bool) (map[string]time.Time, error) {
	seen := map[string]time.Time{}
	deadline := time.Now().Add(timeout)
	for len(seen) < len(keys) {
		if time.Now().After(deadline) {
			return seen, fmt.Errorf("%d of %d Models %s after %s", len(seen), len(keys), what, timeout)
		}
		var list cortexv1.ModelList
		if err := c.List(ctx, &list, client.InNamespace("scale")); err != nil {
			return seen, err
		}
		now := time.Now()
		for i := range list.Items {
			m := &list.Items[i]
			_, want := keys[m.Key()]
			if _, already := seen[m.Key()]; want && !already && done(m) {
				seen[m.Key()] = now
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return seen, nil
}

func pct(ds []time.Duration, p int) string {
	if len(ds) == 0 {
		return "–"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := min(len(s)-1, (len(s)*p+99)/100-1)
	return s[max(i, 0)].Round(time.Millisecond).String()
}

// scrape reads a /metrics page into sums per metric name (labels summed).
func scrape(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		name := line[:sp]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err == nil {
			out[name] += v
		}
	}
	return out, sc.Err()
}

func counterDelta(a, b map[string]float64, name string) float64 { return b[name] - a[name] }
func gauge(m map[string]float64, name string) float64           { return m[name] }

func waitFor(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
