package controllers_test

import (
	"bytes"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/manager"
	"github.com/helexa-ai/cortex/internal/neurontest"
	"github.com/helexa-ai/cortex/internal/placement"
)

func TestApplyGoesLoadingThenReady(t *testing.T) {
	f := newFixture(t)
	n := f.addNeuronWith("a", neurontest.Config{Devices: []int64{8 * gib}, LoadDelay: 1500 * time.Millisecond, DefaultSize: 3 * gib,
		EstimateDelay: time.Second})
	f.startManager()

	// No VRAM override: the manager asks a neuron to estimate from the
	// model header (the simulated neuron answers 3 GiB, after a second).
	// Meanwhile the Model is Pending, saying so — not Unschedulable.
	f.apply("llama", withMin(1))
	m := f.waitPhase("llama", cortexv1.ModelPhasePending, 20*time.Second)
	if c := condition(m, cortexv1.ModelConditionReady); c == nil || !strings.Contains(c.Message, "estimating memory need") {
		t.Fatalf("while estimating: %s", describe(m))
	}
	var phases []cortexv1.ModelPhase
	eventually(t, 20*time.Second, "llama to start loading", func() (bool, string) {
		m = f.get("llama")
		if len(phases) == 0 || phases[len(phases)-1] != m.Status.Phase {
			phases = append(phases, m.Status.Phase)
		}
		return m.Status.Phase == cortexv1.ModelPhaseLoading, describe(m)
	})
	if slices.Contains(phases, cortexv1.ModelPhaseUnschedulable) {
		t.Fatalf("phases %v: an estimate in progress is not a scheduling failure", phases)
	}
	if got := condition(m, cortexv1.ModelConditionReady); got == nil || got.Status != metav1.ConditionFalse || got.Reason != cortexv1.ReasonReplicasLoading {
		t.Fatalf("while loading, Ready condition = %+v", got)
	}
	m = f.waitPhase("llama", cortexv1.ModelPhaseReady, 20*time.Second)
	if m.Status.Ready != "1/1" || m.Status.Nodes != n.Name() || m.Status.ReadyReplicas != 1 {
		t.Fatalf("ready status = %s", describe(m))
	}
	if m.Status.VRAMBytes != 3*gib || m.Status.VRAM != "3.0Gi" {
		t.Fatalf("vram = %d %q, want the neuron's 3 GiB estimate", m.Status.VRAMBytes, m.Status.VRAM)
	}
	rep := m.Status.Replicas[0]
	if rep.Endpoint != n.URL() || rep.State != cortexv1.ReplicaReady || rep.LoadedAt == nil || !slices.Equal(rep.Devices, []int32{0}) {
		t.Fatalf("replica = %+v", rep)
	}
	if c := condition(m, cortexv1.ModelConditionReady); c.Status != metav1.ConditionTrue || c.ObservedGeneration != m.Generation {
		t.Fatalf("Ready condition = %+v", c)
	}
	if !slices.Contains(m.Finalizers, cortexv1.ModelFinalizer) {
		t.Fatalf("finalizers = %v", m.Finalizers)
	}
	if got := n.Loads(f.key("llama")); got != 1 {
		t.Fatalf("load calls = %d, want 1", got)
	}
	// The NeuronNode is Ready too.
	nn := &cortexv1.NeuronNode{}
	must(t, k8s.Get(f.ctx, types.NamespacedName{Name: n.Name()}, nn))
	if nn.Status.Ready != "True" {
		t.Fatalf("NeuronNode ready = %q, conditions %+v", nn.Status.Ready, nn.Status.Conditions)
	}
}

func TestTwoModelsShareOneGPU(t *testing.T) {
	f := newFixture(t)
	n := f.addNeuron("a", 10*gib)
	f.startManager()
	f.apply("small-a", withMin(1), withVRAM(4))
	f.apply("small-b", withMin(1), withVRAM(4))
	a := f.waitPhase("small-a", cortexv1.ModelPhaseReady, 20*time.Second)
	b := f.waitPhase("small-b", cortexv1.ModelPhaseReady, 20*time.Second)
	for _, m := range []*cortexv1.Model{a, b} {
		if m.Status.Nodes != n.Name() || !slices.Equal(m.Status.Replicas[0].Devices, []int32{0}) {
			t.Fatalf("%s placed at %s", m.Name, describe(m))
		}
	}
	if got := n.Snapshot().Devices[0].MemoryFree; got != 2*gib {
		t.Fatalf("device free = %d, want 2 GiB", got)
	}
}

func TestThirdModelEvictsTheRightVictim(t *testing.T) {
	f := newFixture(t)
	n := f.addNeuron("a", 10*gib)
	f.startManager()
	now := time.Now()
	// A: high priority, kept by replicas.min. B: low priority, in demand.
	f.apply("a", withMin(1), withVRAM(4), withPriority(10))
	f.apply("b", withVRAM(4), withPriority(0), demanded(now))
	f.waitPhase("a", cortexv1.ModelPhaseReady, 20*time.Second)
	f.waitPhase("b", cortexv1.ModelPhaseReady, 20*time.Second)

	// C outranks B but not A: B must make room, A must stay.
	f.apply("c", withVRAM(4), withPriority(5), demanded(now))
	f.waitPhase("c", cortexv1.ModelPhaseReady, 20*time.Second)
	if got := n.Resident(); !slices.Equal(got, []string{f.key("a"), f.key("c")}) {
		t.Fatalf("resident = %v, want a and c", got)
	}
	if n.Unloads(f.key("b")) != 1 || n.Unloads(f.key("a")) != 0 {
		t.Fatalf("unloads: a=%d b=%d", n.Unloads(f.key("a")), n.Unloads(f.key("b")))
	}
	// B is Idle (its next request loads it again) and says why; it still
	// wants a replica within its keep-alive and cannot have one: a
	// human-readable reason.
	b := f.waitPhase("b", cortexv1.ModelPhaseIdle, 20*time.Second)
	if r := condition(b, cortexv1.ModelConditionReady); r == nil || r.Reason != cortexv1.ReasonEvicted || !strings.Contains(r.Message, f.key("c")) {
		t.Fatalf("Ready condition of b = %+v", r)
	}
	c := condition(b, cortexv1.ModelConditionScheduled)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != cortexv1.ReasonUnschedulable || !strings.Contains(c.Message, "4.0 GiB") {
		t.Fatalf("Scheduled condition of b = %+v", c)
	}
}

// A request waiting on a full node evicts, of the idle replicas of equal
// priority, the one whose Model the neuron reports served the fewest
// requests (per byte), not the least recently used: the manager measures
// each Model's request rate from the neurons' counters.
func TestWaitingRequestEvictsTheModelAskedForLeast(t *testing.T) {
	f := newFixture(t)
	n := f.addNeuron("a", 10*gib)
	f.startManager()
	f.apply("often", withVRAM(4), demanded(time.Now()))
	f.apply("rarely", withVRAM(4), demanded(time.Now()))
	f.waitPhase("often", cortexv1.ModelPhaseReady, 20*time.Second)
	f.waitPhase("rarely", cortexv1.ModelPhaseReady, 20*time.Second)
	// "often" served 300 requests, the last 10 minutes ago; "rarely" one,
	// seconds ago. Least recently used would take "often".
	n.Backdate(f.key("often"), 20*time.Minute)
	n.Backdate(f.key("rarely"), 20*time.Minute)
	n.SetRequests(f.key("often"), 300)
	n.SetLastUsed(f.key("often"), time.Now().Add(-10*time.Minute))
	n.SetRequests(f.key("rarely"), 1)
	n.SetLastUsed(f.key("rarely"), time.Now().Add(-2*time.Second))
	// Two polls see the counters before the request comes.
	time.Sleep(3 * pollInterval)

	f.apply("new", withVRAM(4), demanded(time.Now()))
	f.waitPhase("new", cortexv1.ModelPhaseReady, 20*time.Second)
	if got := n.Resident(); !slices.Equal(got, []string{f.key("new"), f.key("often")}) {
		t.Fatalf("resident = %v, want new and often", got)
	}
	if n.Unloads(f.key("rarely")) != 1 || n.Unloads(f.key("often")) != 0 {
		t.Fatalf("unloads: often=%d rarely=%d", n.Unloads(f.key("often")), n.Unloads(f.key("rarely")))
	}
	r := f.waitPhase("rarely", cortexv1.ModelPhaseIdle, 20*time.Second)
	if c := condition(r, cortexv1.ModelConditionReady); c == nil || c.Reason != cortexv1.ReasonEvicted || !strings.Contains(c.Message, f.key("new")) {
		t.Fatalf("Ready condition of rarely = %+v", c)
	}
}

// A Model scales out when its replicas' parallel sequences are all busy,
// before a request queues: 4 in flight on one replica of parallel 4 wants
// a second (ceil(4 ÷ ⌈0.75 × 4⌉) = 2); 3 do not.
func TestModelScalesOutBeforeItsReplicasAreFull(t *testing.T) {
	f := newFixture(t)
	a := f.addNeuron("a", 10*gib)
	b := f.addNeuron("b", 10*gib)
	f.startManager()
	f.apply("busy", withVRAM(4), withMax(2), demanded(time.Now()), func(m *cortexv1.Model) { m.Spec.Engine.Parallel = 4 })
	f.waitPhase("busy", cortexv1.ModelPhaseReady, 20*time.Second)
	home := a
	if len(a.Resident()) == 0 {
		home = b
	}
	home.SetInFlight(f.key("busy"), 3)
	time.Sleep(5 * pollInterval)
	if n := a.Loads(f.key("busy")) + b.Loads(f.key("busy")); n != 1 {
		t.Fatalf("%d loads with 3 of 4 sequences in flight, want 1", n)
	}
	home.SetInFlight(f.key("busy"), 4)
	eventually(t, 20*time.Second, "a second replica with 4 of 4 sequences in flight", func() (bool, string) {
		m := f.get("busy")
		return len(a.Resident()) == 1 && len(b.Resident()) == 1, describe(m)
	})
}

func TestPinnedModelIsNeverEvicted(t *testing.T) {
	f := newFixture(t)
	n := f.addNeuron("a", 10*gib)
	f.startManager()
	f.apply("pinned", pinned(), withVRAM(6), withPriority(-10))
	f.waitPhase("pinned", cortexv1.ModelPhaseReady, 20*time.Second)

	f.apply("vip", withMin(1), withVRAM(6), withPriority(100))
	f.waitPhase("vip", cortexv1.ModelPhaseUnschedulable, 20*time.Second)
	// Give the manager several more passes to change its mind.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if n.Unloads(f.key("pinned")) != 0 {
			t.Fatal("the pinned model was unloaded")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := n.Resident(); !slices.Equal(got, []string{f.key("pinned")}) {
		t.Fatalf("resident = %v", got)
	}
}

// TestScatteredMemoryMovesAReplica: two 24 GiB GPUs each hold a pinned
// 8 GiB Model, so 32 GiB are free but at most 16 on one GPU. A 20 GiB
// Model with replicas.min 1 gets its replica once one pinned Model moves,
// make before break: the moved Model never stops being Ready.
func TestScatteredMemoryMovesAReplica(t *testing.T) {
	f := newFixture(t)
	a := f.addNeuron("a", 24*gib)
	b := f.addNeuron("b", 24*gib)
	f.startManager()
	f.apply("x", pinned(), withVRAM(8))
	f.waitPhase("x", cortexv1.ModelPhaseReady, 20*time.Second)
	f.apply("y", pinned(), withVRAM(8))
	f.waitPhase("y", cortexv1.ModelPhaseReady, 20*time.Second)
	if ra, rb := a.Resident(), b.Resident(); len(ra) != 1 || len(rb) != 1 {
		t.Fatalf("resident: a=%v b=%v, want one pinned model each", ra, rb)
	}
	// Loaded a minute ago: past the grace that keeps a fresh replica put.
	for _, n := range []*neurontest.Server{a, b} {
		for _, k := range n.Resident() {
			n.Backdate(k, time.Minute)
		}
	}

	f.apply("m", withMin(1), withVRAM(20))
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, name := range []string{"x", "y"} {
			if m := f.get(name); m.Status.Phase != cortexv1.ModelPhaseReady {
				t.Fatalf("%s left Ready while moving: %s", name, describe(m))
			}
		}
		if f.get("m").Status.Phase == cortexv1.ModelPhaseReady {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("m not Ready: %s", describe(f.get("m")))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// One node holds m alone, the other both pinned Models; the moved one
	// was unloaded once, after its copy.
	hole, other := a, b
	if slices.Contains(b.Resident(), f.key("m")) {
		hole, other = b, a
	}
	if got := hole.Resident(); !slices.Equal(got, []string{f.key("m")}) {
		t.Fatalf("hole node holds %v", got)
	}
	if got := other.Resident(); !slices.Equal(got, []string{f.key("x"), f.key("y")}) {
		t.Fatalf("other node holds %v", got)
	}
	if moved := hole.Unloads(f.key("x")) + hole.Unloads(f.key("y")); moved != 1 {
		t.Fatalf("%d unloads on the hole node, want 1", moved)
	}
}

func TestStaleNodeReplicasMove(t *testing.T) {
	f := newFixture(t)
	f.addNeuron("a", 10*gib)
	f.addNeuron("b", 10*gib)
	f.startManager()
	f.apply("m", withMin(1), withVRAM(4))
	m := f.waitPhase("m", cortexv1.ModelPhaseReady, 20*time.Second)
	first := m.Status.Nodes
	// The host dies: no more heartbeats, no API.
	f.beats[first].Stop()
	f.neurons[first].SetDown(true)

	eventually(t, 20*time.Second, "the replica to move", func() (bool, string) {
		m = f.get("m")
		return m.Status.Phase == cortexv1.ModelPhaseReady && m.Status.Nodes != "" && m.Status.Nodes != first, describe(m)
	})
	for _, r := range m.Status.Replicas {
		if r.Node == first {
			t.Fatalf("replica on the dead node still listed: %s", describe(m))
		}
	}
	nn := &cortexv1.NeuronNode{}
	must(t, k8s.Get(f.ctx, types.NamespacedName{Name: first}, nn))
	if nn.Status.Ready != "False" {
		t.Fatalf("dead NeuronNode ready = %q", nn.Status.Ready)
	}
}

// A neuron that hangs (SIGSTOP) keeps its TCP port open and answers
// nothing, and its heartbeat stops with it. Its node must turn NotReady,
// and its replica move, about one staleness later — not after every
// attempt of the manager's poll has timed out (3 × the neuron timeout,
// here 3 × 20 s).
func TestHungNeuronTurnsNotReadyWithinTheStaleness(t *testing.T) {
	f := newFixture(t)
	f.addNeuron("a", 10*gib)
	f.addNeuron("b", 10*gib)
	f.startManager(func(c *manager.Config) { c.NeuronTimeout = 20 * time.Second })
	f.apply("m", withMin(1), withVRAM(4))
	m := f.waitPhase("m", cortexv1.ModelPhaseReady, 20*time.Second)
	first := m.Status.Nodes
	f.neurons[first].SetHung(true)
	t.Cleanup(func() { f.neurons[first].SetHung(false) })
	f.beats[first].Stop()
	hungAt := time.Now()

	// 2 × the staleness, plus a margin for a loaded machine, is still far
	// below one attempt of the poll.
	eventually(t, 2*staleAfter+4*time.Second, "the hung node to turn NotReady", func() (bool, string) {
		nn := &cortexv1.NeuronNode{}
		must(t, k8s.Get(f.ctx, types.NamespacedName{Name: first}, nn))
		return nn.Status.Ready == "False", fmt.Sprintf("ready=%q", nn.Status.Ready)
	})
	eventually(t, 20*time.Second, "the replica to move", func() (bool, string) {
		m = f.get("m")
		return m.Status.Phase == cortexv1.ModelPhaseReady && m.Status.Nodes != "" && m.Status.Nodes != first, describe(m)
	})
	t.Logf("hung node NotReady and its replica moved %s after the hang", time.Since(hungAt).Round(100*time.Millisecond))
}

// A heartbeat written before the manager started is not held against a
// node whose neuron answers: after a long API-server outage every
// heartbeat is stale, the manager that lost its lease restarts, and the
// neurons write again only a moment later. Calling those nodes NotReady
// would place their replicas again elsewhere, a double load each. A node
// that is dead all along still turns NotReady at once: its poll is
// refused.
func TestRestartedManagerDoesNotHoldOldHeartbeatsAgainstLiveNodes(t *testing.T) {
	f := newFixture(t)
	f.addNeuron("a", 10*gib)
	f.addNeuron("b", 10*gib)
	dead := f.addNeuron("c", 10*gib)
	f.startManager()
	f.apply("m", withMin(1), withVRAM(4), withPriority(5))
	m := f.waitPhase("m", cortexv1.ModelPhaseReady, 20*time.Second)
	holder := m.Status.Nodes
	other := f.label + "-a"
	if holder == other {
		other = f.label + "-b"
	}
	deadName := f.label + "-c"
	if holder == deadName {
		t.Skipf("the replica went to %s; the test wants it on a or b", holder)
	}
	f.stopManager()
	// The outage: nobody writes heartbeats for longer than the staleness,
	// and c dies meanwhile.
	f.beats[holder].Stop()
	f.beats[deadName].Stop()
	dead.SetDown(true)
	time.Sleep(staleAfter + time.Second)
	loadsBefore := f.neurons[other].Loads(f.key("m"))

	f.startManager()
	restarted := time.Now()
	// The holder's neuron writes again a moment after the API is back.
	time.Sleep(time.Second)
	f.beats[holder] = f.neurons[holder].StartHeartbeat(f.ctx, k8s, beatInterval)
	eventually(t, 10*time.Second, "the dead node to turn NotReady", func() (bool, string) {
		nn := &cortexv1.NeuronNode{}
		must(t, k8s.Get(f.ctx, types.NamespacedName{Name: deadName}, nn))
		return nn.Status.Ready == "False", fmt.Sprintf("ready=%q", nn.Status.Ready)
	})
	t.Logf("dead node NotReady %s after the restart", time.Since(restarted).Round(100*time.Millisecond))
	for time.Since(restarted) < 2*staleAfter {
		nn := &cortexv1.NeuronNode{}
		must(t, k8s.Get(f.ctx, types.NamespacedName{Name: holder}, nn))
		if nn.Status.Ready != "True" {
			t.Fatalf("the live node turned NotReady %s after the restart: %+v", time.Since(restarted).Round(100*time.Millisecond), nn.Status.Conditions)
		}
		if m = f.get("m"); m.Status.Nodes != holder || m.Status.ReadyReplicas != 1 {
			t.Fatalf("the replica moved or went unready: %s", describe(m))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := f.neurons[other].Loads(f.key("m")) - loadsBefore; n != 0 {
		t.Fatalf("%d loads of m on %s after the restart, want none", n, other)
	}
}

// A neuron that cannot write its heartbeat (the API server is away from
// it) but answers the manager's polls keeps its node Ready, as
// HeartbeatLate, and its replicas where they are; once it writes again
// the node is HeartbeatFresh.
func TestLateHeartbeatOfAnAnsweringNeuronKeepsItsReplicas(t *testing.T) {
	f := newFixture(t)
	f.addNeuron("a", 10*gib)
	f.addNeuron("b", 10*gib)
	f.startManager()
	f.apply("m", withMin(1), withVRAM(4))
	m := f.waitPhase("m", cortexv1.ModelPhaseReady, 20*time.Second)
	holder := m.Status.Nodes
	other := f.label + "-a"
	if holder == other {
		other = f.label + "-b"
	}
	loadsBefore := f.neurons[other].Loads(f.key("m"))
	f.beats[holder].Stop()
	stopped := time.Now()
	reason := func() string {
		nn := &cortexv1.NeuronNode{}
		must(t, k8s.Get(f.ctx, types.NamespacedName{Name: holder}, nn))
		c := meta.FindStatusCondition(nn.Status.Conditions, cortexv1.NeuronNodeConditionReady)
		if c == nil {
			return "none"
		}
		return string(c.Status) + "/" + c.Reason
	}
	for time.Since(stopped) < 3*staleAfter {
		if got := reason(); got != "True/"+cortexv1.ReasonHeartbeatFresh && got != "True/"+cortexv1.ReasonHeartbeatLate {
			t.Fatalf("the answering node turned %s %s after its last heartbeat", got, time.Since(stopped).Round(100*time.Millisecond))
		}
		if m = f.get("m"); m.Status.Nodes != holder || m.Status.ReadyReplicas != 1 {
			t.Fatalf("the replica moved or went unready: %s", describe(m))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := reason(); got != "True/"+cortexv1.ReasonHeartbeatLate {
		t.Fatalf("Ready condition %s with the heartbeat %s late, want True/HeartbeatLate", got, time.Since(stopped).Round(time.Second))
	}
	if n := f.neurons[other].Loads(f.key("m")) - loadsBefore; n != 0 {
		t.Fatalf("%d loads of m on %s, want none", n, other)
	}
	f.beats[holder] = f.neurons[holder].StartHeartbeat(f.ctx, k8s, beatInterval)
	eventually(t, 10*time.Second, "the node to be HeartbeatFresh again", func() (bool, string) {
		got := reason()
		return got == "True/"+cortexv1.ReasonHeartbeatFresh, got
	})
}

func TestDeleteUnloadsEverywhere(t *testing.T) {
	f := newFixture(t)
	a := f.addNeuron("a", 10*gib)
	b := f.addNeuron("b", 10*gib)
	f.startManager()
	f.apply("m", withMin(2), withMax(2), withVRAM(4))
	m := f.waitPhase("m", cortexv1.ModelPhaseReady, 20*time.Second)
	if m.Status.Ready != "2/2" {
		t.Fatalf("status = %s", describe(m))
	}
	must(t, k8s.Delete(f.ctx, m))
	eventually(t, 20*time.Second, "the Model to go away", func() (bool, string) {
		cur := &cortexv1.Model{}
		err := k8s.Get(f.ctx, types.NamespacedName{Namespace: f.ns, Name: "m"}, cur)
		return apierrors.IsNotFound(err), describe(cur)
	})
	for _, n := range []*neurontest.Server{a, b} {
		if len(n.Resident()) != 0 || n.Unloads(f.key("m")) != 1 {
			t.Fatalf("%s: resident %v, unloads %d", n.Name(), n.Resident(), n.Unloads(f.key("m")))
		}
	}
}

func TestManagerRestartKeepsStatusWithoutReloading(t *testing.T) {
	f := newFixture(t)
	n := f.addNeuron("a", 10*gib)
	f.startManager()
	f.apply("m", withMin(1), withVRAM(4))
	before := f.waitPhase("m", cortexv1.ModelPhaseReady, 20*time.Second)

	f.stopManager()
	f.startManager()
	// Let the new manager run many passes.
	time.Sleep(10 * pollInterval)
	after := f.waitPhase("m", cortexv1.ModelPhaseReady, 20*time.Second)
	if n.Loads(f.key("m")) != 1 {
		t.Fatalf("load calls = %d after restart, want 1", n.Loads(f.key("m")))
	}
	if before.Status.Nodes != after.Status.Nodes || before.Status.Ready != after.Status.Ready ||
		!before.Status.Replicas[0].LoadedAt.Equal(after.Status.Replicas[0].LoadedAt) {
		t.Fatalf("status changed across restart:\nbefore %s\nafter  %s", describe(before), describe(after))
	}
}

func TestFailedLoadIsReportedAndBackedOff(t *testing.T) {
	f := newFixture(t)
	uri := "https://models.example/broken.gguf"
	n := f.addNeuronWith("a", neurontest.Config{Devices: []int64{10 * gib}, FailSources: map[string]string{uri: "checksum mismatch: got abc"}})
	f.startManager()
	f.apply("broken", withMin(1), withVRAM(1), withSource(uri))
	m := f.waitPhase("broken", cortexv1.ModelPhaseFailed, 20*time.Second)
	c := condition(m, cortexv1.ModelConditionReady)
	if c.Reason != cortexv1.ReasonLoadFailed || !strings.Contains(c.Message, "checksum mismatch") {
		t.Fatalf("Ready condition = %+v", c)
	}
	// Back-off: no storm of retries.
	time.Sleep(2 * time.Second)
	if got := n.Loads(f.key("broken")); got > 1 {
		t.Fatalf("load calls within the back-off = %d, want 1", got)
	}
}

func TestIdleModelUnloadsAfterKeepAlive(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 30s minimum keep-alive")
	}
	f := newFixture(t)
	n := f.addNeuron("a", 10*gib)
	f.startManager()
	// In demand now, with the shortest keep-alive the planner allows.
	f.apply("m", withVRAM(2), demanded(time.Now()), func(m *cortexv1.Model) { m.Spec.KeepAlive = &metav1.Duration{Duration: time.Second} })
	f.waitPhase("m", cortexv1.ModelPhaseReady, 20*time.Second)
	m := f.waitPhase("m", cortexv1.ModelPhaseIdle, 60*time.Second)
	if len(n.Resident()) != 0 || n.Unloads(f.key("m")) != 1 {
		t.Fatalf("after keep-alive: resident %v, %s", n.Resident(), describe(m))
	}
}

// A Model without spec.keepAlive learns one from its own idle gaps: one
// used every few hundred milliseconds gets the 30s minimum and is unloaded
// 30s after its last use, while the same uses leave a Model with
// spec.keepAlive 15m loaded. A manager restart in between keeps it.
func TestKeepAliveIsLearnedFromIdleGaps(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 30s minimum keep-alive")
	}
	f := newFixture(t)
	n := f.addNeuron("a", 10*gib)
	f.startManager()
	f.apply("learns", withVRAM(2), demanded(time.Now()))
	f.apply("fixed", withVRAM(2), demanded(time.Now()), func(m *cortexv1.Model) { m.Spec.KeepAlive = &metav1.Duration{Duration: 15 * time.Minute} })
	f.waitPhase("learns", cortexv1.ModelPhaseReady, 20*time.Second)
	f.waitPhase("fixed", cortexv1.ModelPhaseReady, 20*time.Second)
	if m := f.get("learns"); m.Status.KeepAliveSource != cortexv1.KeepAliveDefault || m.Status.KeepAlive == nil || m.Status.KeepAlive.Duration != 15*time.Minute {
		t.Fatalf("before any idle gap: keepAlive %v from %q, want 15m from Default", m.Status.KeepAlive, m.Status.KeepAliveSource)
	}
	// Both serve a request every 400ms; the polls (every 300ms) see each.
	for range 2 * placement.MinIdleObservations {
		now := time.Now()
		n.SetLastUsed(f.key("learns"), now)
		n.SetLastUsed(f.key("fixed"), now)
		time.Sleep(400 * time.Millisecond)
	}
	lastUse := time.Now()
	n.SetLastUsed(f.key("learns"), lastUse)
	n.SetLastUsed(f.key("fixed"), lastUse)
	// No event follows a use (the next pass may be a resync away): a label
	// brings one, as any change to the Model would.
	m := f.get("learns")
	m.Labels = map[string]string{"touched": "yes"}
	must(t, k8s.Update(f.ctx, m))
	eventually(t, 10*time.Second, "a learned keep-alive", func() (bool, string) {
		m = f.get("learns")
		return m.Status.KeepAliveSource == cortexv1.KeepAliveLearned && m.Status.KeepAlive.Duration == placement.MinKeepAlive, describe(m)
	})
	// A restarted manager (or the standby taking over) has seen no gaps;
	// it keeps the learned keep-alive from status.
	f.stopManager()
	f.startManager()
	m = f.waitPhase("learns", cortexv1.ModelPhaseIdle, placement.MinKeepAlive+10*time.Second)
	if m.Status.KeepAliveSource != cortexv1.KeepAliveLearned || m.Status.KeepAlive.Duration != placement.MinKeepAlive {
		t.Fatalf("after the restart: %s", describe(m))
	}
	if idle := time.Since(lastUse); idle < placement.MinKeepAlive {
		t.Fatalf("unloaded %s after its last use, before the 30s minimum", idle)
	}
	if n.Unloads(f.key("learns")) != 1 {
		t.Fatalf("unloads of learns = %d: %s", n.Unloads(f.key("learns")), describe(m))
	}
	if !slices.Equal(n.Resident(), []string{f.key("fixed")}) {
		t.Fatalf("resident = %v, want fixed only", n.Resident())
	}
	if fx := f.get("fixed"); fx.Status.Phase != cortexv1.ModelPhaseReady || fx.Status.KeepAliveSource != cortexv1.KeepAliveFromSpec || fx.Status.KeepAlive.Duration != 15*time.Minute {
		t.Fatalf("fixed: keepAlive %v from %q, %s", fx.Status.KeepAlive, fx.Status.KeepAliveSource, describe(fx))
	}
}

func TestInvalidSpecsAreRejectedByTheAPIServer(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name string
		opt  modelOpt
		want string
	}{
		{"min-above-max", func(m *cortexv1.Model) { m.Spec.Replicas = cortexv1.ReplicaRange{Min: 3, Max: 2} }, "replicas.min must be less than or equal to replicas.max"},
		{"bad-scheme", withSource("s3://bucket/model.gguf"), "source.uri must start with hf://, https:// or file:///"},
		{"relative-file", withSource("file://model.gguf"), "source.uri must start with hf://, https:// or file:///"},
		{"hf-no-gguf", withSource("hf://org/repo/model.bin"), "an hf:// source must be hf://<org>/<repo>/<path>.gguf"},
		{"bad-sha", func(m *cortexv1.Model) { m.Spec.Source.SHA256 = "XYZ" }, "spec.source.sha256"},
		{"priority", withPriority(5000), "spec.priority"},
		{"bad-name", func(m *cortexv1.Model) { m.Spec.ServedNames = []string{"has space"} }, "spec.servedNames"},
		{"bad-enum", func(m *cortexv1.Model) { m.Spec.Engine.KVCacheType = "q2" }, "spec.engine.kvCacheType"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &cortexv1.Model{
				ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: tc.name},
				Spec:       cortexv1.ModelSpec{Source: cortexv1.ModelSource{URI: "https://x.example/m.gguf"}, Replicas: cortexv1.ReplicaRange{Max: 1}},
			}
			tc.opt(m)
			err := k8s.Create(f.ctx, m)
			if err == nil {
				t.Fatal("created; want rejection")
			}
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v; want Invalid mentioning %q", err, tc.want)
			}
		})
	}
}

// TestKubectl shows the printer columns and the documented schema through
// kubectl against the test API server.
func TestKubectl(t *testing.T) {
	kubectl := findKubectl(t)
	f := newFixture(t)
	f.addNeuron("a", 24*gib, 24*gib)
	f.startManager()
	f.apply("llama", withMin(1), withVRAM(5))
	f.waitPhase("llama", cortexv1.ModelPhaseReady, 20*time.Second)

	out := run(t, kubectl, "get", "models", "-n", f.ns)
	header := strings.Fields(strings.SplitN(out, "\n", 2)[0])
	if !slices.Equal(header, []string{"NAME", "READY", "PHASE", "NODES", "VRAM", "AGE"}) {
		t.Fatalf("kubectl get models header = %v\n%s", header, out)
	}
	if !strings.Contains(out, "1/1") || !strings.Contains(out, "Ready") || !strings.Contains(out, "5.0Gi") {
		t.Fatalf("kubectl get models:\n%s", out)
	}
	t.Logf("kubectl get models:\n%s", out)

	out = run(t, kubectl, "get", "neuronnodes", "-l", "test="+f.label)
	header = strings.Fields(strings.SplitN(out, "\n", 2)[0])
	if !slices.Equal(header, []string{"NAME", "READY", "GPUS", "VRAM", "FREE/TOTAL", "MODELS", "AGE"}) {
		t.Fatalf("kubectl get neuronnodes header = %v\n%s", header, out)
	}
	t.Logf("kubectl get neuronnodes:\n%s", out)

	out = run(t, kubectl, "explain", "model.spec.source")
	for _, want := range []string{"uri", "sha256", "hf://"} {
		if !strings.Contains(out, want) {
			t.Fatalf("kubectl explain model.spec.source lacks %q:\n%s", want, out)
		}
	}
	out = run(t, kubectl, "get", "cortex", "-n", f.ns)
	if !strings.Contains(out, "model.cortex.helexa.ai/llama") {
		t.Fatalf("kubectl get cortex (category):\n%s", out)
	}
}

func findKubectl(t *testing.T) string {
	t.Helper()
	p, err := env.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t *testing.T, kubectl string, args ...string) string {
	t.Helper()
	if kubeconfigPath == "" {
		t.Fatal("no kubeconfig for the test API server")
	}
	cmd := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfigPath}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out.String())
	}
	return out.String()
}

func TestSpecChangeReloadsTheReplica(t *testing.T) {
	f := newFixture(t)
	n := f.addNeuron("a", 10*gib)
	f.startManager()
	f.apply("m", withMin(1), withVRAM(2))
	f.waitPhase("m", cortexv1.ModelPhaseReady, 20*time.Second)
	m := f.get("m")
	m.Spec.Engine.Parallel = 8
	must(t, k8s.Update(f.ctx, m))
	eventually(t, 20*time.Second, "the replica to be reloaded with parallel 8", func() (bool, string) {
		for _, st := range n.Snapshot().Models {
			if st.Name == f.key("m") && st.Engine.Parallel == 8 && st.State == "ready" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", n.Snapshot().Models)
	})
	if n.Loads(f.key("m")) != 2 || n.Unloads(f.key("m")) != 1 {
		t.Fatalf("loads %d unloads %d, want 2 and 1", n.Loads(f.key("m")), n.Unloads(f.key("m")))
	}
	f.waitPhase("m", cortexv1.ModelPhaseReady, 20*time.Second)
}
