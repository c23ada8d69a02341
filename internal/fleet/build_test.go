package fleet

import (
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
)

// Builders with option functions for test objects.

type nodeOpt func(*cortexv1.NeuronNode)

func newNode(name string, opts ...nodeOpt) *cortexv1.NeuronNode {
	nn := &cortexv1.NeuronNode{ObjectMeta: metav1.ObjectMeta{Name: name}}
	nn.Status.Conditions = []metav1.Condition{{Type: cortexv1.NeuronNodeConditionReady, Status: metav1.ConditionTrue, Reason: cortexv1.ReasonHeartbeatFresh}}
	for _, o := range opts {
		o(nn)
	}
	return nn
}

func notReady(reason, msg string) nodeOpt {
	return func(nn *cortexv1.NeuronNode) {
		nn.Status.Conditions = []metav1.Condition{{Type: cortexv1.NeuronNodeConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: msg}}
	}
}

// late is a Ready node whose heartbeat is late: its neuron answers.
func late() nodeOpt {
	return func(nn *cortexv1.NeuronNode) {
		nn.Status.Conditions = []metav1.Condition{{Type: cortexv1.NeuronNodeConditionReady, Status: metav1.ConditionTrue, Reason: cortexv1.ReasonHeartbeatLate}}
	}
}

func noCondition() nodeOpt {
	return func(nn *cortexv1.NeuronNode) { nn.Status.Conditions = nil }
}

func gpu(kind cortexv1.DeviceKind, free, total int64) nodeOpt {
	return func(nn *cortexv1.NeuronNode) {
		nn.Status.GPUs = append(nn.Status.GPUs, cortexv1.GPU{Index: int32(len(nn.Status.GPUs)), Kind: kind, MemoryFreeBytes: free, MemoryTotalBytes: total})
	}
}

func holds(key string) nodeOpt {
	return func(nn *cortexv1.NeuronNode) {
		nn.Status.Models = append(nn.Status.Models, cortexv1.ResidentModel{Name: key, State: cortexv1.ReplicaReady})
	}
}

func cordoned() nodeOpt { return func(nn *cortexv1.NeuronNode) { nn.Spec.Unschedulable = true } }

type modelOpt func(*ModelInput)

func newModel(name string, opts ...modelOpt) ModelInput {
	in := ModelInput{Model: &cortexv1.Model{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}}
	for _, o := range opts {
		o(&in)
	}
	return in
}

func inPhase(p cortexv1.ModelPhase) modelOpt {
	return func(in *ModelInput) { in.Model.Status.Phase = p }
}

func replica(node string, state cortexv1.ReplicaState, vram int64, lastErr string) modelOpt {
	return func(in *ModelInput) {
		in.Model.Status.Replicas = append(in.Model.Status.Replicas, cortexv1.Replica{Node: node, State: state, VRAMBytes: vram, LastError: lastErr})
	}
}

func routable(nodes ...string) modelOpt { return func(in *ModelInput) { in.Routable = nodes } }
func eligible(nodes ...string) modelOpt { return func(in *ModelInput) { in.Eligible = nodes } }

func condition(typ string, status metav1.ConditionStatus, msg string) modelOpt {
	return func(in *ModelInput) {
		in.Model.Status.Conditions = append(in.Model.Status.Conditions, metav1.Condition{Type: typ, Status: status, Message: msg})
	}
}

func selector(k, v string) modelOpt {
	return func(in *ModelInput) { in.Model.Spec.Placement.NodeSelector = map[string]string{k: v} }
}

func deleting() modelOpt {
	return func(in *ModelInput) {
		now := metav1.Now()
		in.Model.DeletionTimestamp = &now
	}
}

func TestBuildStatus(t *testing.T) {
	const gi = 1 << 30
	tests := []struct {
		name       string
		nodes      []*cortexv1.NeuronNode
		models     []ModelInput
		want       Status
		nodes2     NodeCount
		unservable []Unservable
	}{
		{
			name: "no node at all can serve nothing",
			want: StatusDegraded,
		},
		{
			name:   "one Ready node, no Model",
			nodes:  []*cortexv1.NeuronNode{newNode("a")},
			want:   StatusOK,
			nodes2: NodeCount{1, 1},
		},
		{
			name:   "every node not Ready",
			nodes:  []*cortexv1.NeuronNode{newNode("a", notReady(cortexv1.ReasonHeartbeatStale, ""))},
			want:   StatusDegraded,
			nodes2: NodeCount{0, 1},
		},
		{
			name:   "a served Model and an idle one that can load",
			nodes:  []*cortexv1.NeuronNode{newNode("a"), newNode("b")},
			models: []ModelInput{newModel("m", inPhase(cortexv1.ModelPhaseReady), replica("a", cortexv1.ReplicaReady, gi, ""), routable("a"), eligible("a", "b")), newModel("idle", inPhase(cortexv1.ModelPhaseIdle), eligible("a", "b"))},
			want:   StatusOK,
			nodes2: NodeCount{2, 2},
		},
		{
			name:   "an unhealthy node holding nothing impairs",
			nodes:  []*cortexv1.NeuronNode{newNode("a"), newNode("b", notReady(cortexv1.ReasonHeartbeatStale, "last heartbeat 2m ago"))},
			models: []ModelInput{newModel("m", inPhase(cortexv1.ModelPhaseReady), replica("a", cortexv1.ReplicaReady, gi, ""), routable("a"), eligible("a"))},
			want:   StatusImpaired,
			nodes2: NodeCount{1, 2},
		},
		{
			name:  "a replica on a node that went away, served elsewhere",
			nodes: []*cortexv1.NeuronNode{newNode("a"), newNode("b", notReady(cortexv1.ReasonUnreachable, "dial tcp: refused"))},
			models: []ModelInput{newModel("m", inPhase(cortexv1.ModelPhaseReady),
				replica("a", cortexv1.ReplicaReady, gi, ""), replica("b", cortexv1.ReplicaReady, gi, ""), replica("gone", cortexv1.ReplicaLoading, 0, ""),
				routable("a"), eligible("a"))},
			want:   StatusImpaired,
			nodes2: NodeCount{1, 2},
			unservable: []Unservable{
				{Model: "ns/m", Node: "b", Reason: ReasonNodeNotReady, Detail: "NeuronNode b is not Ready (Unreachable): dial tcp: refused"},
				{Model: "ns/m", Node: "gone", Reason: ReasonNodeNotReady, Detail: "NeuronNode gone does not exist"},
			},
		},
		{
			name:  "the only replica's node is down but another can load it: impaired, not degraded",
			nodes: []*cortexv1.NeuronNode{newNode("a"), newNode("b", noCondition())},
			models: []ModelInput{newModel("m", inPhase(cortexv1.ModelPhaseReady),
				replica("b", cortexv1.ReplicaReady, gi, ""), eligible("a"))},
			want:   StatusImpaired,
			nodes2: NodeCount{1, 2},
			unservable: []Unservable{
				{Model: "ns/m", Node: "b", Reason: ReasonNodeNotReady, Detail: "NeuronNode b has not reported yet"},
			},
		},
		{
			name:   "no node matches the placement",
			nodes:  []*cortexv1.NeuronNode{newNode("a")},
			models: []ModelInput{newModel("m", inPhase(cortexv1.ModelPhaseIdle), selector("gpu", "h100"))},
			want:   StatusDegraded,
			nodes2: NodeCount{1, 1},
			unservable: []Unservable{
				{Model: "ns/m", Reason: ReasonNoEligibleNode, Detail: "no Ready, uncordoned NeuronNode matches nodeSelector gpu=h100"},
			},
		},
		{
			name:   "a replica still loading on a Ready node is not down, even with nowhere else to go",
			nodes:  []*cortexv1.NeuronNode{newNode("a", cordoned())},
			models: []ModelInput{newModel("m", inPhase(cortexv1.ModelPhaseLoading), replica("a", cortexv1.ReplicaLoading, gi, ""))},
			want:   StatusOK,
			nodes2: NodeCount{1, 1},
		},
		{
			name:  "every load failed",
			nodes: []*cortexv1.NeuronNode{newNode("a")},
			models: []ModelInput{newModel("m", inPhase(cortexv1.ModelPhaseFailed),
				replica("a", cortexv1.ReplicaFailed, 0, "sha256 mismatch"), eligible("a"),
				condition(cortexv1.ModelConditionReady, metav1.ConditionFalse, "sha256 mismatch"))},
			want:   StatusDegraded,
			nodes2: NodeCount{1, 1},
			unservable: []Unservable{
				{Model: "ns/m", Reason: ReasonLoadFailed, Detail: "sha256 mismatch"},
				{Model: "ns/m", Node: "a", Reason: ReasonLoadFailed, Detail: "sha256 mismatch"},
			},
		},
		{
			name:  "one replica failed, another serves",
			nodes: []*cortexv1.NeuronNode{newNode("a"), newNode("b")},
			models: []ModelInput{newModel("m", inPhase(cortexv1.ModelPhaseDegraded),
				replica("a", cortexv1.ReplicaReady, gi, ""), replica("b", cortexv1.ReplicaFailed, 0, ""), routable("a"), eligible("a", "b"))},
			want:   StatusImpaired,
			nodes2: NodeCount{2, 2},
			unservable: []Unservable{
				{Model: "ns/m", Node: "b", Reason: ReasonLoadFailed, Detail: "the replica failed to load"},
			},
		},
		{
			name:  "unschedulable and nothing serves",
			nodes: []*cortexv1.NeuronNode{newNode("a")},
			models: []ModelInput{newModel("big", inPhase(cortexv1.ModelPhaseUnschedulable), eligible("a"),
				condition(cortexv1.ModelConditionScheduled, metav1.ConditionFalse, "needs 40.0Gi; the largest node has 16.0Gi"))},
			want:   StatusDegraded,
			nodes2: NodeCount{1, 1},
			unservable: []Unservable{
				{Model: "ns/big", Reason: ReasonUnschedulable, Detail: "needs 40.0Gi; the largest node has 16.0Gi"},
			},
		},
		{
			name:  "unschedulable for a second replica while one serves",
			nodes: []*cortexv1.NeuronNode{newNode("a")},
			models: []ModelInput{newModel("m", inPhase(cortexv1.ModelPhaseDegraded), replica("a", cortexv1.ReplicaReady, gi, ""), routable("a"), eligible("a"),
				condition(cortexv1.ModelConditionScheduled, metav1.ConditionFalse, ""))},
			want:   StatusImpaired,
			nodes2: NodeCount{1, 1},
			unservable: []Unservable{
				{Model: "ns/m", Reason: ReasonUnschedulable, Detail: "a wanted replica has no node"},
			},
		},
		{
			name:   "a terminating Model counts for nothing",
			nodes:  []*cortexv1.NeuronNode{newNode("a")},
			models: []ModelInput{newModel("m", inPhase(cortexv1.ModelPhaseFailed), deleting())},
			want:   StatusOK,
			nodes2: NodeCount{1, 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Build(tt.models, tt.nodes)
			if r.Status != tt.want {
				t.Errorf("status = %s, want %s (unservable %+v)", r.Status, tt.want, r.Unservable)
			}
			if r.Nodes != tt.nodes2 {
				t.Errorf("nodes = %+v, want %+v", r.Nodes, tt.nodes2)
			}
			want := tt.unservable
			if want == nil {
				want = []Unservable{}
			}
			if !reflect.DeepEqual(r.Unservable, want) {
				t.Errorf("unservable =\n  %+v\nwant\n  %+v", r.Unservable, want)
			}
		})
	}
}

func TestBuildDescribesNodesAndModels(t *testing.T) {
	const gi = 1 << 30
	nodes := []*cortexv1.NeuronNode{
		newNode("b", notReady(cortexv1.ReasonHeartbeatStale, ""), gpu(cortexv1.DeviceCUDA, 10*gi, 80*gi), gpu(cortexv1.DeviceCUDA, 20*gi, 80*gi), holds("ns/m"), holds("ns/a")),
		newNode("a", gpu(cortexv1.DeviceCPU, 3*gi, 8*gi), cordoned()),
		newNode("late", late()),
	}
	m := newModel("m", inPhase(cortexv1.ModelPhaseDegraded),
		replica("c", cortexv1.ReplicaFailed, 0, "boom"),
		replica("b", cortexv1.ReplicaLoading, 2*gi, ""),
		replica("a", cortexv1.ReplicaReady, 2*gi, ""),
		routable("a"), eligible("a", "d", "e"))
	m.Model.Spec.ServedNames = []string{"llama", "gpt"}
	m.Model.Status.DesiredReplicas = 2
	m.Model.Status.VRAMBytes = 3 * gi
	r := Build([]ModelInput{m, newModel("aa")}, nodes)

	wantNodes := []Node{
		{Name: "a", Ready: true, Cordoned: true, GPUs: 0, MemoryFreeBytes: 3 * gi, MemoryTotalBytes: 8 * gi, Models: []string{}},
		{Name: "b", Reason: cortexv1.ReasonHeartbeatStale, GPUs: 2, MemoryFreeBytes: 30 * gi, MemoryTotalBytes: 160 * gi, Models: []string{"ns/a", "ns/m"}},
		{Name: "late", Ready: true, Reason: cortexv1.ReasonHeartbeatLate, Models: []string{}},
	}
	if !reflect.DeepEqual(r.Neurons, wantNodes) {
		t.Errorf("neurons =\n  %+v\nwant\n  %+v", r.Neurons, wantNodes)
	}
	if len(r.Models) != 2 || r.Models[0].Model != "ns/aa" || r.Models[0].Phase != "Pending" || len(r.Models[0].Locations) != 0 {
		t.Fatalf("models = %+v", r.Models)
	}
	got := r.Models[1]
	if got.Model != "ns/m" || !reflect.DeepEqual(got.Names, []string{"llama", "gpt"}) || got.Phase != "Degraded" || got.Ready != 1 || got.Desired != 2 {
		t.Errorf("model = %+v", got)
	}
	wantLocs := []Location{
		{Node: "a", State: "Ready", NodeReady: true, Memory: Memory{ModelBytes: 2 * gi, FreeBytes: 3 * gi, TotalBytes: 8 * gi}},
		{Node: "b", State: "Loading", Memory: Memory{ModelBytes: 2 * gi, FreeBytes: 30 * gi, TotalBytes: 160 * gi}},
		{Node: "c", State: "Failed"},
		{Node: "d", State: StatePlaceable, Memory: Memory{ModelBytes: 3 * gi}},
		{Node: "e", State: StatePlaceable, Memory: Memory{ModelBytes: 3 * gi}},
	}
	if !reflect.DeepEqual(got.Locations, wantLocs) {
		t.Errorf("locations =\n  %+v\nwant\n  %+v", got.Locations, wantLocs)
	}
}
