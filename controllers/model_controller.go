package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/source"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/placement"
	"github.com/helexa-ai/cortex/internal/units"
)

const (
	defaultKeepAlive = 15 * time.Minute
	defaultParallel  = 4
	// resync bounds how long a Model goes without a pass when nothing
	// happens, so keep-alive expiry and drift are always noticed.
	resync = time.Minute
	// loadingRecheck is how soon a Model with a loading replica is looked at
	// again (the node poller also wakes it when the state changes).
	loadingRecheck = 2 * time.Second
)

// ModelReconciler places Models on NeuronNodes and reports where they are.
//
// Each pass plans the whole fleet with the pure planner (internal/placement)
// from the Models in the cache and what the neurons themselves report (the
// Fleet), then carries out the part of the plan that concerns this Model:
// its own loads and unloads, and the evictions its loads need. Passes are
// serialised by a mutex, so two Models never plan against the same free
// memory; the planner itself keeps one plan from overcommitting a device.
type ModelReconciler struct {
	client.Client
	Neurons  NeuronClient
	Fleet    *Fleet
	Clock    clock.PassiveClock
	Recorder events.EventRecorder
	Metrics  *Metrics
	// StaleAfter is the NeuronNode heartbeat bound (see NeuronNodeReconciler).
	StaleAfter time.Duration
	// WaitingWindow is how fresh a Model's demand annotation must be for
	// the Model to count as having requests held at the gateway (the
	// gateway rewrites it every --demand-interval while requests wait).
	// 0 means DefaultWaitingWindow.
	WaitingWindow time.Duration

	mu        sync.Mutex
	estimates estimates
	failures  failures
	evictions evictions
	loading   map[replicaKey]time.Time // load order sent, waiting for Ready
	events    chan event.GenericEvent
}

type replicaKey struct{ model, node string }

// +kubebuilder:rbac:groups=cortex.helexa.ai,resources=models,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=cortex.helexa.ai,resources=models/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=cortex.helexa.ai,resources=models/finalizers,verbs=update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete

// Reconcile runs one pass for one Model.
func (r *ModelReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, err error) {
	defer func() {
		if err != nil {
			r.Metrics.ObserveReconcileError(ControllerModel)
		}
	}()
	model := &cortexv1.Model{}
	if err := r.Get(ctx, req.NamespacedName, model); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		// No such Model (any more): whatever a neuron still holds under its
		// name is an orphan, and so is anything left by other deleted
		// Models. The planner decides; executeUnload does it.
		r.mu.Lock()
		defer r.mu.Unlock()
		return ctrl.Result{}, r.sweepOrphans(ctx)
	}
	logger := log.FromContext(ctx).WithValues("model", klogRef(model))
	ctx = log.IntoContext(ctx, logger)

	if model.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(model, cortexv1.ModelFinalizer) {
		patch := client.MergeFrom(model.DeepCopy())
		controllerutil.AddFinalizer(model, cortexv1.ModelFinalizer)
		if err := r.Patch(ctx, model, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
		return ctrl.Result{}, nil
	}
	original := model.DeepCopy()

	r.mu.Lock()
	defer r.mu.Unlock()
	if !model.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, model, original)
	}
	return r.reconcile(ctx, model, original)
}

// snapshot is one consistent read of the fleet for planning.
type snapshot struct {
	models    []cortexv1.Model
	nodes     map[string]*cortexv1.NeuronNode
	ready     map[string]bool
	unwatched []string // Ready-looking nodes the manager has not polled yet
	input     placement.Input
}

func (r *ModelReconciler) takeSnapshot(ctx context.Context, now time.Time) (*snapshot, error) {
	var models cortexv1.ModelList
	if err := r.List(ctx, &models); err != nil {
		return nil, fmt.Errorf("listing Models: %w", err)
	}
	var nodes cortexv1.NeuronNodeList
	if err := r.List(ctx, &nodes); err != nil {
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
		ready := meta.IsStatusConditionTrue(nn.Status.Conditions, cortexv1.NeuronNodeConditionReady) &&
			observed && !obs.At.IsZero() && obs.Err == nil && r.heartbeatFresh(nn, now)
		// Only a node never polled at all blocks planning: one whose first
		// poll failed is simply not Ready (its replicas, if any, are placed
		// elsewhere and the copies it still holds become surplus later).
		if !ready && r.heartbeatFresh(nn, now) && (!observed || (obs.At.IsZero() && obs.Err == nil)) {
			s.unwatched = append(s.unwatched, nn.Name)
		}
		s.ready[nn.Name] = ready
		s.input.Nodes = append(s.input.Nodes, toPlacementNode(nn, obs, ready, specs))
	}
	for i := range s.models {
		m := &s.models[i]
		s.input.Models = append(s.input.Models, r.toPlacementModel(m, s.input.Nodes, now))
	}
	return s, nil
}

func (r *ModelReconciler) heartbeatFresh(nn *cortexv1.NeuronNode, now time.Time) bool {
	hb := nn.Status.LastHeartbeatTime
	return hb != nil && now.Sub(hb.Time) <= r.StaleAfter
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
			Model:   m.Name,
			Devices: m.Devices,
			Bytes:   m.VRAMBytes,
			State:   placementState(m.State),
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

func (r *ModelReconciler) toPlacementModel(m *cortexv1.Model, nodes []placement.Node, now time.Time) placement.Model {
	pm := placement.Model{
		Key:            m.Key(),
		Priority:       m.Spec.Priority,
		Pinned:         m.Spec.Pinned,
		MinReplicas:    int(m.Spec.Replicas.Min),
		MaxReplicas:    int(m.Spec.Replicas.Max),
		KeepAlive:      keepAlive(m),
		LastDemand:     lastDemand(m, nodes),
		Waiting:        r.waiting(m, nodes, now),
		TargetInFlight: parallel(m),
		BytesNeeded:    r.bytesNeeded(m),
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

func keepAlive(m *cortexv1.Model) time.Duration {
	if m.Spec.KeepAlive != nil {
		return m.Spec.KeepAlive.Duration
	}
	return defaultKeepAlive
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

// waiting reports whether the gateway holds requests for m now: its demand
// annotation, rewritten every few seconds while requests wait, is younger
// than the waiting window, and newer than anything that would have
// answered it — a replica becoming Ready or serving, or the Model's last
// eviction. Without the last part, a Model evicted a second after its own
// cold request was served would look as if that request still waited, and
// evict the next Model in turn.
func (r *ModelReconciler) waiting(m *cortexv1.Model, nodes []placement.Node, now time.Time) bool {
	t, ok := demandAnnotation(m)
	if !ok {
		return false
	}
	window := r.WaitingWindow
	if window <= 0 {
		window = DefaultWaitingWindow
	}
	if age := now.Sub(t); age >= window || age <= -window {
		return false
	}
	if e, ok := r.evictions.get(m.Key(), now); ok && !t.After(e.at) {
		return false
	}
	key := m.Key()
	for _, n := range nodes {
		for _, res := range n.Residents {
			if res.Model == key && (!t.After(res.LoadedAt) || !t.After(res.LastUsed)) {
				return false
			}
		}
	}
	return true
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
func lastDemand(m *cortexv1.Model, nodes []placement.Node) time.Time {
	t, _ := demandAnnotation(m)
	key := m.Key()
	for _, n := range nodes {
		for _, res := range n.Residents {
			if res.Model == key && res.LastUsed.After(t) {
				t = res.LastUsed
			}
		}
	}
	return t
}

// bytesNeeded is the spec's override or the neuron's estimate; 0 while
// unknown.
func (r *ModelReconciler) bytesNeeded(m *cortexv1.Model) int64 {
	if v := m.Spec.Resources.VRAM; v != nil {
		return v.Value()
	}
	if e, ok := r.estimates.get(estimateKeyOf(m)); ok && e.err == nil {
		return e.bytes
	}
	return 0
}

func (r *ModelReconciler) reconcile(ctx context.Context, model, original *cortexv1.Model) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	now := r.Clock.Now()

	snap, err := r.takeSnapshot(ctx, now)
	if err != nil {
		return ctrl.Result{}, err
	}
	// A node that looks alive but has not been polled since this manager
	// started may hold replicas nobody knows of yet. Planning now could load
	// a second copy, so wait for the first poll.
	if len(snap.unwatched) > 0 {
		logger.V(1).Info("Waiting for the first poll of nodes", "nodes", snap.unwatched)
		return ctrl.Result{RequeueAfter: 500 * time.Millisecond}, nil
	}

	estimateMsg := r.ensureEstimate(ctx, model, snap)
	plan := placement.Compute(snap.input)

	// Carry out this Model's part of the plan: unloads first (a load may
	// rely on the memory they free), then loads.
	actErr := r.execute(ctx, model, snap, plan)

	r.rebuildStatus(ctx, model, snap, plan, now, estimateMsg)
	if err := r.patchStatus(ctx, model, original); err != nil {
		return ctrl.Result{}, err
	}
	r.updateFleetGauges(model, snap, plan)
	r.recordTransitions(model, original)
	if actErr != nil {
		return ctrl.Result{}, actErr
	}
	return ctrl.Result{RequeueAfter: r.nextLook(model, snap, now)}, nil
}

// execute performs the actions of the plan that belong to this Model —
// its own loads and unloads and the evictions its loads need — and the
// plan's orphan unloads, which belong to no Model and so to every pass.
func (r *ModelReconciler) execute(ctx context.Context, model *cortexv1.Model, snap *snapshot, plan placement.Plan) error {
	logger := log.FromContext(ctx)
	key := model.Key()
	var errs []error
	blocked := map[string]bool{} // nodes where an eviction failed: no load there
	for _, u := range plan.Unload {
		if u.Model != key && u.ForModel != key && u.Reason != placement.ReasonOrphaned {
			continue
		}
		if err := r.executeUnload(ctx, snap, u); err != nil {
			errs = append(errs, err)
			blocked[u.Node] = true
		}
	}
	if len(plan.Unschedulable) > 0 {
		if _, bad := plan.Unschedulable[key]; bad {
			r.Metrics.ObservePlacement(false)
		}
	}
	now := r.Clock.Now()
	for _, l := range plan.Load {
		if l.Model != key {
			continue
		}
		nn := snap.nodes[l.Node]
		if nn == nil || blocked[l.Node] {
			continue
		}
		if r.failures.backingOff(key, l.Node, now) {
			continue
		}
		req := loadRequest(model, l)
		logger.Info("Loading replica", "node", l.Node, "devices", l.Devices, "bytes", l.Bytes)
		st, err := r.Neurons.Load(ctx, nn.Status.Endpoint, req)
		if err != nil {
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
			st.Devices = l.Devices
		}
		r.Fleet.Upsert(l.Node, key, st)
		if r.loading == nil {
			r.loading = map[replicaKey]time.Time{}
		}
		if _, ok := r.loading[replicaKey{key, l.Node}]; !ok {
			r.loading[replicaKey{key, l.Node}] = now
		}
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
	snap, err := r.takeSnapshot(ctx, r.Clock.Now())
	if err != nil {
		return err
	}
	if len(snap.unwatched) > 0 {
		return nil // the first poll of those nodes wakes the names again
	}
	var errs []error
	for _, u := range placement.Compute(snap.input).Unload {
		if u.Reason == placement.ReasonOrphaned {
			errs = append(errs, r.executeUnload(ctx, snap, u))
		}
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
	now := r.Clock.Now()
	if u.Reason == placement.ReasonFailed {
		// Remember why before the unload clears the evidence: back-off and
		// status read it.
		r.recordFailure(u.Model, u.Node, now)
	}
	log.FromContext(ctx).Info("Unloading replica", "node", u.Node, "replica", u.Model, "reason", u.Reason, "for", u.ForModel)
	if err := r.Neurons.Unload(ctx, nn.Status.Endpoint, u.Model); err != nil {
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
				"Unloaded from %s after %s without requests", u.Node, keepAlive(m))
		}
	case placement.ReasonOutdated:
		if m != nil {
			r.event(m, corev1.EventTypeNormal, "Reloading", "Unload", "Unloaded from %s to reload with the new spec", u.Node)
		}
	}
	return nil
}

// sourceOf is the Model's source in the contract's terms.
func sourceOf(m *cortexv1.Model) neuronapi.Source {
	return neuronapi.Source{URI: m.Spec.Source.URI, SHA256: m.Spec.Source.SHA256}
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

// rebuildStatus writes the status from what was observed this pass.
func (r *ModelReconciler) rebuildStatus(ctx context.Context, model *cortexv1.Model, snap *snapshot, plan placement.Plan, now time.Time, estimateMsg string) {
	key := model.Key()
	st := cortexv1.ModelStatus{ObservedGeneration: model.Generation}
	var nodes []string
	var loading, failed int
	for _, name := range r.Fleet.Nodes() {
		if !snap.ready[name] {
			// A replica on a node that is not Ready leaves the ready set at
			// once: the gateway must not route to it.
			r.clearLoading(key, name)
			continue
		}
		obs, _ := r.Fleet.Get(name)
		i := slices.IndexFunc(obs.Models, func(m neuronapi.ModelStatus) bool { return m.Name == key })
		if i < 0 {
			r.clearLoading(key, name)
			continue
		}
		m := obs.Models[i]
		rep := cortexv1.Replica{
			Node:      name,
			Endpoint:  obs.Endpoint,
			State:     m.State.Replica(),
			VRAMBytes: m.VRAMBytes,
			InFlight:  int32(m.InFlight),
			LastError: truncate(m.Error, 1024),
		}
		for _, d := range m.Devices {
			rep.Devices = append(rep.Devices, int32(d))
		}
		if m.Progress != nil {
			rep.Progress = int32(min(max(m.Progress.Percent, 0), 100))
		}
		if m.LoadedAt != nil {
			t := metav1.NewTime(*m.LoadedAt)
			rep.LoadedAt = &t
		}
		if m.LastUsed != nil {
			t := metav1.NewTime(*m.LastUsed)
			rep.LastUsedTime = &t
		}
		switch rep.State {
		case cortexv1.ReplicaReady:
			st.ReadyReplicas++
			nodes = append(nodes, name)
			if started, ok := r.loading[replicaKey{key, name}]; ok {
				r.Metrics.ObserveLoadReady(now.Sub(started))
				r.failures.clear(key, name)
				delete(r.loading, replicaKey{key, name})
			}
		case cortexv1.ReplicaLoading:
			loading++
		case cortexv1.ReplicaFailed:
			failed++
			r.recordFailure(key, name, now)
		}
		st.Replicas = append(st.Replicas, rep)
	}
	lastErr := r.failures.lastError(key, now)
	st.DesiredReplicas = int32(plan.Desired[key])
	st.Ready = fmt.Sprintf("%d/%d", st.ReadyReplicas, st.DesiredReplicas)
	st.Nodes = strings.Join(nodes, ",")
	st.VRAMBytes = r.bytesNeeded(model)
	if st.VRAMBytes > 0 {
		st.VRAM = units.Bytes(st.VRAMBytes)
	}
	if t := lastDemand(model, snap.input.Nodes); !t.IsZero() {
		mt := metav1.NewTime(t)
		st.LastDemandTime = &mt
	}

	unsched, isUnsched := plan.Unschedulable[key]
	// While the memory need is being read from the header the Model is
	// Pending, not Unschedulable; only a failed estimate is a reason a
	// human must act on.
	estimating := estimateMsg == estimatingMsg && st.VRAMBytes == 0 && st.DesiredReplicas > 0
	if estimating {
		isUnsched = false
	} else if estimateMsg != "" && st.VRAMBytes == 0 && st.DesiredReplicas > 0 {
		unsched, isUnsched = estimateMsg, true
	}
	// A Model whose last replica was evicted for another one, with no
	// request waiting for it, is Idle: it loads again on its next request.
	// It still wants a replica (it is within its keep-alive), so the
	// planner's message stays on the Scheduled condition.
	evicted, wasEvicted := r.evictions.get(key, now)
	if st.ReadyReplicas > 0 || loading > 0 {
		r.evictions.forget(key)
		wasEvicted = false
	}
	wasEvicted = wasEvicted && len(st.Replicas) == 0 && !r.waiting(model, snap.input.Nodes, now)
	switch {
	case wasEvicted || st.DesiredReplicas == 0 && len(st.Replicas) == 0:
		st.Phase = cortexv1.ModelPhaseIdle
	case st.DesiredReplicas > 0 && st.ReadyReplicas >= st.DesiredReplicas:
		st.Phase = cortexv1.ModelPhaseReady
	case st.ReadyReplicas > 0:
		st.Phase = cortexv1.ModelPhaseDegraded
	case loading > 0:
		st.Phase = cortexv1.ModelPhaseLoading
	case isUnsched:
		st.Phase = cortexv1.ModelPhaseUnschedulable
	case failed > 0 || lastErr != "":
		st.Phase = cortexv1.ModelPhaseFailed
	default:
		st.Phase = cortexv1.ModelPhasePending
	}

	ready := metav1.Condition{Type: cortexv1.ModelConditionReady, ObservedGeneration: model.Generation}
	switch st.Phase {
	case cortexv1.ModelPhaseReady:
		ready.Status, ready.Reason = metav1.ConditionTrue, cortexv1.ReasonReplicasReady
		ready.Message = fmt.Sprintf("%d of %d replicas ready", st.ReadyReplicas, st.DesiredReplicas)
	case cortexv1.ModelPhaseIdle:
		ready.Status, ready.Reason = metav1.ConditionFalse, cortexv1.ReasonNoDemand
		ready.Message = "no replica wanted: the first request loads one"
		if wasEvicted {
			ready.Reason = cortexv1.ReasonEvicted
			ready.Message = fmt.Sprintf("evicted from %s at %s to make room for %s; the next request loads it again",
				evicted.node, evicted.at.UTC().Format(time.RFC3339), evicted.forModel)
		}
	case cortexv1.ModelPhaseDegraded:
		ready.Status, ready.Reason = metav1.ConditionTrue, cortexv1.ReasonPartiallyReady
		ready.Message = fmt.Sprintf("%d of %d replicas ready", st.ReadyReplicas, st.DesiredReplicas)
	case cortexv1.ModelPhaseLoading:
		ready.Status, ready.Reason = metav1.ConditionFalse, cortexv1.ReasonReplicasLoading
		ready.Message = fmt.Sprintf("%d replicas loading", loading)
	case cortexv1.ModelPhaseFailed:
		ready.Status, ready.Reason = metav1.ConditionFalse, cortexv1.ReasonLoadFailed
		ready.Message = truncate(lastErr, 1024)
	case cortexv1.ModelPhaseUnschedulable:
		ready.Status, ready.Reason = metav1.ConditionFalse, cortexv1.ReasonUnschedulable
		ready.Message = truncate(unsched, 1024)
	default:
		ready.Status, ready.Reason = metav1.ConditionFalse, cortexv1.ReasonPending
		ready.Message = "waiting for placement"
		if estimating {
			ready.Message = estimatingMsg
		}
	}
	scheduled := metav1.Condition{Type: cortexv1.ModelConditionScheduled, ObservedGeneration: model.Generation,
		Status: metav1.ConditionTrue, Reason: cortexv1.ReasonPlaced, Message: "every wanted replica has a node"}
	if isUnsched {
		scheduled.Status, scheduled.Reason, scheduled.Message = metav1.ConditionFalse, cortexv1.ReasonUnschedulable, truncate(unsched, 1024)
	} else if st.DesiredReplicas == 0 {
		scheduled.Reason, scheduled.Message = cortexv1.ReasonNoDemand, "no replica wanted"
	}
	st.Conditions = slices.Clone(model.Status.Conditions)
	meta.SetStatusCondition(&st.Conditions, ready)
	meta.SetStatusCondition(&st.Conditions, scheduled)
	model.Status = st
	_ = ctx
}

// recordFailure notes a failed replica once per load order: the first pass
// that sees it counts it, later passes (until it is cleared) do not.
func (r *ModelReconciler) recordFailure(model, node string, now time.Time) {
	k := replicaKey{model, node}
	if _, ok := r.loading[k]; ok {
		delete(r.loading, k)
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
	delete(r.loading, replicaKey{model, node})
}

func (r *ModelReconciler) patchStatus(ctx context.Context, model, original *cortexv1.Model) error {
	if equality.Semantic.DeepEqual(original.Status, model.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, model, client.MergeFromWithOptions(original, client.MergeFromWithOptimisticLock{})); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			// Someone wrote in between; the watch brings the next pass.
			return nil
		}
		return fmt.Errorf("patching Model status: %w", err)
	}
	return nil
}

// updateFleetGauges refreshes the fleet-wide gauges from this pass's view.
func (r *ModelReconciler) updateFleetGauges(model *cortexv1.Model, snap *snapshot, plan placement.Plan) {
	counts := map[cortexv1.ModelPhase]int{}
	for i := range snap.models {
		phase := snap.models[i].Status.Phase
		if snap.models[i].Key() == model.Key() {
			phase = model.Status.Phase
		}
		if phase == "" {
			phase = cortexv1.ModelPhasePending
		}
		counts[phase]++
	}
	r.Metrics.SetFleet(counts, len(plan.Unschedulable))
}

// recordTransitions emits the rare, meaningful events.
func (r *ModelReconciler) recordTransitions(model, original *cortexv1.Model) {
	was := original.Status.Phase
	now := model.Status.Phase
	if was == now {
		return
	}
	switch now {
	case cortexv1.ModelPhaseReady:
		r.event(model, corev1.EventTypeNormal, "Ready", "Serve", "%s replicas ready on %s", model.Status.Ready, model.Status.Nodes)
	case cortexv1.ModelPhaseUnschedulable:
		c := meta.FindStatusCondition(model.Status.Conditions, cortexv1.ModelConditionScheduled)
		msg := ""
		if c != nil {
			msg = c.Message
		}
		r.event(model, corev1.EventTypeWarning, "Unschedulable", "Place", "%s", msg)
	case cortexv1.ModelPhaseFailed:
		c := meta.FindStatusCondition(model.Status.Conditions, cortexv1.ModelConditionReady)
		msg := ""
		if c != nil {
			msg = c.Message
		}
		r.event(model, corev1.EventTypeWarning, "LoadFailed", "Load", "%s", msg)
	}
}

// nextLook says when this Model needs another pass without any event. It
// reads the precise times the planner used (status times are rounded to
// seconds, which would wake it just before its keep-alive ends).
func (r *ModelReconciler) nextLook(model *cortexv1.Model, snap *snapshot, now time.Time) time.Duration {
	next := resync
	for _, rep := range model.Status.Replicas {
		if rep.State == cortexv1.ReplicaLoading || rep.State == cortexv1.ReplicaUnloading {
			next = min(next, loadingRecheck)
		}
	}
	switch model.Status.Phase {
	case cortexv1.ModelPhasePending, cortexv1.ModelPhaseFailed, cortexv1.ModelPhaseUnschedulable:
		next = min(next, 5*time.Second)
	}
	// Wake when a keep-alive runs out: the model's (from its last demand)
	// or a replica's (from its last use or load).
	ka := max(keepAlive(model), placement.MinKeepAlive)
	wakeAt := func(t time.Time) {
		if until := t.Add(ka).Sub(now); !t.IsZero() && until > 0 {
			next = min(next, until+100*time.Millisecond)
		}
	}
	key := model.Key()
	var resident bool
	for _, n := range snap.input.Nodes {
		for _, res := range n.Residents {
			if res.Model == key {
				resident = true
				wakeAt(res.LoadedAt)
				wakeAt(res.LastUsed)
			}
		}
	}
	if resident {
		wakeAt(lastDemand(model, snap.input.Nodes))
	}
	if d := r.failures.nextRetry(key, now); d > 0 {
		next = min(next, d)
	}
	return next
}

// reconcileDelete unloads a deleted Model everywhere reachable — the
// planner's Deleted unloads, carried out by executeUnload — and removes the
// finalizer once no Ready node holds it. A node that is not Ready is
// skipped: its poller finds the model an orphan when it comes back.
func (r *ModelReconciler) reconcileDelete(ctx context.Context, model, original *cortexv1.Model) (ctrl.Result, error) {
	key := model.Key()
	snap, err := r.takeSnapshot(ctx, r.Clock.Now())
	if err != nil {
		return ctrl.Result{}, err
	}
	plan := placement.Compute(snap.input)
	var errs []error
	for _, u := range plan.Unload {
		if u.Model == key || u.Reason == placement.ReasonOrphaned {
			if err := r.executeUnload(ctx, snap, u); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if remaining := r.heldOnReadyNodes(key, snap); remaining > 0 || len(errs) > 0 {
		// Unloading, or an unload failed: Terminating until it is gone.
		model.Status.Phase = cortexv1.ModelPhaseTerminating
		if err := r.patchStatus(ctx, model, original); err != nil {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			return ctrl.Result{}, errors.Join(errs...)
		}
		return ctrl.Result{RequeueAfter: loadingRecheck}, nil
	}
	r.estimates.forget(estimateKeyOf(model))
	r.failures.forget(key)
	r.evictions.forget(key)
	patch := client.MergeFrom(model.DeepCopy())
	controllerutil.RemoveFinalizer(model, cortexv1.ModelFinalizer)
	if err := r.Patch(ctx, model, patch); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("removing finalizer: %w", err)
	}
	return ctrl.Result{}, nil
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

func (r *ModelReconciler) event(obj *cortexv1.Model, typ, reason, action, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(obj, nil, typ, reason, action, note, args...)
	}
}

// Wake enqueues Models by key; the NeuronNode reconciler calls it when a
// neuron's residency changes. It never blocks: a full queue is covered by
// the periodic resync.
func (r *ModelReconciler) Wake(keys ...string) {
	for _, k := range keys {
		r.wake(k)
	}
}

func (r *ModelReconciler) wake(key string) {
	ns, name, ok := cortexv1.ParseModelKey(key)
	if !ok || r.events == nil {
		return
	}
	m := &cortexv1.Model{}
	m.Namespace, m.Name = ns, name
	select {
	case r.events <- event.GenericEvent{Object: m}:
	default:
	}
}

// SetupWithManager registers the controller.
func (r *ModelReconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.events = make(chan event.GenericEvent, 4096)
	return ctrl.NewControllerManagedBy(mgr).
		For(&cortexv1.Model{}).
		WatchesRawSource(source.Channel(r.events, &handler.EnqueueRequestForObject{})).
		// Passes are serialised anyway (one plan at a time).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Named("model").
		Complete(r)
}
