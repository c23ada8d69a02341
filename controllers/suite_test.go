package controllers_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/manager"
	"github.com/helexa-ai/cortex/internal/neurontest"
	"github.com/helexa-ai/cortex/internal/testenv"
)

const (
	gib = int64(1) << 30
	// Short bounds keep the suite quick; the production defaults are 30s/5s.
	staleAfter   = 3 * time.Second
	pollInterval = 300 * time.Millisecond
	beatInterval = 500 * time.Millisecond
)

var (
	restCfg        *rest.Config
	k8s            client.Client
	seq            atomic.Int64
	env            *testenv.Env
	kubeconfigPath string
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

// runSuite starts a real kube-apiserver and etcd once for the package.
// Without the binaries the suite fails: hack/envtest.sh says how to get them.
func runSuite(m *testing.M) int {
	var err error
	env, err = testenv.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	restCfg, k8s, kubeconfigPath = env.Config, env.Client, env.Kubeconfig
	return m.Run()
}

// fixture is one test's slice of the cluster: its namespace, its neurons
// (labelled so only its Models select them) and a running manager.
type fixture struct {
	t       *testing.T
	ctx     context.Context
	ns      string
	label   string
	neurons map[string]*neurontest.Server
	beats   map[string]*neurontest.Heartbeat
	stopMgr context.CancelFunc
	mgrDone chan error
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	n := seq.Add(1)
	f := &fixture{
		t:       t,
		ctx:     log.IntoContext(ctx, testr.NewWithOptions(t, testr.Options{Verbosity: 0})),
		ns:      fmt.Sprintf("t%d", n),
		label:   fmt.Sprintf("t%d", n),
		neurons: map[string]*neurontest.Server{},
		beats:   map[string]*neurontest.Heartbeat{},
	}
	must(t, k8s.Create(f.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}}))
	t.Cleanup(f.cleanup)
	return f
}

func (f *fixture) cleanup() {
	// Delete this test's Models while its manager still runs, so their
	// finalizers are honoured and later tests see a clean cluster.
	if f.stopMgr != nil {
		ctx := context.Background()
		_ = k8s.DeleteAllOf(ctx, &cortexv1.Model{}, client.InNamespace(f.ns))
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			var list cortexv1.ModelList
			if err := k8s.List(ctx, &list, client.InNamespace(f.ns)); err != nil || len(list.Items) == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	f.stopManager()
	for name, hb := range f.beats {
		hb.Stop()
		_ = k8s.Delete(context.Background(), &cortexv1.NeuronNode{ObjectMeta: metav1.ObjectMeta{Name: name}})
	}
	for _, s := range f.neurons {
		s.Close()
	}
}

// addNeuron starts a simulated neuron with one device per size and keeps
// its heartbeat fresh.
func (f *fixture) addNeuron(suffix string, devices ...int64) *neurontest.Server {
	f.t.Helper()
	return f.addNeuronWith(suffix, neurontest.Config{Devices: devices})
}

// addNeuronWith starts a simulated neuron from cfg (Name, Token and
// DefaultSize are filled in).
func (f *fixture) addNeuronWith(suffix string, cfg neurontest.Config) *neurontest.Server {
	f.t.Helper()
	name := f.label + "-" + suffix
	cfg.Name, cfg.Token = name, "secret"
	if cfg.DefaultSize == 0 {
		cfg.DefaultSize = gib
	}
	s := neurontest.Start(cfg)
	must(f.t, s.Register(f.ctx, k8s, map[string]string{"test": f.label}))
	f.neurons[name] = s
	f.beats[name] = s.StartHeartbeat(f.ctx, k8s, beatInterval)
	return s
}

// startManager runs the real manager in-process; opts change its
// configuration after the fixture's defaults.
func (f *fixture) startManager(opts ...func(*manager.Config)) {
	f.t.Helper()
	ctx, cancel := context.WithCancel(f.ctx)
	f.stopMgr = cancel
	f.mgrDone = make(chan error, 1)
	cfg := manager.DefaultConfig()
	cfg.MetricsAddr, cfg.ProbeAddr = "0", "0"
	cfg.StaleAfter, cfg.PollInterval = staleAfter, pollInterval
	cfg.NeuronToken = "secret"
	cfg.NeuronTimeout = 2 * time.Second
	for _, o := range opts {
		o(&cfg)
	}
	ctx = log.IntoContext(ctx, logr.Discard())
	if testing.Verbose() {
		ctx = log.IntoContext(ctx, testr.NewWithOptions(f.t, testr.Options{Verbosity: 1}))
	}
	go func() { f.mgrDone <- manager.Run(ctx, cfg, restCfg, manager.Options{SkipNameValidation: true}) }()
}

func (f *fixture) stopManager() {
	if f.stopMgr == nil {
		return
	}
	f.stopMgr()
	select {
	case err := <-f.mgrDone:
		if err != nil {
			f.t.Errorf("manager exited with error: %v", err)
		}
	case <-time.After(30 * time.Second):
		f.t.Error("manager did not stop within 30s")
	}
	f.stopMgr = nil
}

type modelOpt func(*cortexv1.Model)

func withVRAM(gi int64) modelOpt {
	return func(m *cortexv1.Model) {
		q := resource.NewQuantity(gi*gib, resource.BinarySI)
		m.Spec.Resources.VRAM = q
	}
}
func withPriority(p int32) modelOpt { return func(m *cortexv1.Model) { m.Spec.Priority = p } }
func withMin(n int32) modelOpt {
	return func(m *cortexv1.Model) { m.Spec.Replicas.Min = n; m.Spec.Replicas.Max = max(m.Spec.Replicas.Max, n) }
}
func withMax(n int32) modelOpt       { return func(m *cortexv1.Model) { m.Spec.Replicas.Max = n } }
func pinned() modelOpt               { return func(m *cortexv1.Model) { m.Spec.Pinned = true } }
func withSource(uri string) modelOpt { return func(m *cortexv1.Model) { m.Spec.Source.URI = uri } }
func demanded(at time.Time) modelOpt {
	return func(m *cortexv1.Model) {
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		m.Annotations[cortexv1.DemandAnnotation] = at.UTC().Format(time.RFC3339Nano)
	}
}

// apply creates a Model that only this test's neurons can take.
func (f *fixture) apply(name string, opts ...modelOpt) *cortexv1.Model {
	f.t.Helper()
	m := &cortexv1.Model{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name},
		Spec: cortexv1.ModelSpec{
			Source:    cortexv1.ModelSource{URI: "https://models.example/" + name + ".gguf"},
			Replicas:  cortexv1.ReplicaRange{Min: 0, Max: 1},
			Placement: cortexv1.Placement{NodeSelector: map[string]string{"test": f.label}},
		},
	}
	for _, o := range opts {
		o(m)
	}
	must(f.t, k8s.Create(f.ctx, m))
	return m
}

func (f *fixture) key(name string) string { return f.ns + "/" + name }

func (f *fixture) get(name string) *cortexv1.Model {
	f.t.Helper()
	m := &cortexv1.Model{}
	must(f.t, k8s.Get(f.ctx, types.NamespacedName{Namespace: f.ns, Name: name}, m))
	return m
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitPhase waits for a Model's phase.
func (f *fixture) waitPhase(name string, phase cortexv1.ModelPhase, timeout time.Duration) *cortexv1.Model {
	f.t.Helper()
	var m *cortexv1.Model
	eventually(f.t, timeout, fmt.Sprintf("%s to be %s", name, phase), func() (bool, string) {
		m = &cortexv1.Model{}
		if err := k8s.Get(f.ctx, types.NamespacedName{Namespace: f.ns, Name: name}, m); err != nil {
			return false, err.Error()
		}
		return m.Status.Phase == phase, describe(m)
	})
	return m
}

func describe(m *cortexv1.Model) string {
	var b strings.Builder
	fmt.Fprintf(&b, "phase=%s ready=%s nodes=%q", m.Status.Phase, m.Status.Ready, m.Status.Nodes)
	if m.Status.KeepAlive != nil {
		fmt.Fprintf(&b, " keepAlive=%s(%s)", m.Status.KeepAlive.Duration, m.Status.KeepAliveSource)
	}
	for _, c := range m.Status.Conditions {
		fmt.Fprintf(&b, " %s=%s(%s: %s)", c.Type, c.Status, c.Reason, c.Message)
	}
	for _, r := range m.Status.Replicas {
		fmt.Fprintf(&b, " [%s %s]", r.Node, r.State)
	}
	return b.String()
}

func condition(m *cortexv1.Model, typ string) *metav1.Condition {
	return meta.FindStatusCondition(m.Status.Conditions, typ)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
