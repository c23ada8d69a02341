package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/placement"
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
// its own loads and unloads, and the evictions its loads need. Planning is
// serialised by a mutex, and a pass reserves what it will load in the Fleet
// before releasing it, so two Models never plan against the same free
// memory (the planner itself keeps one plan from overcommitting a device);
// the calls to neurons and the API server run outside it, Workers passes
// at a time.
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
	// ColdStartWorth, in GiB·h, prices a cold start for the keep-alive
	// learned for Models without spec.keepAlive: holding this much memory
	// idle for this long costs as much as one cold start. 0 turns learning
	// off (they keep 15m).
	ColdStartWorth float64
	// Workers is how many Model passes run at once (at least 1). Only
	// their calls to neurons and the API server overlap; planning is one at
	// a time.
	Workers int

	mu        sync.Mutex
	estimates estimates
	failures  failures
	evictions evictions
	loading   loadOrders // load orders sent, waiting for Ready
	calls     callsInFlight
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

	if !model.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, model, original)
	}
	return r.reconcile(ctx, model, original)
}

// reconcile is one pass for a live Model, in five steps, one file each:
//
//  1. snapshot (model_snapshot.go): one read of the Models, NeuronNodes and
//     what every neuron reports, mapped to the planner's input;
//  2. plan: placement.Compute over the whole fleet (and the memory
//     estimate the plan needs, estimates.go);
//  3. execute (model_execute.go): this Model's loads and unloads, the
//     evictions its loads need, and orphans;
//  4. status (model_status.go): rebuilt from this pass's observations by a
//     pure function, patched only if it changed, then events and gauges;
//  5. requeue (model_requeue.go): when to look again without an event.
//
// The status is written even when executing failed, and both errors are
// returned.
func (r *ModelReconciler) reconcile(ctx context.Context, model, original *cortexv1.Model) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	now := r.Clock.Now()

	// Steps 1 and 2, and claiming this pass's part of the plan, run under
	// r.mu: one pass plans at a time, and what it will load is reserved in
	// the Fleet before the next one plans. Talking to neurons and the API
	// server (steps 3 and 4) does not hold it, so a slow or hung neuron
	// stalls only the passes that wait for it.
	r.mu.Lock()
	// 1. Snapshot.
	snap, err := r.takeSnapshot(ctx, now)
	if err != nil {
		r.mu.Unlock()
		return ctrl.Result{}, err
	}
	// A node that looks alive but has not been polled since this manager
	// started may hold replicas nobody knows of yet. Planning now could load
	// a second copy, so wait for the first poll (and write nothing: the
	// status would be built from an incomplete picture).
	if len(snap.unwatched) > 0 {
		r.mu.Unlock()
		logger.V(1).Info("Waiting for the first poll of nodes", "nodes", snap.unwatched)
		return ctrl.Result{RequeueAfter: 500 * time.Millisecond}, nil
	}

	// 2. Plan.
	estimateMsg := r.ensureEstimate(ctx, model, snap)
	plan := placement.Compute(snap.input)
	mine := r.claim(model.Key(), plan, now)
	r.mu.Unlock()

	// 3. Execute: unloads first (a load may rely on the memory they free),
	// then loads.
	actErr := r.execute(ctx, model, snap, mine)

	// 4. Status.
	r.rebuildStatus(model, snap, plan, now, estimateMsg)
	if err := r.patchStatus(ctx, model, original); err != nil {
		if errors.Is(err, errStale) && actErr == nil {
			return ctrl.Result{RequeueAfter: staleRetry}, nil
		}
		return ctrl.Result{}, errors.Join(actErr, err)
	}
	r.updateFleetGauges(model, snap, plan)
	r.recordTransitions(model, original)
	if actErr != nil {
		return ctrl.Result{}, actErr
	}

	// 5. Requeue.
	return ctrl.Result{RequeueAfter: r.nextLook(model, snap, now)}, nil
}

// reconcileDelete unloads a deleted Model everywhere reachable — the
// planner's Deleted unloads, carried out by executeUnload — and removes the
// finalizer once no Ready node holds it. A node that is not Ready is
// skipped: its poller finds the model an orphan when it comes back.
func (r *ModelReconciler) reconcileDelete(ctx context.Context, model, original *cortexv1.Model) (ctrl.Result, error) {
	key := model.Key()
	r.mu.Lock()
	snap, err := r.takeSnapshot(ctx, r.Clock.Now())
	if err != nil {
		r.mu.Unlock()
		return ctrl.Result{}, err
	}
	mine := r.claim(key, placement.Compute(snap.input), r.Clock.Now())
	r.mu.Unlock()
	var errs []error
	for _, u := range mine.unloads {
		if err := r.executeUnload(ctx, snap, u); err != nil {
			errs = append(errs, err)
		}
	}
	if remaining := r.heldOnReadyNodes(key, snap); remaining > 0 || len(errs) > 0 {
		// Unloading, or an unload failed: Terminating until it is gone.
		model.Status.Phase = cortexv1.ModelPhaseTerminating
		if err := r.patchStatus(ctx, model, original); err != nil && !errors.Is(err, errStale) {
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

// notStatusOnly drops the update events of a Model whose change is only
// its status — the manager's own writes, which need no pass of their own:
// a status write would otherwise cost every Model a second pass. The spec
// (generation), annotations (the gateway's demand signal), finalizers and
// deletion still trigger one.
var notStatusOnly = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld, e.ObjectNew
		if o == nil || n == nil {
			return true
		}
		return o.GetGeneration() != n.GetGeneration() ||
			!maps.Equal(o.GetAnnotations(), n.GetAnnotations()) ||
			!slices.Equal(o.GetFinalizers(), n.GetFinalizers()) ||
			!o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp()) ||
			!maps.Equal(o.GetLabels(), n.GetLabels())
	},
}

// SetupWithManager registers the controller.
func (r *ModelReconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.events = make(chan event.GenericEvent, 4096)
	return ctrl.NewControllerManagedBy(mgr).
		For(&cortexv1.Model{}, builder.WithPredicates(notStatusOnly)).
		WatchesRawSource(source.Channel(r.events, &handler.EnqueueRequestForObject{})).
		// Planning is one at a time (r.mu); the calls to neurons and the API
		// server of several passes overlap.
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, r.Workers)}).
		Named("model").
		Complete(r)
}
