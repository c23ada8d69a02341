package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/gateway"
	"github.com/helexa-ai/cortex/internal/manager"
	"github.com/helexa-ai/cortex/internal/neurontest"
	"github.com/helexa-ai/cortex/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	var err error
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

// stack runs the real manager and gateway in-process against the test API
// server, with simulated neurons.
type stack struct {
	t       *testing.T
	ctx     context.Context
	ns      string
	gateway string // base URL
	metrics string
}

func startStack(t *testing.T, ns string, tweaks ...func(*gateway.Config, *gateway.Options)) *stack {
	t.Helper()
	ctx, cancel := context.WithCancel(log.IntoContext(context.Background(), logr.Discard()))
	must(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))

	mcfg := manager.DefaultConfig()
	mcfg.MetricsAddr, mcfg.ProbeAddr = "0", "0"
	mcfg.StaleAfter, mcfg.PollInterval = 3*time.Second, 200*time.Millisecond
	mcfg.NeuronToken = "neuron-secret"
	mdone := make(chan error, 1)
	go func() { mdone <- manager.Run(ctx, mcfg, env.Config, manager.Options{SkipNameValidation: true}) }()

	url, murl, gdone := startGateway(t, ctx, ns, tweaks...)
	t.Cleanup(func() {
		cancel()
		waitStopped(t, mdone, gdone)
	})
	return &stack{t: t, ctx: ctx, ns: ns, gateway: url, metrics: murl}
}

// waitStopped waits for each process's exit error after its context ended.
func waitStopped(t *testing.T, dones ...chan error) {
	t.Helper()
	for _, ch := range dones {
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("stopped with error: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("did not stop")
		}
	}
}

// startGateway runs one gateway replica in-process until ctx ends and
// returns its API and metrics URLs and where its exit error goes.
func startGateway(t *testing.T, ctx context.Context, ns string, tweaks ...func(*gateway.Config, *gateway.Options)) (url, metrics string, done chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	gcfg := gateway.DefaultConfig()
	gcfg.AllowAnonymous = true
	gcfg.NeuronToken = "neuron-secret"
	gcfg.Namespace = ns
	gcfg.ColdStartTimeout = 30 * time.Second
	gcfg.KeepAliveInterval = 200 * time.Millisecond
	gopts := gateway.Options{Listener: ln, MetricsListener: mln}
	for _, tweak := range tweaks {
		tweak(&gcfg, &gopts)
	}
	ready := make(chan struct{})
	done = make(chan error, 1)
	go func() {
		gopts.Ready = func(string) { close(ready) }
		done <- gateway.Run(ctx, gcfg, env.Config, gopts)
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("gateway stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("gateway not ready")
	}
	return "http://" + ln.Addr().String(), "http://" + mln.Addr().String() + "/metrics", done
}

func (s *stack) neuron(name string) *neurontest.Server {
	s.t.Helper()
	n := neurontest.Start(neurontest.Config{Name: name, Devices: []int64{16 << 30}, DefaultSize: 1 << 30, Token: "neuron-secret", LoadDelay: 300 * time.Millisecond})
	must(s.t, n.Register(s.ctx, env.Client, map[string]string{"stack": s.ns}))
	hb := n.StartHeartbeat(s.ctx, env.Client, 300*time.Millisecond)
	s.t.Cleanup(func() {
		hb.Stop()
		n.Close()
		_ = env.Client.Delete(context.Background(), &cortexv1.NeuronNode{ObjectMeta: metav1.ObjectMeta{Name: name}})
	})
	return n
}

func (s *stack) model(name string, min int32, names ...string) {
	s.t.Helper()
	m := &cortexv1.Model{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: name}}
	m.Spec.Source.URI = "https://models.example/" + name + ".gguf"
	m.Spec.ServedNames = names
	m.Spec.Replicas = cortexv1.ReplicaRange{Min: min, Max: max(min, 1)}
	m.Spec.Placement.NodeSelector = map[string]string{"stack": s.ns}
	m.Spec.Resources.VRAM = resource.NewQuantity(1<<30, resource.BinarySI)
	must(s.t, env.Client.Create(s.ctx, m))
	s.t.Cleanup(func() { _ = env.Client.Delete(context.Background(), m) })
}

func (s *stack) chat(model string, stream bool) (int, string) {
	s.t.Helper()
	body := fmt.Sprintf(`{"model":%q,"stream":%v,"messages":[{"role":"user","content":"hi"}]}`, model, stream)
	resp, err := http.Post(s.gateway+"/v1/chat/completions", "application/json", strings.NewReader(body))
	must(s.t, err)
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	must(s.t, err)
	return resp.StatusCode, string(data)
}

func TestColdRequestIsHeldWhileTheManagerLoadsTheModel(t *testing.T) {
	s := startStack(t, "cold")
	n := s.neuron("cold-n1")
	s.model("llama", 0, "llama-3")
	s.waitListed("llama-3")

	start := time.Now()
	code, body := s.chat("llama-3", true)
	if code != 200 || !strings.Contains(body, "[DONE]") || !strings.Contains(body, "cold-n1") {
		t.Fatalf("status %d:\n%s", code, body)
	}
	t.Logf("cold request answered after %s", time.Since(start).Round(time.Millisecond))
	if n.Loads("cold/llama") != 1 {
		t.Fatalf("loads = %d", n.Loads("cold/llama"))
	}
	var m cortexv1.Model
	must(t, env.Client.Get(s.ctx, types.NamespacedName{Namespace: "cold", Name: "llama"}, &m))
	if _, ok := m.Annotations[cortexv1.DemandAnnotation]; !ok {
		t.Fatalf("no demand annotation: %v", m.Annotations)
	}
	// Many waiters, one load: a burst on a second cold model, once the
	// gateway's cache has seen it (before, it is rightly unknown: 404).
	s.model("qwen", 0)
	s.waitListed("qwen")
	results := make(chan int, 8)
	for range 8 {
		go func() { c, _ := s.chat("qwen", false); results <- c }()
	}
	for range 8 {
		if c := <-results; c != 200 {
			t.Fatalf("burst request got %d", c)
		}
	}
	if n.Loads("cold/qwen") != 1 {
		t.Fatalf("burst caused %d loads", n.Loads("cold/qwen"))
	}
	resp, err := http.Get(s.metrics)
	must(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	for _, want := range []string{`cortex_gateway_cold_start_wait_seconds_count{model="cold/llama"} 1`, `cortex_gateway_requests_total{api="openai",code="200",model="cold/qwen"} 8`} {
		if !strings.Contains(string(metrics), want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
}

func TestReplicaDeadBeforeFirstByteIsRetriedElsewhere(t *testing.T) {
	s := startStack(t, "retry")
	a := s.neuron("retry-a")
	b := s.neuron("retry-b")
	s.model("llama", 2)
	s.waitListed("llama")
	// Wait until both replicas serve.
	deadline := time.Now().Add(30 * time.Second)
	for a.Loads("retry/llama") == 0 || b.Loads("retry/llama") == 0 || len(a.Resident()) == 0 || len(b.Resident()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("replicas not placed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		code, _ := s.chat("llama", false)
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("model never served")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// a's process dies; its NeuronNode still looks fresh for a while.
	a.SetDown(true)
	for i := range 6 {
		code, body := s.chat("llama", i%2 == 0)
		if code != 200 || !strings.Contains(body, "retry-b") {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
	}
}

// waitListed waits until the gateway lists a model name.
func (s *stack) waitListed(name string) {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(s.gateway + "/v1/models")
		must(s.t, err)
		data, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if strings.Contains(string(data), fmt.Sprintf(`"id":%q`, name)) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("gateway never listed %s: %s", name, data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Two gateway replicas sharing routed prefixes (--peers) send a
// conversation's next turn where the other sent its prefix, not where
// the prefix hashes; a third replica without the sync sends it where it
// hashes. Everything is real but the neurons: the gateways' HTTP API,
// their prefix sync over loopback, the manager and the API server.
// peerPair is two gateways' peer listeners and, for each, the tweak that
// makes it sync with the other every 20 ms (plus more, if given).
func peerPair(t *testing.T, more ...func(*gateway.Config)) (a, b func(*gateway.Config, *gateway.Options)) {
	t.Helper()
	peerA, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	peerB, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	with := func(own net.Listener, other string) func(*gateway.Config, *gateway.Options) {
		return func(c *gateway.Config, o *gateway.Options) {
			c.Peers, c.PeerSyncInterval = other, 20*time.Millisecond
			o.PeerListener = own
			for _, f := range more {
				f(c)
			}
		}
	}
	return with(peerA, peerB.Addr().String()), with(peerB, peerA.Addr().String())
}

func TestGatewayReplicasShareWhereAPrefixWent(t *testing.T) {
	withA, withB := peerPair(t)
	s := startStack(t, "peers", withA)
	ctx, cancel := context.WithCancel(s.ctx)
	urlB, _, doneB := startGateway(t, ctx, "peers", withB)
	urlC, _, doneC := startGateway(t, ctx, "peers")
	t.Cleanup(func() {
		cancel()
		waitStopped(t, doneB, doneC)
	})
	n1, n2 := s.neuron("peers-n1"), s.neuron("peers-n2")
	s.model("llama", 2)
	s.waitListed("llama")
	deadline := time.Now().Add(30 * time.Second)
	for {
		var m cortexv1.Model
		must(t, env.Client.Get(s.ctx, types.NamespacedName{Namespace: "peers", Name: "llama"}, &m))
		if m.Status.ReadyReplicas == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas not ready: %+v", m.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the gateways' caches see both
	chat := func(url, content string, stream bool) int {
		body := fmt.Sprintf(`{"model":"llama","stream":%v,"messages":[{"role":"user","content":%q}]}`, stream, content)
		resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
		must(t, err)
		defer func() { _ = resp.Body.Close() }()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	served := func(n *neurontest.Server) int { paths, _ := n.Requests(); return len(paths) }
	// Wait until both replicas answer through the gateways' caches.
	for chat(urlC, "warm-up", false) != 200 || chat(s.gateway, "warm-up", false) != 200 {
		if time.Now().After(deadline) {
			t.Fatal("model never served")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A prompt of two whole 2 KiB chunks: its next turns share its keys.
	prompt := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 100)
	before1, before2 := served(n1), served(n2)
	if chat(s.gateway, prompt, false) != 200 {
		t.Fatal("first turn failed")
	}
	home, away := n1, n2
	if served(n2) > before2 {
		home, away = n2, n1
	} else if served(n1) == before1 {
		t.Fatal("no neuron saw the first turn")
	}
	// Slow turns of the same conversation on A pile up on home, which
	// holds their prefix, until the wait there is too long and A sends
	// one away: from then on A sends the conversation there.
	home.SetInference(neurontest.Inference{Chunks: 4, ChunkDelay: 400 * time.Millisecond})
	away.SetInference(neurontest.Inference{Chunks: 4, ChunkDelay: 400 * time.Millisecond})
	holds := make(chan int, 8)
	sent, onHome := 0, 0
	for awayBefore := served(away); served(away) == awayBefore; sent++ {
		if sent == 8 {
			t.Fatalf("A sent 8 slow turns to the busy %s, none away", home.Name())
		}
		h, a := served(home), served(away)
		go func() { holds <- chat(s.gateway, prompt, true) }()
		for served(home) == h && served(away) == a {
			if time.Now().After(deadline) {
				t.Fatal("a slow turn reached no neuron")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if served(home) > h {
			onHome++
		}
	}
	if onHome < 2 {
		t.Fatalf("only %d slow turns stayed on %s, which holds their prefix", onHome, home.Name())
	}
	awayBefore := served(away)
	homeNow := served(home)
	if code := chat(s.gateway, prompt+" And then?", false); code != 200 || served(away) != awayBefore+1 {
		resp, _ := http.Get(s.metrics)
		m, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		var inflight []string
		for _, l := range strings.Split(string(m), "\n") {
			if strings.HasPrefix(l, "cortex_gateway_in_flight") {
				inflight = append(inflight, l)
			}
		}
		t.Fatalf("A did not send the turn where it sent the conversation last (%s): code %d, away %d→%d, home %d→%d; %v", away.Name(), code, awayBefore, served(away), homeNow, served(home), inflight)
	}
	for range sent {
		if c := <-holds; c != 200 {
			t.Fatalf("a slow turn got %d", c)
		}
	}
	away.SetInference(neurontest.Inference{})
	home.SetInference(neurontest.Inference{})
	time.Sleep(200 * time.Millisecond) // ten sync intervals: B has A's routes and its idle load
	homeBefore, awayBefore := served(home), served(away)
	if chat(urlB, prompt+" And then? Tell me more.", false) != 200 {
		t.Fatal("B failed")
	}
	if served(away) != awayBefore+1 || served(home) != homeBefore {
		t.Fatalf("B sent the conversation to %s; A had sent it to %s", home.Name(), away.Name())
	}
	// The control: a replica that shares nothing sends it where it hashes.
	if chat(urlC, prompt+" And then? Tell me more.", false) != 200 || served(home) != homeBefore+1 {
		t.Fatalf("C did not send the conversation to its hash home %s: home %d→%d, away %d→%d", home.Name(), homeBefore, served(home), awayBefore+1, served(away))
	}
}

// Two gateway replicas with the prefix sync share the per-replica bound:
// with one sequence and one request per sequence, a request through B
// waits in B while A's request holds the replica, and goes once it ends.
func TestGatewayReplicasShareTheReplicaBound(t *testing.T) {
	withA, withB := peerPair(t, func(c *gateway.Config) {
		c.Admission = gateway.AdmissionConfig{MaxInFlight: 64, PerSlot: 1, Timeout: 20 * time.Second}
	})
	s := startStack(t, "bound", withA)
	ctx, cancel := context.WithCancel(s.ctx)
	urlB, _, doneB := startGateway(t, ctx, "bound", withB)
	t.Cleanup(func() {
		cancel()
		waitStopped(t, doneB)
	})
	n := s.neuron("bound-n1")
	m := &cortexv1.Model{ObjectMeta: metav1.ObjectMeta{Namespace: "bound", Name: "llama"}}
	m.Spec.Source.URI = "https://models.example/llama.gguf"
	m.Spec.Replicas = cortexv1.ReplicaRange{Min: 1, Max: 1}
	m.Spec.Engine.Parallel = 1
	m.Spec.Placement.NodeSelector = map[string]string{"stack": "bound"}
	m.Spec.Resources.VRAM = resource.NewQuantity(1<<30, resource.BinarySI)
	must(t, env.Client.Create(s.ctx, m))
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), m) })
	chat := func(url string) int {
		resp, err := http.Post(url+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"llama","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
		must(t, err)
		defer func() { _ = resp.Body.Close() }()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	deadline := time.Now().Add(30 * time.Second)
	for chat(s.gateway) != 200 || chat(urlB) != 200 {
		if time.Now().After(deadline) {
			t.Fatal("model never served through both gateways")
		}
		time.Sleep(100 * time.Millisecond)
	}
	served := func() int { paths, _ := n.Requests(); return len(paths) }
	n.SetInference(neurontest.Inference{Chunks: 4, ChunkDelay: 400 * time.Millisecond})
	before := served()
	viaA, viaB := make(chan int, 1), make(chan int, 1)
	go func() { viaA <- chat(s.gateway) }()
	for served() == before {
		if time.Now().After(deadline) {
			t.Fatal("A's request never reached the neuron")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // ten sync intervals: B has A's load
	go func() { viaB <- chat(urlB) }()
	time.Sleep(600 * time.Millisecond)
	select {
	case c := <-viaA:
		t.Fatalf("A's request ended (%d) before B's could be checked", c)
	default:
	}
	if got := served(); got != before+1 {
		t.Fatalf("B relayed its request while A's held the replica's one slot: the neuron saw %d, want %d", got-before, 1)
	}
	if c := <-viaA; c != 200 {
		t.Fatalf("A's request: %d", c)
	}
	if c := <-viaB; c != 200 || served() != before+2 {
		t.Fatalf("B's request: %d, the neuron saw %d", c, served()-before)
	}
}
