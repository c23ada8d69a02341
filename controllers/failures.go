package controllers

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// failures is the manager's memory of failed loads per (Model, node):
// exponential back-off, the nodes placement should avoid, and the last
// error for status.
type failures struct {
	mu sync.Mutex
	m  map[replicaKey]*failure
}

type failure struct {
	count int
	last  time.Time
	msg   string
}

const (
	failureBackoffBase = 15 * time.Second
	failureBackoffMax  = 10 * time.Minute
	// failureMemory is how long a failure steers placement elsewhere and
	// shows in status.
	failureMemory = 30 * time.Minute
)

func (f *failure) backoff() time.Duration {
	d := failureBackoffBase
	for i := 1; i < f.count && d < failureBackoffMax; i++ {
		d *= 2
	}
	return min(d, failureBackoffMax)
}

func (fs *failures) record(model, node string, now time.Time, msg string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.m == nil {
		fs.m = map[replicaKey]*failure{}
	}
	f := fs.m[replicaKey{model, node}]
	if f == nil {
		f = &failure{}
		fs.m[replicaKey{model, node}] = f
	}
	f.count++
	f.last = now
	f.msg = msg
}

func (fs *failures) clear(model, node string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	delete(fs.m, replicaKey{model, node})
}

func (fs *failures) forget(model string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for k := range fs.m {
		if k.model == model {
			delete(fs.m, k)
		}
	}
}

func (fs *failures) backingOff(model, node string, now time.Time) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f := fs.m[replicaKey{model, node}]
	return f != nil && now.Sub(f.last) < f.backoff()
}

// avoid lists the nodes where the model failed recently.
func (fs *failures) avoid(model string, now time.Time) []string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var out []string
	for k, f := range fs.m {
		if k.model == model && now.Sub(f.last) < failureMemory {
			out = append(out, k.node)
		}
	}
	slices.Sort(out)
	return out
}

// lastError is the newest remembered failure message of the model.
func (fs *failures) lastError(model string, now time.Time) string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var best *failure
	var node string
	for k, f := range fs.m {
		if k.model == model && now.Sub(f.last) < failureMemory && (best == nil || f.last.After(best.last)) {
			best, node = f, k.node
		}
	}
	if best == nil {
		return ""
	}
	return fmt.Sprintf("load on %s failed (%d times): %s", node, best.count, best.msg)
}

// nextRetry is how long until the soonest back-off of the model ends.
func (fs *failures) nextRetry(model string, now time.Time) time.Duration {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var next time.Duration
	for k, f := range fs.m {
		if k.model != model {
			continue
		}
		if d := f.last.Add(f.backoff()).Sub(now); d > 0 && (next == 0 || d < next) {
			next = d + 50*time.Millisecond
		}
	}
	return next
}
