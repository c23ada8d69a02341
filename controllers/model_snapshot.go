package controllers

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/placement"
	"github.com/helexa-ai/cortex/internal/vram"
)

// Step 1 of a pass: one consistent read of the fleet, mapped to the
// planner's input.

// snapshot is one consistent read of the fleet for planning.
type snapshot struct {
	models    []cortexv1.Model
	nodes     map[string]*cortexv1.NeuronNode
	ready     map[string]bool
	unwatched []string // Ready-looking nodes the manager has not polled yet
	input     placement.Input
	// activity is each Model's latest replica use and load on any node,
	// indexed once: reading it per Model from every node's residents made
	// a pass quadratic in the fleet.
	activity map[string]activity
	// keepAlive is the keep-alive this pass applies to each Model, by key.
	keepAlive map[string]keepAliveChoice
}

// activity is the latest use and load of a Model's replicas.
type activity struct{ lastUsed, lastLoaded time.Time }

func indexActivity(nodes []placement.Node) map[string]activity {
	out := map[string]activity{}
	for _, n := range nodes {
		for _, res := range n.Residents {
			a := out[res.Model]
			a.lastUsed = later(a.lastUsed, res.LastUsed)
			a.lastLoaded = later(a.lastLoaded, res.LoadedAt)
			out[res.Model] = a
		}
	}
	return out
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (r *ModelReconciler) takeSnapshot(ctx context.Context, now time.Time) (*snapshot, error) {
	// The snapshot only reads these objects: listing them from the cache
	// without a deep copy saves copying every Model on every pass.
	var models cortexv1.ModelList
	if err := r.List(ctx, &models, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing Models: %w", err)
	}
	var nodes cortexv1.NeuronNodeList
	if err := r.List(ctx, &nodes, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing NeuronNodes: %w", err)
	}
	s := &snapshot{models: models.Items, nodes: map[string]*cortexv1.NeuronNode{}, ready: map[string]bool{}, input: placement.Input{Now: now}}
	specs := make(map[string]*cortexv1.Model, len(models.Items))
	for i := range models.Items {
		specs[models.Items[i].Key()] = &models.Items[i]
	}
	for i := range nodes.Items {
		nn := &nodes.Items[i]
		s.nodes[nn.Name] = nn
		obs, observed := r.Fleet.Get(nn.Name)
		// A late heartbeat does not make a node unready while its neuron
		// answered a poll within the staleness: the neuron cannot reach
		// the API server, or, to a manager reading a frozen cache while
		// the API server is down, every heartbeat looks late. The neurons
		// still answer, and their replicas must not be placed again
		// elsewhere on that account.
		fresh := r.heartbeatFresh(nn, now)
		ready := meta.IsStatusConditionTrue(nn.Status.Conditions, cortexv1.NeuronNodeConditionReady) &&
			observed && !obs.At.IsZero() && obs.Err == nil && (fresh || now.Sub(obs.At) <= r.StaleAfter)
		// Only a node never polled at all blocks planning: one whose first
		// poll failed is simply not Ready (its replicas, if any, are placed
		// elsewhere and the copies it still holds become surplus later).
		if !ready && fresh && (!observed || (obs.At.IsZero() && obs.Err == nil)) {
			s.unwatched = append(s.unwatched, nn.Name)
		}
		s.ready[nn.Name] = ready
		s.input.Nodes = append(s.input.Nodes, toPlacementNode(nn, obs, ready, specs))
	}
	s.activity = indexActivity(s.input.Nodes)
	for _, n := range r.calls.nodes() {
		for i := range s.input.Nodes {
			if s.input.Nodes[i].Name == n {
				s.input.Nodes[i].Busy = true
			}
		}
	}
	s.keepAlive = make(map[string]keepAliveChoice, len(s.models))
	for i := range s.models {
		m := &s.models[i]
		if t, ok := demandAnnotation(m); ok {
			r.Fleet.ObserveDemand(m.Key(), t)
		}
		pm := r.toPlacementModel(m, s.activity, now)
		s.keepAlive[pm.Key] = r.chooseKeepAlive(m, pm.BytesNeeded)
		pm.KeepAlive = s.keepAlive[pm.Key].d
		s.input.Models = append(s.input.Models, pm)
	}
	r.Fleet.Forget(func(key string) bool { return specs[key] != nil })
	return s, nil
}

func (r *ModelReconciler) heartbeatFresh(nn *cortexv1.NeuronNode, now time.Time) bool {
	hb := nn.Status.LastHeartbeatTime
	return hb != nil && r.Fleet.HeartbeatAge(nn.Name, hb.Time, now) <= r.StaleAfter
}

// toPlacementNode maps a NeuronNode and what its neuron reported to the
// planner's node; a resident loaded with a source or engine settings its
// Model's spec no longer has is marked Outdated.
func toPlacementNode(nn *cortexv1.NeuronNode, obs Observation, ready bool, specs map[string]*cortexv1.Model) placement.Node {
	n := placement.Node{
		Name:          nn.Name,
		Labels:        nn.Labels,
		Ready:         ready,
		Unschedulable: nn.Spec.Unschedulable,
	}
	if nn.Spec.ReservedVRAM != nil {
		n.ReservedBytes = nn.Spec.ReservedVRAM.Value()
	}
	for _, d := range obs.Devices {
		n.Devices = append(n.Devices, placement.Device{Index: d.Index, TotalBytes: d.MemoryTotal, FreeBytes: d.MemoryFree})
	}
	for _, m := range obs.Models {
		res := placement.Resident{
			Model:       m.Name,
			Devices:     m.Devices,
			DeviceBytes: m.DeviceBytes,
			Bytes:       m.VRAMBytes,
			State:       placementState(m.State),
			// The neuron's inFlight already counts queued requests.
			InFlight: m.InFlight,
		}
		if m.LastUsed != nil {
			res.LastUsed = *m.LastUsed
		}
		if m.LoadedAt != nil {
			res.LoadedAt = *m.LoadedAt
		}
		if spec := specs[m.Name]; spec != nil {
			res.Outdated = m.Source != sourceOf(spec) || !m.Engine.Equivalent(engineConfig(spec.Spec.Engine))
		}
		n.Residents = append(n.Residents, res)
	}
	return n
}

// placementState maps a neuron's state to the planner's, which spells the
// states as the CRDs do.
func placementState(s neuronapi.ModelState) placement.State {
	return placement.State(s.Replica())
}

func (r *ModelReconciler) toPlacementModel(m *cortexv1.Model, act map[string]activity, now time.Time) placement.Model {
	need := r.memoryNeed(m)
	pm := placement.Model{
		Key:            m.Key(),
		Priority:       m.Spec.Priority,
		Pinned:         m.Spec.Pinned,
		MinReplicas:    int(m.Spec.Replicas.Min),
		MaxReplicas:    int(m.Spec.Replicas.Max),
		LastDemand:     lastDemand(m, act),
		Waiting:        r.waiting(m, act, now),
		TargetInFlight: placement.ScaleOutAt(parallel(m)),
		RequestRate:    r.Fleet.RequestRate(m.Key(), now),
		BytesNeeded:    need.Total(1),
		EachBytes:      need.Each,
		NodeSelector:   m.Spec.Placement.NodeSelector,
		NodeNames:      m.Spec.Placement.NodeNames,
		AvoidNodes:     r.failures.avoid(m.Key(), now),
		Deleting:       !m.DeletionTimestamp.IsZero(),
	}
	if m.Spec.Placement.Devices != nil {
		pm.Devices = int(*m.Spec.Placement.Devices)
	}
	return pm
}

// keepAliveChoice is the keep-alive a pass applies to a Model: d (at
// least placement.MinKeepAlive, as the planner applies it), where it comes
// from, and for a learned one the weight of the idle gaps behind it.
type keepAliveChoice struct {
	d      time.Duration
	source cortexv1.KeepAliveSource
	gaps   float64
	// inherited: learned by an earlier manager (read from status), kept
	// until this one has seen enough gaps.
	inherited bool
}

// DefaultColdStartWorth is ModelReconciler.ColdStartWorth's default: a cold
// start is worth holding 4 GiB idle for an hour. The fleet simulator's
// sweep (docs/benchmarks.md) finds cold starts level from 2 GiB·h up and
// memory-time no higher than a fixed 5-minute keep-alive's.
const DefaultColdStartWorth = 4.0

const gibHour = float64(1<<30) * 3600

// chooseKeepAlive is spec.keepAlive when set; otherwise, with
// ColdStartWorth set and the Model's size known, the keep-alive learned
// from the idle gaps the Fleet has seen (placement.LearnKeepAlive) once
// there are placement.MinIdleObservations of them; before that, the one a
// previous manager learned (status.keepAlive from Learned: the gaps live
// in memory, and a restart or a failover to the standby would otherwise
// fall back to 15m until the Model had been used often enough again);
// otherwise 15m.
func (r *ModelReconciler) chooseKeepAlive(m *cortexv1.Model, bytes int64) keepAliveChoice {
	c := keepAliveChoice{d: defaultKeepAlive, source: cortexv1.KeepAliveDefault}
	switch {
	case m.Spec.KeepAlive != nil:
		c = keepAliveChoice{d: m.Spec.KeepAlive.Duration, source: cortexv1.KeepAliveFromSpec}
	case r.ColdStartWorth > 0 && bytes > 0:
		d, gaps := r.Fleet.LearnedKeepAlive(m.Key(), bytes, r.ColdStartWorth*gibHour, defaultKeepAlive)
		switch {
		case gaps >= placement.MinIdleObservations:
			c = keepAliveChoice{d: d, source: cortexv1.KeepAliveLearned, gaps: gaps}
		case m.Status.KeepAliveSource == cortexv1.KeepAliveLearned && m.Status.KeepAlive != nil:
			c = keepAliveChoice{d: m.Status.KeepAlive.Duration, source: cortexv1.KeepAliveLearned, inherited: true}
		}
	}
	c.d = max(c.d, placement.MinKeepAlive)
	return c
}

// String is how events name the keep-alive.
func (c keepAliveChoice) String() string {
	switch {
	case c.inherited:
		return fmt.Sprintf("%s (learned before the manager restarted)", c.d)
	case c.source == cortexv1.KeepAliveLearned:
		return fmt.Sprintf("%s (learned from %.0f idle gaps)", c.d, c.gaps)
	}
	return c.d.String()
}

func parallel(m *cortexv1.Model) int {
	if m.Spec.Engine.Parallel > 0 {
		return int(m.Spec.Engine.Parallel)
	}
	return defaultParallel
}

// DefaultWaitingWindow is WaitingWindow's default: three times the
// gateway's default demand interval (5 s), so one lost or late write does
// not end the wait.
const DefaultWaitingWindow = 15 * time.Second

// waiting reports whether the gateway holds requests for m now, by the
// planner's rule (placement.Waiting) applied to its demand annotation,
// its replicas' activity and its last eviction.
func (r *ModelReconciler) waiting(m *cortexv1.Model, act map[string]activity, now time.Time) bool {
	t, ok := demandAnnotation(m)
	if !ok {
		return false
	}
	window := r.WaitingWindow
	if window <= 0 {
		window = DefaultWaitingWindow
	}
	s := placement.DemandSignals{Demand: t, Window: window,
		LastLoaded: act[m.Key()].lastLoaded, LastUsed: act[m.Key()].lastUsed}
	if e, ok := r.evictions.get(m.Key(), now); ok {
		s.Evicted = e.at
	}
	return placement.Waiting(s, now)
}

func demandAnnotation(m *cortexv1.Model) (time.Time, bool) {
	v, ok := m.Annotations[cortexv1.DemandAnnotation]
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil
}

// lastDemand is the newest of the gateway's demand annotation and the last
// use of any replica.
func lastDemand(m *cortexv1.Model, act map[string]activity) time.Time {
	t, _ := demandAnnotation(m)
	return later(t, act[m.Key()].lastUsed)
}

// memoryNeed is what one replica needs: the spec's override (all of it
// divisible among devices, as the neuron treats it) or the neuron's
// estimate; zero while unknown.
func (r *ModelReconciler) memoryNeed(m *cortexv1.Model) vram.Need {
	if v := m.Spec.Resources.VRAM; v != nil {
		return vram.Need{Split: v.Value()}
	}
	if e, ok := r.estimates.get(estimateKeyOf(m)); ok && e.err == nil {
		return e.need
	}
	return vram.Need{}
}
