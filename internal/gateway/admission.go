package gateway

import (
	"container/list"
	"context"
	"errors"
	"flag"
	"slices"
	"sync"
	"time"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/envflag"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// AdmissionConfig bounds what the gateway relays at once, so that at
// saturation requests wait a bounded time and are then turned away with an
// answer the client's SDK backs off on (429 with Retry-After; 529
// overloaded_error in Anthropic's dialect), instead of piling up in queues
// until every one of them misses its deadline.
type AdmissionConfig struct {
	// MaxInFlight caps the requests this gateway replica relays at once,
	// over every Model (0: no cap). It bounds the gateway's own memory and
	// connections whatever the fleet's size.
	MaxInFlight int
	// PerSlot bounds the requests relayed to one replica to this many per
	// parallel sequence of its Model (spec.engine.parallel), 0 for no bound.
	// The requests the other gateway replicas reported in flight there
	// through the prefix sync count too (Balancer.PeerInFlight).
	// 2 keeps every sequence busy with one request waiting behind it on the
	// neuron, so a freed sequence starts its next request at once, while
	// the rest wait here, where the wait is bounded in time and goes to
	// whichever replica frees first. It stays below what a neuron admits by
	// default (parallel plus a queue of 4 × parallel), so the neuron's own
	// 429 is a backstop (for gateway replicas without the sync, or those
	// that saw room in the same sync interval), not the rule.
	PerSlot int
	// Timeout is how long a request waits for room before it is turned
	// away (0: at once). A request held for a cold Model waits for room
	// until its cold-start deadline instead: the burst that woke a Model is
	// not turned away for arriving together.
	Timeout time.Duration
}

// DefaultAdmissionConfig returns the defaults the flags start from.
func DefaultAdmissionConfig() AdmissionConfig {
	return AdmissionConfig{MaxInFlight: 1024, PerSlot: 2, Timeout: 2 * time.Second}
}

func (c *AdmissionConfig) bindFlags(fs *flag.FlagSet) {
	envflag.IntVar(fs, &c.MaxInFlight, "max-in-flight", "requests relayed at once over all models; 0: no cap")
	envflag.IntVar(fs, &c.PerSlot, "replica-in-flight-per-slot", "requests relayed to one replica per parallel sequence of its model; 0: no bound")
	envflag.DurationVar(fs, &c.Timeout, "admission-timeout", "how long a request waits for room under those bounds before 429 overloaded; 0: no wait")
}

func (c *AdmissionConfig) validate() error {
	if c.MaxInFlight < 0 || c.PerSlot < 0 || c.Timeout < 0 {
		return errors.New("max-in-flight, replica-in-flight-per-slot and admission-timeout must not be negative")
	}
	return nil
}

// defaultParallel is the engine's parallel when a Model does not say (the
// CRD's default).
const defaultParallel = 4

// Overload reasons, as the reason label of the rejection counter.
const (
	overloadReplica  = "replica"
	overloadGateway  = "gateway"
	overloadUpstream = "upstream"
)

// overloadRetryAfter is what an overloaded answer tells clients: a sequence
// frees within a generation, and SDKs add their own jittered back-off.
const overloadRetryAfter = time.Second

var (
	// errAllTried: every replica was excluded (tried) by the caller.
	errAllTried = errors.New("every replica was tried")
	// errReplicasChanged: the Model's ready set changed while waiting.
	errReplicasChanged = errors.New("the model's replicas changed")
	// errAdmissionTimeout: no room freed before the deadline.
	errAdmissionTimeout = errors.New("no room before the admission deadline")
)

// overloadedError is the answer to a request turned away at capacity.
func overloadedError(model, reason string) *apiError {
	var oe *openai.Error
	switch reason {
	case overloadGateway:
		oe = openai.Overloaded("the gateway is at capacity; retry shortly")
	default:
		oe = openai.Overloaded("every replica of model '%s' is at capacity; retry shortly", model)
	}
	return &apiError{err: oe, retryAfter: overloadRetryAfter}
}

// admission counts the requests relayed, per replica (a Model on one
// neuron) and in all, and queues those that find no room, first come first
// served. Every slot freed is offered to the queue at once, under the same
// lock, so a request that finds room never takes it from an older one that
// could have used it: the queue only ever holds requests that cannot run.
type admission struct {
	cfg      AdmissionConfig
	balancer *Balancer
	met      *metrics

	mu       sync.Mutex
	total    int
	perRep   map[slotKey]int
	queue    list.List // of *ticket, oldest first
	queueLen map[string]int
}

type slotKey struct{ model, endpoint string }

// ticket is one request asking for a slot.
type ticket struct {
	model   string
	reps    []Replica
	limit   int // per replica; 0: none
	prompt  Prompt
	exclude []string
	elem    *list.Element
	granted chan slot
}

// slot is an admitted request's place; release gives it back, started
// tells the balancer the first token came.
type slot struct {
	rep     Replica
	release func()
	started func()
}

func newAdmission(cfg AdmissionConfig, b *Balancer, m *metrics) *admission {
	return &admission{cfg: cfg, balancer: b, met: m, perRep: map[slotKey]int{}, queueLen: map[string]int{}}
}

// replicaLimit is the per-replica bound for a call to a Model: PerSlot per
// parallel sequence. Token counting uses no sequence and has none.
func (a *admission) replicaLimit(m *cortexv1.Model, path string) int {
	if a.cfg.PerSlot == 0 || path == neuronapi.PathTokenize {
		return 0
	}
	return modelParallel(m) * a.cfg.PerSlot
}

// modelParallel is how many sequences a replica of m runs at once.
func modelParallel(m *cortexv1.Model) int {
	if m != nil && m.Spec.Engine.Parallel > 0 {
		return int(m.Spec.Engine.Parallel)
	}
	return defaultParallel
}

// tryLocked admits t on a replica with room, chosen by the balancer, or
// reports that there is none. a.mu is held.
func (a *admission) tryLocked(t *ticket) (slot, bool) {
	if a.cfg.MaxInFlight > 0 && a.total >= a.cfg.MaxInFlight {
		return slot{}, false
	}
	cands := make([]Replica, 0, len(t.reps))
	for _, r := range t.reps {
		if slices.Contains(t.exclude, r.Endpoint) {
			continue
		}
		if t.limit > 0 && a.perRep[slotKey{t.model, r.Endpoint}]+a.balancer.PeerInFlight(t.model, r) >= t.limit {
			continue
		}
		cands = append(cands, r)
	}
	rep, lease, ok := a.balancer.Pick(cands, t.prompt, nil)
	if !ok {
		return slot{}, false
	}
	k := slotKey{t.model, rep.Endpoint}
	a.total++
	a.perRep[k]++
	a.met.admitted.Set(float64(a.total))
	var once sync.Once
	return slot{rep: rep, started: lease.Started, release: func() {
		once.Do(func() {
			lease.Release()
			a.mu.Lock()
			defer a.mu.Unlock()
			a.total--
			if a.perRep[k]--; a.perRep[k] <= 0 {
				delete(a.perRep, k)
			}
			a.met.admitted.Set(float64(a.total))
			a.grantLocked()
		})
	}}, true
}

// poke offers the room that may have freed elsewhere to the queue: the
// other gateway replicas' requests count against the per-replica bound
// (PeerInFlight), and their ends arrive with their reports, not with a
// release here. The prefix sync calls it at every report it receives
// and at every tick of its own, by when a silent peer's report may have
// gone stale.
func (a *admission) poke() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.queue.Len() > 0 {
		a.grantLocked()
	}
}

// grantLocked admits queued tickets, oldest first, while there is room.
func (a *admission) grantLocked() {
	for e := a.queue.Front(); e != nil; {
		if a.cfg.MaxInFlight > 0 && a.total >= a.cfg.MaxInFlight {
			return
		}
		next := e.Next()
		t := e.Value.(*ticket)
		if s, ok := a.tryLocked(t); ok {
			a.dequeueLocked(t)
			t.granted <- s
		}
		e = next
	}
}

func (a *admission) dequeueLocked(t *ticket) {
	a.queue.Remove(t.elem)
	t.elem = nil
	if a.queueLen[t.model]--; a.queueLen[t.model] <= 0 {
		delete(a.queueLen, t.model)
	}
	a.met.admissionQueue.WithLabelValues(t.model).Dec()
}

// reasonLocked says which bound keeps t out.
func (a *admission) reasonLocked() string {
	if a.cfg.MaxInFlight > 0 && a.total >= a.cfg.MaxInFlight {
		return overloadGateway
	}
	return overloadReplica
}

// waitOpts are how one wait for a slot ends besides a grant.
type waitOpts struct {
	deadline time.Time
	// changed returns a channel closed when the Model's ready set changes
	// (Catalog.Wait): the caller looks again with the new replicas.
	changed func(model string) <-chan struct{}
	// tick, when set, is called every tickEvery (a committed stream's
	// keep-alive).
	tick      func()
	tickEvery time.Duration
}

// acquire admits t, waiting for room until the deadline. It returns
// errAllTried when every replica is excluded, errReplicasChanged when the
// ready set changed while it waited, the overloaded answer at the
// deadline, or the context's error.
func (a *admission) acquire(ctx context.Context, t *ticket, w waitOpts) (slot, error) {
	if !slices.ContainsFunc(t.reps, func(r Replica) bool { return !slices.Contains(t.exclude, r.Endpoint) }) {
		return slot{}, errAllTried
	}
	start := time.Now()
	a.mu.Lock()
	if s, ok := a.tryLocked(t); ok {
		a.mu.Unlock()
		a.met.admissionWait.WithLabelValues(t.model).Observe(0)
		return s, nil
	}
	if !start.Before(w.deadline) {
		reason := a.reasonLocked()
		a.mu.Unlock()
		return slot{}, a.reject(t.model, reason)
	}
	changed := w.changed(t.model)
	t.granted = make(chan slot, 1)
	t.elem = a.queue.PushBack(t)
	a.queueLen[t.model]++
	a.met.admissionQueue.WithLabelValues(t.model).Inc()
	a.mu.Unlock()

	timer := time.NewTimer(time.Until(w.deadline))
	defer timer.Stop()
	var tickC <-chan time.Time
	if w.tick != nil && w.tickEvery > 0 {
		tk := time.NewTicker(w.tickEvery)
		defer tk.Stop()
		tickC = tk.C
	}
	var err error
wait:
	for {
		select {
		case s := <-t.granted:
			a.met.admissionWait.WithLabelValues(t.model).Observe(time.Since(start).Seconds())
			return s, nil
		case <-tickC:
			w.tick()
		case <-timer.C:
			err = errAdmissionTimeout
			break wait
		case <-changed:
			err = errReplicasChanged
			break wait
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		}
	}
	a.mu.Lock()
	if t.elem != nil {
		reason := a.reasonLocked()
		a.dequeueLocked(t)
		a.mu.Unlock()
		if errors.Is(err, errAdmissionTimeout) {
			return slot{}, a.reject(t.model, reason)
		}
		return slot{}, err
	}
	a.mu.Unlock()
	// Granted while giving up: a request still wanted takes it.
	s := <-t.granted
	if ctx.Err() != nil {
		s.release()
		return slot{}, ctx.Err()
	}
	a.met.admissionWait.WithLabelValues(t.model).Observe(time.Since(start).Seconds())
	return s, nil
}

func (a *admission) reject(model, reason string) error {
	a.met.overloaded.WithLabelValues(model, reason).Inc()
	return overloadedError(model, reason)
}

// waiting is how many requests wait for a slot of the Model (tests).
func (a *admission) waiting(model string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.queueLen[model]
}
