package controllers

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/placement"
	"github.com/helexa-ai/cortex/internal/vram"
)

// estimateKey identifies what a memory estimate depends on: the source
// and the engine settings in the contract's normal form (so a new engine
// setting is part of it without being listed here).
type estimateKey struct {
	source neuronapi.Source
	engine string
}

func estimateKeyOf(m *cortexv1.Model) estimateKey {
	return estimateKey{
		source: sourceOf(m),
		engine: engineConfig(m.Spec.Engine).MemoryKey(),
	}
}

type estimate struct {
	need    vram.Need
	err     error
	at      time.Time
	pending bool
}

// estimates caches what neurons said models need. A failed estimate is
// retried after a while so a fixed source is picked up.
type estimates struct {
	mu sync.Mutex
	m  map[estimateKey]*estimate
}

func (e *estimates) get(k estimateKey) (estimate, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	v, ok := e.m[k]
	if !ok {
		return estimate{}, false
	}
	return *v, !v.pending
}

// begin marks k pending and reports whether the caller should start an
// estimate (none pending, none fresh).
func (e *estimates) begin(k estimateKey, now time.Time, retryAfter time.Duration) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = map[estimateKey]*estimate{}
	}
	v, ok := e.m[k]
	switch {
	case !ok:
	case v.pending:
		return false
	case v.err == nil:
		return false
	case now.Sub(v.at) < retryAfter:
		return false
	}
	prev := estimate{}
	if ok {
		prev = *v
	}
	prev.pending = true
	e.m[k] = &prev
	return true
}

func (e *estimates) finish(k estimateKey, need vram.Need, err error, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[k] = &estimate{need: need, err: err, at: now}
}

func (e *estimates) forget(k estimateKey) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, k)
}

// ensureEstimate makes sure the Model's memory need is known or being
// found out. It returns a message for the status while it is not known.
func (r *ModelReconciler) ensureEstimate(ctx context.Context, model *cortexv1.Model, snap *snapshot) string {
	if model.Spec.Resources.VRAM != nil {
		return ""
	}
	k := estimateKeyOf(model)
	now := r.Clock.Now()
	if e, ok := r.estimates.get(k); ok && e.err == nil {
		return ""
	}
	endpoint := estimateNode(model, snap)
	prev, done := r.estimates.get(k)
	if endpoint == "" {
		if done && prev.err != nil {
			return fmt.Sprintf("memory need unknown: %v", prev.err)
		}
		return "memory need unknown: no Ready node to read the model header"
	}
	if r.estimates.begin(k, now, 30*time.Second) {
		key := model.Key()
		req := neuronapi.EstimateRequest{Source: sourceOf(model), Engine: engineConfig(model.Spec.Engine)}
		logger := log.FromContext(ctx)
		go func() {
			// Reading a remote header can take a while; the pass does not
			// wait for it, the result wakes the Model.
			ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			est, err := r.Neurons.Estimate(ectx, endpoint, req)
			var need vram.Need
			if err == nil {
				// The same division the neuron reserves by.
				need = est.Need(req.Engine.GPULayers)
				logger.Info("Estimated memory need", "bytes", est.TotalBytes, "weights", est.WeightsBytes,
					"kvCache", est.KVCacheBytes, "perDevice", est.ComputeBytes)
			} else {
				logger.Error(err, "Estimating memory need")
			}
			r.estimates.finish(k, need, err, r.Clock.Now())
			r.wake(key)
		}()
	}
	if done && prev.err != nil {
		return fmt.Sprintf("memory need unknown: %v", prev.err)
	}
	return estimatingMsg
}

// estimatingMsg is ensureEstimate's answer while a neuron reads the header.
const estimatingMsg = "estimating memory need from the model header"

// estimateNode picks the Ready node to read the model header on: one the
// Model may be placed on (a file:// source exists only where the operator
// put it), else any Ready node.
func estimateNode(model *cortexv1.Model, snap *snapshot) string {
	var fallback string
	for _, name := range sortedKeys(snap.ready) {
		if !snap.ready[name] {
			continue
		}
		nn := snap.nodes[name]
		if fallback == "" {
			fallback = nn.Status.Endpoint
		}
		if placeableOn(model, nn) {
			return nn.Status.Endpoint
		}
	}
	return fallback
}

// placeableOn reports whether the Model's placement rules admit the node.
func placeableOn(model *cortexv1.Model, nn *cortexv1.NeuronNode) bool {
	return placement.NodeAdmits(model.Spec.Placement.NodeSelector, model.Spec.Placement.NodeNames, nn.Name, nn.Labels)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
