package controllers

// The manager's memory of its own recent actions, which the neurons' answers
// do not show: evictions (for status), load orders in flight (for the load
// time), calls unanswered (for placement). Each locks itself: passes of
// different Models use them at once.

import (
	"sync"
	"time"
)

// evictions remembers, per Model, the last time one of its replicas was
// unloaded to make room for another Model, so that the Model's status can
// say why it has no replica. Status is otherwise rebuilt from what the
// neurons hold, which no longer shows the replica. Passes of different
// Models use it at once, so it locks itself.
type evictions struct {
	mu sync.Mutex
	m  map[string]evictionNote
}

type evictionNote struct {
	node, forModel string
	at             time.Time
}

// evictionMemory bounds how long an eviction is shown: long enough to be
// read after the fact, short enough not to explain a later state.
const evictionMemory = time.Hour

func (e *evictions) record(model, node, forModel string, at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = map[string]evictionNote{}
	}
	e.m[model] = evictionNote{node: node, forModel: forModel, at: at}
}

// get returns the Model's last eviction if it is recent.
func (e *evictions) get(model string, now time.Time) (evictionNote, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n, ok := e.m[model]
	if !ok || now.Sub(n.at) > evictionMemory {
		return evictionNote{}, false
	}
	return n, true
}

func (e *evictions) forget(model string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, model)
}

// loadOrders remembers when each load order was sent, until its replica
// turns Ready (the load-duration metric) or fails. It locks itself.
type loadOrders struct {
	mu sync.Mutex
	m  map[replicaKey]time.Time
}

// sent notes an order, keeping the first time for a replica already
// waited for.
func (l *loadOrders) sent(k replicaKey, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[replicaKey]time.Time{}
	}
	if _, ok := l.m[k]; !ok {
		l.m[k] = at
	}
}

// done forgets an order and says when it was sent, if it was waited for.
func (l *loadOrders) done(k replicaKey) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.m[k]
	delete(l.m, k)
	return at, ok
}

// callsInFlight counts, per node, the load and unload calls a pass has sent
// and not yet had answered. Such a node is Busy to the planner (among the
// nodes that fit now it goes last): a neuron that hangs would otherwise draw
// every pass planning meanwhile — it looks empty — and each would wait out
// the client's timeouts. It locks itself.
type callsInFlight struct {
	mu sync.Mutex
	m  map[string]int
}

// begin notes a call to node; the returned func notes its answer.
func (c *callsInFlight) begin(node string) func() {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[node]++
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.m[node]--; c.m[node] <= 0 {
			delete(c.m, node)
		}
	}
}

// nodes lists the nodes with an unanswered call.
func (c *callsInFlight) nodes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.m))
	for n := range c.m {
		out = append(out, n)
	}
	return out
}
