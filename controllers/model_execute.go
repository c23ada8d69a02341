package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/placement"
	"github.com/helexa-ai/cortex/internal/units"
)

// Step 3 of a pass: carrying out the plan. Every load and unload the
// manager sends to a neuron goes through here.

// claimed is what one pass carries out: its Model's unloads and loads,
// every unload on a node it loads on (its evictions and any other
// unload that frees the memory), and the plan's orphans.
type claimed struct {
	unloads       []placement.Unload
	loads         []placement.Load
	unschedulable bool
}

// claim picks this pass's part of the plan and reserves the memory of its
// loads in the Fleet — each appears as a Loading replica holding the bytes
// the plan gives it on each device — so a pass of another Model that plans
// while this one talks to neurons does not count the same memory free. It
// runs under r.mu, the only section that plans. Loads of a replica still
// backing off are dropped.
func (r *ModelReconciler) claim(key string, plan placement.Plan, now time.Time) claimed {
	var c claimed
	// A load may rely on memory any of the plan's unloads on its node
	// frees (an idle, surplus or moved replica of another Model), not only
	// on its own evictions: the pass that loads carries those out first, or
	// the neuron would refuse the load for want of memory.
	loadsOn := map[string]bool{}
	for _, l := range plan.Load {
		if l.Model == key {
			loadsOn[l.Node] = true
		}
	}
	for _, u := range plan.Unload {
		if u.Model == key || u.ForModel == key || u.Reason == placement.ReasonOrphaned || loadsOn[u.Node] {
			c.unloads = append(c.unloads, u)
		}
	}
	for _, l := range plan.Load {
		if l.Model != key && l.ForModel == key {
			// A replica moves to make room for this Model: the moved
			// Model's own pass loads the copy (it plans the same move).
			r.wake(l.Model)
		}
		if l.Model != key || r.failures.backingOff(key, l.Node, now) {
			continue
		}
		c.loads = append(c.loads, l)
		r.Fleet.Upsert(l.Node, key, &neuronapi.ModelStatus{Name: key, State: neuronapi.StateLoading,
			Devices: slices.Clone(l.Devices), DeviceBytes: slices.Clone(l.DeviceBytes), VRAMBytes: l.Bytes})
	}
	_, c.unschedulable = plan.Unschedulable[key]
	return c
}

// execute carries out what claim picked, without r.mu: unloads first (a
// load may rely on the memory they free), then loads. A load that is not
// sent (an eviction it needed failed) or is refused gives its reservation
// back.
func (r *ModelReconciler) execute(ctx context.Context, model *cortexv1.Model, snap *snapshot, c claimed) error {
	logger := log.FromContext(ctx)
	key := model.Key()
	var errs []error
	blocked := map[string]bool{} // nodes where an eviction failed: no load there
	for _, u := range c.unloads {
		if err := r.executeUnload(ctx, snap, u); err != nil {
			errs = append(errs, err)
			blocked[u.Node] = true
		}
	}
	if c.unschedulable {
		r.Metrics.ObservePlacement(false)
	}
	now := r.Clock.Now()
	for _, l := range c.loads {
		nn := snap.nodes[l.Node]
		if nn == nil || blocked[l.Node] {
			r.Fleet.Upsert(l.Node, key, nil)
			continue
		}
		req := loadRequest(model, l)
		logger.Info("Loading replica", "node", l.Node, "devices", l.Devices, "bytes", l.Bytes)
		answered := r.calls.begin(l.Node)
		st, err := r.Neurons.Load(ctx, nn.Status.Endpoint, req)
		answered()
		if err != nil {
			r.Fleet.Upsert(l.Node, key, nil)
			r.Metrics.ObserveLoad(LoadRefused)
			r.failures.record(key, l.Node, now, err.Error())
			errs = append(errs, err)
			continue
		}
		r.Metrics.ObserveLoad(LoadAccepted)
		r.Metrics.ObservePlacement(true)
		if st.VRAMBytes == 0 {
			st.VRAMBytes = l.Bytes
		}
		if len(st.Devices) == 0 {
			st.Devices, st.DeviceBytes = l.Devices, l.DeviceBytes
		}
		r.Fleet.Upsert(l.Node, key, st)
		r.loading.sent(replicaKey{key, l.Node}, now)
		r.event(model, corev1.EventTypeNormal, "Placed", "Load", "Loading on %s (devices %v, %s)", l.Node, l.Devices, units.Bytes(l.Bytes))
	}
	return errors.Join(errs...)
}

// sweepOrphans plans the fleet and carries out only the plan's orphan
// unloads. It runs when a pass is asked for a Model that does not exist:
// the node poller wakes the name of every model whose residency changed,
// so a model left on a neuron by a Model deleted while the node was
// unreachable (or no manager ran) is found even when no other Model
// exists to plan with.
func (r *ModelReconciler) sweepOrphans(ctx context.Context) error {
	r.mu.Lock()
	snap, err := r.takeSnapshot(ctx, r.Clock.Now())
	if err != nil {
		r.mu.Unlock()
		return err
	}
	if len(snap.unwatched) > 0 {
		r.mu.Unlock()
		return nil // the first poll of those nodes wakes the names again
	}
	var orphans []placement.Unload
	for _, u := range placement.Compute(snap.input).Unload {
		if u.Reason == placement.ReasonOrphaned {
			orphans = append(orphans, u)
		}
	}
	r.mu.Unlock()
	var errs []error
	for _, u := range orphans {
		errs = append(errs, r.executeUnload(ctx, snap, u))
	}
	return errors.Join(errs...)
}

// executeUnload carries out one unload of the plan: the only place the
// manager unloads a replica, whatever the planner's reason. It records
// what status and back-off need, counts the reason and tells the Model.
func (r *ModelReconciler) executeUnload(ctx context.Context, snap *snapshot, u placement.Unload) error {
	nn := snap.nodes[u.Node]
	if nn == nil || !snap.ready[u.Node] {
		return nil
	}
	// Passes overlap: another one may have carried out the same unload (an
	// orphan, a victim both evicted) since this one planned.
	if obs, ok := r.Fleet.Get(u.Node); ok && !slices.ContainsFunc(obs.Models, func(m neuronapi.ModelStatus) bool { return m.Name == u.Model }) {
		return nil
	}
	now := r.Clock.Now()
	if u.Reason == placement.ReasonFailed {
		// Remember why before the unload clears the evidence: back-off and
		// status read it.
		r.recordFailure(u.Model, u.Node, now)
	}
	log.FromContext(ctx).Info("Unloading replica", "node", u.Node, "replica", u.Model, "reason", u.Reason, "for", u.ForModel)
	answered := r.calls.begin(u.Node)
	err := r.Neurons.Unload(ctx, nn.Status.Endpoint, u.Model)
	answered()
	if err != nil {
		return fmt.Errorf("unloading %s from %s: %w", u.Model, u.Node, err)
	}
	r.Fleet.Upsert(u.Node, u.Model, nil)
	r.Metrics.ObserveEviction(u.Reason)
	m := findModel(snap.models, u.Model)
	switch u.Reason {
	case placement.ReasonEvicted:
		r.evictions.record(u.Model, u.Node, u.ForModel, now)
		r.wake(u.Model)
		if m != nil {
			r.event(m, corev1.EventTypeNormal, "Evicted", "Unload", "Unloaded from %s to make room for %s", u.Node, u.ForModel)
		}
	case placement.ReasonIdle:
		if m != nil {
			r.event(m, corev1.EventTypeNormal, "IdleUnload", "Unload",
				"Unloaded from %s after %s without requests", u.Node, snap.keepAlive[u.Model])
		}
	case placement.ReasonOutdated:
		if m != nil {
			r.event(m, corev1.EventTypeNormal, "Reloading", "Unload", "Unloaded from %s to reload with the new spec", u.Node)
		}
	case placement.ReasonMoved:
		r.wake(u.ForModel)
		if m != nil {
			r.event(m, corev1.EventTypeNormal, "Moved", "Unload",
				"Unloaded from %s, where a copy on another node took over, to make room for %s", u.Node, u.ForModel)
		}
	}
	return nil
}

// sourceOf is the Model's source in the contract's terms.
func sourceOf(m *cortexv1.Model) neuronapi.Source {
	s := neuronapi.Source{URI: m.Spec.Source.URI, SHA256: m.Spec.Source.SHA256}
	if p := m.Spec.Source.Projector; p != nil {
		s.ProjectorURI, s.ProjectorSHA256 = p.URI, p.SHA256
	}
	return s
}

func loadRequest(m *cortexv1.Model, l placement.Load) neuronapi.LoadRequest {
	e := m.Spec.Engine
	req := neuronapi.LoadRequest{
		Name:    m.Key(),
		Source:  sourceOf(m),
		Engine:  engineConfig(e),
		Devices: l.Devices,
	}
	if m.Spec.Resources.VRAM != nil {
		req.VRAMBytes = m.Spec.Resources.VRAM.Value()
	}
	return req
}

func engineConfig(e cortexv1.EngineSpec) neuronapi.EngineConfig {
	c := neuronapi.EngineConfig{
		Parallel:       int(e.Parallel),
		FlashAttention: string(e.FlashAttention),
		KVCacheType:    string(e.KVCacheType),
		ChatTemplate:   e.ChatTemplate,
	}
	if e.ContextLength != nil {
		c.ContextLength = int(*e.ContextLength)
	}
	if e.GPULayers != nil {
		g := int(*e.GPULayers)
		c.GPULayers = &g
	}
	return c
}

func findModel(models []cortexv1.Model, key string) *cortexv1.Model {
	for i := range models {
		if models[i].Key() == key {
			return &models[i]
		}
	}
	return nil
}

// recordFailure notes a failed replica once per load order: the first pass
// that sees it counts it, later passes (until it is cleared) do not.
func (r *ModelReconciler) recordFailure(model, node string, now time.Time) {
	k := replicaKey{model, node}
	if _, ok := r.loading.done(k); ok {
		r.Metrics.ObserveLoad(LoadFailed)
	} else if r.failures.backingOff(model, node, now) {
		// Already counted (or a failure a restarted manager found).
		return
	}
	msg := "unknown error"
	if obs, ok := r.Fleet.Get(node); ok {
		for _, m := range obs.Models {
			if m.Name == model && m.Error != "" {
				msg = m.Error
			}
		}
	}
	r.failures.record(model, node, now, msg)
}

func (r *ModelReconciler) clearLoading(model, node string) {
	r.loading.done(replicaKey{model, node})
}

// heldOnReadyNodes counts the Ready nodes whose last observation (with the
// manager's own unloads applied) still holds the model.
func (r *ModelReconciler) heldOnReadyNodes(key string, snap *snapshot) int {
	n := 0
	for _, name := range r.Fleet.Nodes() {
		obs, _ := r.Fleet.Get(name)
		if snap.ready[name] && slices.ContainsFunc(obs.Models, func(m neuronapi.ModelStatus) bool { return m.Name == key }) {
			n++
		}
	}
	return n
}
