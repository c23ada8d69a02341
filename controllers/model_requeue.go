package controllers

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/placement"
)

// Step 5 of a pass: when to look at the Model again without an event.

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
	// A wanted replica without a node (Degraded included) is looked for
	// again soon: room may appear without any event of this Model's own.
	if meta.IsStatusConditionFalse(model.Status.Conditions, cortexv1.ModelConditionScheduled) {
		next = min(next, 5*time.Second)
	}
	// Wake when a keep-alive runs out: the model's (from its last demand)
	// or a replica's (from its last use or load).
	// The keep-alive this pass applied, learned ones included.
	ka := snap.keepAlive[model.Key()].d
	if ka <= 0 { // not in the snapshot's list yet
		ka = max(defaultKeepAlive, placement.MinKeepAlive)
	}
	wakeAt := func(t time.Time) {
		if until := t.Add(ka).Sub(now); !t.IsZero() && until > 0 {
			next = min(next, until+100*time.Millisecond)
		}
	}
	// The Fleet, not the snapshot: it includes what this pass loaded (a
	// replica that was Ready at once brings no later event to wake on).
	key := model.Key()
	var resident bool
	for _, name := range r.Fleet.Nodes() {
		obs, _ := r.Fleet.Get(name)
		for _, m := range obs.Models {
			if m.Name != key {
				continue
			}
			resident = true
			if m.LoadedAt != nil {
				wakeAt(*m.LoadedAt)
			}
			if m.LastUsed != nil {
				wakeAt(*m.LastUsed)
			}
		}
	}
	if resident {
		wakeAt(lastDemand(model, snap.activity))
	}
	if d := r.failures.nextRetry(key, now); d > 0 {
		next = min(next, d)
	}
	return next
}
