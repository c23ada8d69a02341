package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/placement"
	"github.com/helexa-ai/cortex/internal/units"
)

// Step 4 of a pass: the Model's status, rebuilt from this pass's
// observations by a pure function, and what is derived from it (events,
// fleet gauges).

// rebuildStatus sets the Model's status from what was observed this pass:
// it gathers the facts (the replicas the neurons report, the plan, the
// manager's memory of failures and evictions), records what the
// observation means for back-off and metrics, and leaves the status itself
// to computeStatus.
func (r *ModelReconciler) rebuildStatus(model *cortexv1.Model, snap *snapshot, plan placement.Plan, now time.Time, estimateMsg string) {
	key := model.Key()
	f := statusFacts{
		Generation:    model.Generation,
		Replicas:      r.observeReplicas(key, snap, now),
		Desired:       plan.Desired[key],
		VRAMBytes:     r.memoryNeed(model).Total(1),
		LastDemand:    lastDemand(model, snap.activity),
		KeepAlive:     snap.keepAlive[key],
		Unschedulable: plan.Unschedulable[key],
		EstimateMsg:   estimateMsg,
		LastError:     r.failures.lastError(key, now),
		Waiting:       r.waiting(model, snap.activity, now),
		Conditions:    model.Status.Conditions,
	}
	if slices.ContainsFunc(f.Replicas, func(rep cortexv1.Replica) bool {
		return rep.State == cortexv1.ReplicaReady || rep.State == cortexv1.ReplicaLoading
	}) {
		r.evictions.forget(key)
	} else if e, ok := r.evictions.get(key, now); ok {
		f.Evicted = &e
	}
	model.Status = computeStatus(f)
}

// observeReplicas lists the Model's replicas on Ready nodes, by node, as
// the neurons report them, and notes what they mean for the manager's own
// bookkeeping: a load that turned Ready (load time, back-off cleared), a
// replica that failed (back-off), a replica gone or on a node that is not
// Ready (no longer waited for). A replica on a node that is not Ready is
// left out: it leaves the ready set at once, so the gateway must not route
// to it.
func (r *ModelReconciler) observeReplicas(key string, snap *snapshot, now time.Time) []cortexv1.Replica {
	var out []cortexv1.Replica
	for _, name := range r.Fleet.Nodes() {
		if !snap.ready[name] {
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
			rep.LoadedAt = statusTime(*m.LoadedAt)
		}
		if m.LastUsed != nil {
			rep.LastUsedTime = statusTime(*m.LastUsed)
		}
		switch rep.State {
		case cortexv1.ReplicaReady:
			if started, ok := r.loading.done(replicaKey{key, name}); ok {
				r.Metrics.ObserveLoadReady(now.Sub(started))
				r.failures.clear(key, name)
			}
		case cortexv1.ReplicaFailed:
			r.recordFailure(key, name, now)
		}
		out = append(out, rep)
	}
	return out
}

// statusTime is t as the API server stores it (whole seconds): a status
// built with finer times would never equal the stored one, and every pass
// would write it again.
func statusTime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t.Truncate(time.Second))
	return &mt
}

// statusFacts are everything a Model's status is computed from.
type statusFacts struct {
	Generation int64
	// Replicas are the replicas on Ready nodes, by node.
	Replicas []cortexv1.Replica
	// Desired is how many replicas the plan wants.
	Desired int
	// VRAMBytes is the memory one replica needs; 0 while unknown.
	VRAMBytes int64
	// LastDemand is the newest demand signal or replica use.
	LastDemand time.Time
	// KeepAlive is the keep-alive the pass applied (none for a Model the
	// pass did not plan).
	KeepAlive keepAliveChoice
	// Unschedulable is the planner's reason a wanted replica has no node;
	// empty when every wanted replica has one.
	Unschedulable string
	// EstimateMsg says why the memory need is unknown: estimatingMsg while
	// the header is read, an error otherwise; empty when known.
	EstimateMsg string
	// LastError is the most recent load failure still remembered.
	LastError string
	// Evicted is the Model's last eviction, when recent and the Model has
	// no replica loading or ready.
	Evicted *evictionNote
	// Waiting is set while the gateway holds requests for the Model.
	Waiting bool
	// Conditions are the previous conditions (their transition times are
	// kept when nothing changed).
	Conditions []metav1.Condition
}

// computeStatus turns the facts of one pass into a Model's status. It is a
// pure function: every phase and condition has a table test.
//
// Phases, first match wins: Idle (nothing wanted and nothing held, or the
// last replica evicted for another Model with no request waiting), Ready
// (every wanted replica ready), Degraded (some ready), Loading, then
// Unschedulable (a wanted replica has no node, or the memory need cannot
// be read), Failed (a replica failed, or a recent load failure), Pending.
// While the memory need is still being read the Model is Pending, not
// Unschedulable: only a failed estimate is a reason a human must act on.
func computeStatus(f statusFacts) cortexv1.ModelStatus {
	st := cortexv1.ModelStatus{ObservedGeneration: f.Generation, Replicas: f.Replicas, DesiredReplicas: int32(f.Desired)}
	var nodes []string
	var loading, failed int
	for _, rep := range f.Replicas {
		switch rep.State {
		case cortexv1.ReplicaReady:
			st.ReadyReplicas++
			nodes = append(nodes, rep.Node)
		case cortexv1.ReplicaLoading:
			loading++
		case cortexv1.ReplicaFailed:
			failed++
		}
	}
	st.Ready = fmt.Sprintf("%d/%d", st.ReadyReplicas, st.DesiredReplicas)
	st.Nodes = strings.Join(nodes, ",")
	st.VRAMBytes = f.VRAMBytes
	if st.VRAMBytes > 0 {
		st.VRAM = units.Bytes(st.VRAMBytes)
	}
	if !f.LastDemand.IsZero() {
		st.LastDemandTime = statusTime(f.LastDemand)
	}
	if f.KeepAlive.d > 0 {
		st.KeepAlive = &metav1.Duration{Duration: f.KeepAlive.d}
		st.KeepAliveSource = f.KeepAlive.source
	}

	unsched, isUnsched := f.Unschedulable, f.Unschedulable != ""
	estimating := f.EstimateMsg == estimatingMsg && st.VRAMBytes == 0 && st.DesiredReplicas > 0
	if estimating {
		isUnsched = false
	} else if f.EstimateMsg != "" && st.VRAMBytes == 0 && st.DesiredReplicas > 0 {
		unsched, isUnsched = f.EstimateMsg, true
	}
	// A Model whose last replica was evicted for another one, with no
	// request waiting for it, is Idle: it loads again on its next request.
	// It still wants a replica (it is within its keep-alive), so the
	// planner's message stays on the Scheduled condition.
	evicted := f.Evicted != nil && len(f.Replicas) == 0 && !f.Waiting
	switch {
	case evicted || st.DesiredReplicas == 0 && len(st.Replicas) == 0:
		st.Phase = cortexv1.ModelPhaseIdle
	case st.DesiredReplicas > 0 && st.ReadyReplicas >= st.DesiredReplicas:
		st.Phase = cortexv1.ModelPhaseReady
	case st.ReadyReplicas > 0:
		st.Phase = cortexv1.ModelPhaseDegraded
	case loading > 0:
		st.Phase = cortexv1.ModelPhaseLoading
	case isUnsched:
		st.Phase = cortexv1.ModelPhaseUnschedulable
	case failed > 0 || f.LastError != "":
		st.Phase = cortexv1.ModelPhaseFailed
	default:
		st.Phase = cortexv1.ModelPhasePending
	}

	ready := metav1.Condition{Type: cortexv1.ModelConditionReady, ObservedGeneration: f.Generation}
	switch st.Phase {
	case cortexv1.ModelPhaseReady:
		ready.Status, ready.Reason = metav1.ConditionTrue, cortexv1.ReasonReplicasReady
		ready.Message = fmt.Sprintf("%d of %d replicas ready", st.ReadyReplicas, st.DesiredReplicas)
	case cortexv1.ModelPhaseIdle:
		ready.Status, ready.Reason = metav1.ConditionFalse, cortexv1.ReasonNoDemand
		ready.Message = "no replica wanted: the first request loads one"
		if evicted {
			ready.Reason = cortexv1.ReasonEvicted
			ready.Message = fmt.Sprintf("evicted from %s at %s to make room for %s; the next request loads it again",
				f.Evicted.node, f.Evicted.at.UTC().Format(time.RFC3339), f.Evicted.forModel)
		}
	case cortexv1.ModelPhaseDegraded:
		ready.Status, ready.Reason = metav1.ConditionTrue, cortexv1.ReasonPartiallyReady
		ready.Message = fmt.Sprintf("%d of %d replicas ready", st.ReadyReplicas, st.DesiredReplicas)
	case cortexv1.ModelPhaseLoading:
		ready.Status, ready.Reason = metav1.ConditionFalse, cortexv1.ReasonReplicasLoading
		ready.Message = fmt.Sprintf("%d replicas loading", loading)
	case cortexv1.ModelPhaseFailed:
		ready.Status, ready.Reason = metav1.ConditionFalse, cortexv1.ReasonLoadFailed
		ready.Message = f.LastError
		if ready.Message == "" {
			ready.Message = "a replica failed"
			for _, rep := range f.Replicas {
				if rep.State == cortexv1.ReplicaFailed && rep.LastError != "" {
					ready.Message = rep.LastError
					break
				}
			}
		}
		ready.Message = truncate(ready.Message, 1024)
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
	scheduled := metav1.Condition{Type: cortexv1.ModelConditionScheduled, ObservedGeneration: f.Generation,
		Status: metav1.ConditionTrue, Reason: cortexv1.ReasonPlaced, Message: "every wanted replica has a node"}
	if isUnsched {
		scheduled.Status, scheduled.Reason, scheduled.Message = metav1.ConditionFalse, cortexv1.ReasonUnschedulable, truncate(unsched, 1024)
	} else if st.DesiredReplicas == 0 {
		scheduled.Reason, scheduled.Message = cortexv1.ReasonNoDemand, "no replica wanted"
	}
	st.Conditions = slices.Clone(f.Conditions)
	meta.SetStatusCondition(&st.Conditions, ready)
	meta.SetStatusCondition(&st.Conditions, scheduled)
	return st
}

// errStale says the status was not written because the Model changed
// since the pass read it (usually the cache had not yet seen the previous
// pass's own status write). The pass is simply run again soon: status-only
// changes bring no watch event (notStatusOnly), so waiting for one would
// wait for the resync.
var errStale = errors.New("the Model changed since it was read")

// staleRetry is how soon a pass whose status write was stale runs again.
const staleRetry = 100 * time.Millisecond

func (r *ModelReconciler) patchStatus(ctx context.Context, model, original *cortexv1.Model) error {
	if equality.Semantic.DeepEqual(original.Status, model.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, model, client.MergeFromWithOptions(original, client.MergeFromWithOptimisticLock{})); err != nil {
		if apierrors.IsConflict(err) {
			return errStale
		}
		if apierrors.IsNotFound(err) {
			return nil // deleted meanwhile; nothing to write
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
