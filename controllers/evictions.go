package controllers

import "time"

// evictions remembers, per Model, the last time one of its replicas was
// unloaded to make room for another Model, so that the Model's status can
// say why it has no replica. Status is otherwise rebuilt from what the
// neurons hold, which no longer shows the replica. Only the reconciler
// uses it, under its mutex.
type evictions struct {
	m map[string]evictionNote
}

type evictionNote struct {
	node, forModel string
	at             time.Time
}

// evictionMemory bounds how long an eviction is shown: long enough to be
// read after the fact, short enough not to explain a later state.
const evictionMemory = time.Hour

func (e *evictions) record(model, node, forModel string, at time.Time) {
	if e.m == nil {
		e.m = map[string]evictionNote{}
	}
	e.m[model] = evictionNote{node: node, forModel: forModel, at: at}
}

// get returns the Model's last eviction if it is recent.
func (e *evictions) get(model string, now time.Time) (evictionNote, bool) {
	n, ok := e.m[model]
	if !ok || now.Sub(n.at) > evictionMemory {
		return evictionNote{}, false
	}
	return n, true
}

func (e *evictions) forget(model string) { delete(e.m, model) }
