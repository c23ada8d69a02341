package sched

import (
	"slices"
	"sync"
)

// Queue admits requests for one model and holds those waiting for a
// sequence. A request counts against the model's capacity (Parallel
// sequences plus QueueSize waiting) from admission until its caller
// returns, so a burst of Parallel+QueueSize+1 concurrent callers sees
// exactly one ErrQueueFull. The worker takes waiting requests with Take
// once it has free sequences.
type Queue struct {
	parallel, queueSize int

	mu       sync.Mutex
	inflight int
	waiting  []*Request
	active   int
	closed   error
}

// NewQueue makes a queue for parallel sequences and queueSize waiting
// requests.
func NewQueue(parallel, queueSize int) *Queue {
	return &Queue{parallel: parallel, queueSize: queueSize}
}

// Admit enqueues r, or returns the error the caller gets instead: the
// close error once Close was called, full when capacity is used up.
func (q *Queue) Admit(r *Request, full error) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed != nil {
		return q.closed
	}
	if q.inflight >= q.parallel+q.queueSize {
		return full
	}
	q.inflight++
	q.waiting = append(q.waiting, r)
	return nil
}

// Leave is called when the caller of an admitted request returns. A
// request still waiting is dropped from the queue at once, so a cancelled
// request never holds a queue place.
func (q *Queue) Leave(r *Request) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.inflight--
	if i := slices.Index(q.waiting, r); i >= 0 {
		q.waiting = slices.Delete(q.waiting, i, i+1)
	}
}

// Take removes and returns up to n waiting requests in arrival order,
// skipping cancelled ones.
func (q *Queue) Take(n int) []*Request {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*Request
	i := 0
	for ; i < len(q.waiting) && len(out) < n; i++ {
		if r := q.waiting[i]; !r.Cancelled() {
			out = append(out, r)
		}
	}
	q.waiting = slices.Delete(q.waiting, 0, i)
	return out
}

// Waiting reports whether requests wait for a sequence.
func (q *Queue) Waiting() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiting) > 0
}

// SetActive records how many requests hold a sequence, for Stats.
func (q *Queue) SetActive(n int) {
	q.mu.Lock()
	q.active = n
	q.mu.Unlock()
}

// Counts returns the requests holding a sequence and those waiting.
func (q *Queue) Counts() (active, queued int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.active, len(q.waiting)
}

// Close refuses new requests with err from now on and returns the waiting
// ones, which the caller fails. Only the first error is kept.
func (q *Queue) Close(err error) []*Request {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed == nil {
		q.closed = err
	}
	w := q.waiting
	q.waiting = nil
	return w
}

// Err is the error set by Close, or nil.
func (q *Queue) Err() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}
