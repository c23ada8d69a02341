package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
)

// Demand writes the demand signal the manager places cold Models by: the
// cortex.helexa.ai/last-demand annotation, as a merge patch, at most once
// per Model per Interval however many requests wait, and never more than
// one write in flight per Model.
type Demand struct {
	Client   client.Client
	Clock    clock.PassiveClock
	Interval time.Duration

	mu   sync.Mutex
	last map[string]time.Time
	busy map[string]bool
}

// Signal records demand for the Model key; it returns without waiting.
func (d *Demand) Signal(ctx context.Context, key string) {
	now := d.Clock.Now()
	d.mu.Lock()
	if d.last == nil {
		d.last, d.busy = map[string]time.Time{}, map[string]bool{}
	}
	if d.busy[key] || now.Sub(d.last[key]) < d.Interval {
		d.mu.Unlock()
		return
	}
	d.busy[key] = true
	d.last[key] = now
	d.mu.Unlock()

	go func() {
		defer func() {
			d.mu.Lock()
			d.busy[key] = false
			d.mu.Unlock()
		}()
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := d.write(wctx, key, now); err != nil {
			log.FromContext(ctx).Error(err, "Writing demand signal", "model", key)
			// Let the next request try again at once.
			d.mu.Lock()
			delete(d.last, key)
			d.mu.Unlock()
		}
	}()
}

// Served ends a wait for the Model key: the next request that finds no
// ready replica signals at once instead of within Interval of the last
// wait's signal, so a Model evicted shortly after it served is asked for
// again without delay. The throttle only exists to coalesce the writes of
// requests that wait together.
func (d *Demand) Served(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.busy[key] {
		delete(d.last, key)
	}
}

func (d *Demand) write(ctx context.Context, key string, at time.Time) error {
	ns, name, ok := cortexv1.ParseModelKey(key)
	if !ok {
		return fmt.Errorf("bad model key %q", key)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		cortexv1.DemandAnnotation: at.UTC().Format(time.RFC3339Nano),
	}}})
	if err != nil {
		return err
	}
	m := &cortexv1.Model{}
	m.Namespace, m.Name = ns, name
	return d.Client.Patch(ctx, m, client.RawPatch("application/merge-patch+json", patch))
}

// waitReady holds a request until its Model has a ready replica: it
// signals demand (again every Interval while waiting, so the manager keeps
// seeing it), calls tick every tickEvery (a streaming client's keep-alive),
// and gives up after timeout.
func (g *Gateway) waitReady(ctx context.Context, key string, timeout time.Duration, tick func()) ([]Replica, error) {
	start := g.clock.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var tickC <-chan time.Time
	if tick != nil {
		t := time.NewTicker(g.cfg.KeepAliveInterval)
		defer t.Stop()
		tickC = t.C
	}
	resignal := time.NewTicker(g.cfg.DemandInterval)
	defer resignal.Stop()
	defer func() { g.metrics.coldWait.WithLabelValues(key).Observe(g.clock.Since(start).Seconds()) }()
	for {
		// Register before looking, so a change in between is not missed.
		changed := g.catalog.Wait(key)
		if reps := g.catalog.Replicas(key); len(reps) > 0 {
			g.demand.Served(key)
			return reps, nil
		}
		if _, ok := g.catalog.Model(key); !ok {
			return nil, errUnknownModel
		}
		g.demand.Signal(ctx, key)
		select {
		case <-changed:
		case <-resignal.C:
		case <-tickC:
			tick()
		case <-deadline.C:
			return nil, errColdTimeout
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
