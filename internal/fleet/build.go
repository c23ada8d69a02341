package fleet

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
)

// Build computes the report. It reads its inputs and never changes them.
func Build(models []ModelInput, nodes []*cortexv1.NeuronNode) Report {
	r := Report{Unservable: []Unservable{}, Neurons: make([]Node, 0, len(nodes)), Models: make([]Model, 0, len(models))}
	byName := make(map[string]*cortexv1.NeuronNode, len(nodes))
	for _, nn := range nodes {
		byName[nn.Name] = nn
		n := node(nn)
		r.Nodes.Total++
		if n.Ready {
			r.Nodes.Healthy++
		}
		r.Neurons = append(r.Neurons, n)
	}
	slices.SortFunc(r.Neurons, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })

	down := false
	for _, in := range models {
		m := in.Model
		r.Models = append(r.Models, Model{
			Model:     m.Key(),
			Names:     slices.Clone(m.Names()),
			Phase:     phase(m),
			Ready:     len(in.Routable),
			Desired:   m.Status.DesiredReplicas,
			Locations: locations(in, byName),
		})
		if !m.DeletionTimestamp.IsZero() {
			continue
		}
		issues, isDown := unservable(in, byName)
		r.Unservable = append(r.Unservable, issues...)
		down = down || isDown
	}
	slices.SortFunc(r.Models, func(a, b Model) int { return strings.Compare(a.Model, b.Model) })
	slices.SortFunc(r.Unservable, func(a, b Unservable) int {
		return cmp.Or(strings.Compare(a.Model, b.Model), strings.Compare(a.Node, b.Node), strings.Compare(a.Reason, b.Reason))
	})

	switch {
	case r.Nodes.Healthy == 0 || down:
		r.Status = StatusDegraded
	case r.Nodes.Healthy < r.Nodes.Total || len(r.Unservable) > 0:
		r.Status = StatusImpaired
	default:
		r.Status = StatusOK
	}
	return r
}

func node(nn *cortexv1.NeuronNode) Node {
	n := Node{Name: nn.Name, Cordoned: nn.Spec.Unschedulable, Models: []string{}}
	if c := meta.FindStatusCondition(nn.Status.Conditions, cortexv1.NeuronNodeConditionReady); c != nil && c.Status == "True" {
		n.Ready = true
		if c.Reason == cortexv1.ReasonHeartbeatLate {
			n.Reason = c.Reason
		}
	} else if c != nil {
		n.Reason = c.Reason
	} else {
		n.Reason = cortexv1.ReasonNoHeartbeat
	}
	for _, g := range nn.Status.GPUs {
		if g.Kind != cortexv1.DeviceCPU {
			n.GPUs++
		}
		n.MemoryFreeBytes += g.MemoryFreeBytes
		n.MemoryTotalBytes += g.MemoryTotalBytes
	}
	for _, rm := range nn.Status.Models {
		n.Models = append(n.Models, rm.Name)
	}
	slices.Sort(n.Models)
	return n
}

func nodeReady(nn *cortexv1.NeuronNode) bool {
	return nn != nil && meta.IsStatusConditionTrue(nn.Status.Conditions, cortexv1.NeuronNodeConditionReady)
}

func phase(m *cortexv1.Model) string {
	switch {
	case !m.DeletionTimestamp.IsZero():
		return string(cortexv1.ModelPhaseTerminating)
	case m.Status.Phase == "":
		return string(cortexv1.ModelPhasePending)
	}
	return string(m.Status.Phase)
}

// stateOrder sorts replica locations: serving first, then what is coming,
// going, and broken (placeable ones come last).
var stateOrder = map[string]int{
	string(cortexv1.ReplicaReady):     0,
	string(cortexv1.ReplicaLoading):   1,
	string(cortexv1.ReplicaUnloading): 2,
	string(cortexv1.ReplicaFailed):    3,
	StatePlaceable:                    4,
}

// locations lists the replicas, sorted by state and node, then the
// eligible nodes without one, sorted by node. On a large fleet most
// locations are placeable ones, so only the few replicas are sorted.
func locations(in ModelInput, nodes map[string]*cortexv1.NeuronNode) []Location {
	reps := in.Model.Status.Replicas
	out := make([]Location, 0, len(reps)+len(in.Eligible))
	for _, rep := range reps {
		out = append(out, location(rep.Node, string(rep.State), rep.VRAMBytes, nodes[rep.Node]))
	}
	slices.SortFunc(out, func(a, b Location) int {
		return cmp.Or(cmp.Compare(stateOrder[a.State], stateOrder[b.State]), strings.Compare(a.Node, b.Node))
	})
	eligible := in.Eligible
	if !slices.IsSorted(eligible) {
		eligible = slices.Sorted(slices.Values(eligible))
	}
	for _, name := range eligible {
		if !slices.ContainsFunc(reps, func(r cortexv1.Replica) bool { return r.Node == name }) {
			out = append(out, location(name, StatePlaceable, in.Model.Status.VRAMBytes, nodes[name]))
		}
	}
	return out
}

func location(name, state string, modelBytes int64, nn *cortexv1.NeuronNode) Location {
	l := Location{Node: name, State: state, NodeReady: nodeReady(nn), Memory: Memory{ModelBytes: modelBytes}}
	if nn != nil {
		for _, g := range nn.Status.GPUs {
			l.Memory.FreeBytes += g.MemoryFreeBytes
			l.Memory.TotalBytes += g.MemoryTotalBytes
		}
	}
	return l
}

// unservable lists what of one Model cannot serve, and whether the Model
// is down (no routable replica and no way to get one).
func unservable(in ModelInput, nodes map[string]*cortexv1.NeuronNode) (out []Unservable, down bool) {
	m := in.Model
	key := m.Key()
	for _, rep := range m.Status.Replicas {
		switch rep.State {
		case cortexv1.ReplicaFailed:
			detail := rep.LastError
			if detail == "" {
				detail = "the replica failed to load"
			}
			out = append(out, Unservable{Model: key, Node: rep.Node, Reason: ReasonLoadFailed, Detail: detail})
		case cortexv1.ReplicaReady, cortexv1.ReplicaLoading:
			if nn := nodes[rep.Node]; !nodeReady(nn) {
				out = append(out, Unservable{Model: key, Node: rep.Node, Reason: ReasonNodeNotReady, Detail: notReadyDetail(rep.Node, nn)})
			}
		}
	}

	sched := meta.FindStatusCondition(m.Status.Conditions, cortexv1.ModelConditionScheduled)
	unsched := sched != nil && sched.Status == "False"
	if len(in.Routable) > 0 {
		if unsched {
			out = append(out, Unservable{Model: key, Reason: ReasonUnschedulable, Detail: orDefault(sched.Message, "a wanted replica has no node")})
		}
		return out, false
	}
	switch {
	case m.Status.Phase == cortexv1.ModelPhaseFailed:
		detail := "every load attempt failed"
		if c := meta.FindStatusCondition(m.Status.Conditions, cortexv1.ModelConditionReady); c != nil && c.Message != "" {
			detail = c.Message
		}
		return append(out, Unservable{Model: key, Reason: ReasonLoadFailed, Detail: detail}), true
	case unsched || m.Status.Phase == cortexv1.ModelPhaseUnschedulable:
		detail := "no node can hold a replica"
		if sched != nil && sched.Message != "" {
			detail = sched.Message
		}
		return append(out, Unservable{Model: key, Reason: ReasonUnschedulable, Detail: detail}), true
	case len(in.Eligible) == 0 && !loadingOnReadyNode(m, nodes):
		return append(out, Unservable{Model: key, Reason: ReasonNoEligibleNode, Detail: noEligibleDetail(m)}), true
	}
	return out, false
}

func loadingOnReadyNode(m *cortexv1.Model, nodes map[string]*cortexv1.NeuronNode) bool {
	return slices.ContainsFunc(m.Status.Replicas, func(r cortexv1.Replica) bool {
		return r.State == cortexv1.ReplicaLoading && nodeReady(nodes[r.Node])
	})
}

func notReadyDetail(name string, nn *cortexv1.NeuronNode) string {
	if nn == nil {
		return fmt.Sprintf("NeuronNode %s does not exist", name)
	}
	c := meta.FindStatusCondition(nn.Status.Conditions, cortexv1.NeuronNodeConditionReady)
	if c == nil {
		return fmt.Sprintf("NeuronNode %s has not reported yet", name)
	}
	if c.Message != "" {
		return fmt.Sprintf("NeuronNode %s is not Ready (%s): %s", name, c.Reason, c.Message)
	}
	return fmt.Sprintf("NeuronNode %s is not Ready (%s)", name, c.Reason)
}

func noEligibleDetail(m *cortexv1.Model) string {
	var wants []string
	if sel := m.Spec.Placement.NodeSelector; len(sel) > 0 {
		kv := make([]string, 0, len(sel))
		for _, k := range slices.Sorted(maps.Keys(sel)) {
			kv = append(kv, k+"="+sel[k])
		}
		wants = append(wants, "nodeSelector "+strings.Join(kv, ","))
	}
	if nn := m.Spec.Placement.NodeNames; len(nn) > 0 {
		wants = append(wants, "nodeNames "+strings.Join(nn, ","))
	}
	if len(wants) == 0 {
		return "no Ready, uncordoned NeuronNode"
	}
	return "no Ready, uncordoned NeuronNode matches " + strings.Join(wants, " and ")
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
