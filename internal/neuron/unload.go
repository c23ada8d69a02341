package neuron

import (
	"context"
	"sync"
	"time"

	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// unload removes a model: it stops accepting requests for it, cancels a
// load under way, lets requests in flight finish for up to the drain
// timeout, closes the engine model (ending what is left with ErrClosed) and
// returns the memory. It returns the bytes freed; a model it does not hold
// is not an error.
func (r *registry) unload(ctx context.Context, name string) (int64, bool, error) {
	r.mu.Lock()
	m, ok := r.models[name]
	if !ok {
		r.mu.Unlock()
		return 0, false, nil
	}
	accepted := m.accepted
	r.mu.Unlock()
	select { // a load still being accepted decides first
	case <-accepted:
	case <-ctx.Done():
		return 0, true, ctx.Err()
	}

	r.mu.Lock()
	if r.models[name] != m {
		r.mu.Unlock()
		return r.unload(ctx, name)
	}
	if m.state == neuronapi.StateUnloading {
		gone := m.gone
		r.mu.Unlock()
		select {
		case <-gone:
			r.mu.Lock()
			freed := m.freed
			r.mu.Unlock()
			return freed, true, nil
		case <-ctx.Done():
			return 0, true, ctx.Err()
		}
	}
	prev := m.state
	m.state = neuronapi.StateUnloading
	m.progress = nil
	m.freed = m.reservedTotal()
	if m.cancel != nil {
		m.cancel()
	}
	var idle chan struct{}
	if m.inflight > 0 {
		m.idle = make(chan struct{})
		idle = m.idle
	}
	em, loadDone, inflight := m.eng, m.loadDone, m.inflight
	r.mu.Unlock()
	r.log.Info("Unloading model", "model", name, "state", prev, "inFlight", inflight)
	r.changed()

	<-loadDone // a canceled load returns promptly
	if idle != nil {
		t := time.NewTimer(r.drain)
		select {
		case <-idle:
		case <-t.C:
			r.log.Info("Unload drain timed out; ending requests in flight", "model", name, "timeout", r.drain.String())
		}
		t.Stop()
	}
	if em != nil {
		if err := em.Close(); err != nil {
			r.log.Error(err, "Closing engine model", "model", name)
		}
	}
	r.mu.Lock()
	if r.models[name] == m {
		delete(r.models, name)
	}
	m.reserved = nil
	m.eng = nil
	freed := m.freed
	close(m.gone)
	r.mu.Unlock()
	r.log.Info("Model unloaded", "model", name, "freedBytes", freed)
	r.changed()
	return freed, true, nil
}

// closeAll unloads every model at shutdown.
func (r *registry) closeAll(ctx context.Context) {
	r.mu.Lock()
	names := make([]string, 0, len(r.models))
	for n := range r.models {
		names = append(names, n)
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Go(func() { _, _, _ = r.unload(ctx, n) })
	}
	wg.Wait()
}
