package gateway

import (
	"encoding/binary"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Balancer picks a replica for each request: the fewest requests in flight,
// with prefix affinity bounded by load.
//
// Affinity uses rendezvous hashing: every (prefix, replica) pair gets a
// score and replicas are tried in score order, so a conversation (or a
// family of requests sharing a long prompt prefix) keeps landing on the
// replica whose KV cache already holds that prefix. The bound is that of
// consistent hashing with bounded loads: a replica is skipped while its
// in-flight count would exceed (1+Epsilon) × the average after this
// request, so one popular shared system prompt spreads over replicas
// instead of piling onto one.
type Balancer struct {
	// Epsilon is the allowed imbalance above the average load.
	Epsilon float64

	mu       sync.Mutex
	inflight map[string]int // by endpoint
	// down holds endpoints that refused a connection recently, until when:
	// they are skipped while another replica is available, so one dead
	// process costs one retry, not one per request until the manager
	// notices.
	down map[string]time.Time
	now  func() time.Time
}

// NewBalancer returns a Balancer with the usual ε of 0.25.
func NewBalancer() *Balancer {
	return &Balancer{Epsilon: 0.25, inflight: map[string]int{}, down: map[string]time.Time{}, now: time.Now}
}

// Pick chooses among replicas, skipping those in exclude, and counts the
// request in flight on the chosen one until release is called. affinity 0
// means no affinity. ok is false when every replica is excluded.
func (b *Balancer) Pick(replicas []Replica, affinity uint64, exclude []string) (r Replica, release func(), ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cands := make([]Replica, 0, len(replicas))
	var suspect []Replica
	now := b.now()
	for _, rep := range replicas {
		if slices.Contains(exclude, rep.Endpoint) {
			continue
		}
		if until, ok := b.down[rep.Endpoint]; ok {
			if now.Before(until) {
				suspect = append(suspect, rep)
				continue
			}
			delete(b.down, rep.Endpoint)
		}
		cands = append(cands, rep)
	}
	if len(cands) == 0 {
		// Nothing healthy left: a suspect replica beats no answer.
		cands = suspect
	}
	if len(cands) == 0 {
		return Replica{}, nil, false
	}
	var chosen Replica
	if affinity == 0 || len(cands) == 1 {
		chosen = b.leastLoaded(cands)
	} else {
		chosen = b.affine(cands, affinity)
	}
	b.inflight[chosen.Endpoint]++
	var once sync.Once
	return chosen, func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.inflight[chosen.Endpoint]--; b.inflight[chosen.Endpoint] <= 0 {
				delete(b.inflight, chosen.Endpoint)
			}
		})
	}, true
}

// MarkDown skips an endpoint for d while other replicas are available.
func (b *Balancer) MarkDown(endpoint string, d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down[endpoint] = b.now().Add(d)
}

func (b *Balancer) leastLoaded(cands []Replica) Replica {
	best := cands[0]
	for _, c := range cands[1:] {
		if b.inflight[c.Endpoint] < b.inflight[best.Endpoint] {
			best = c
		}
	}
	return best
}

func (b *Balancer) affine(cands []Replica, affinity uint64) Replica {
	total := 0
	for _, c := range cands {
		total += b.inflight[c.Endpoint]
	}
	bound := int(math.Ceil((1 + b.Epsilon) * float64(total+1) / float64(len(cands))))
	type scored struct {
		r     Replica
		score uint64
	}
	order := make([]scored, len(cands))
	// The hash is fixed (not seeded per process), so every gateway replica
	// sends a conversation to the same neuron.
	buf := make([]byte, 8, 64)
	binary.LittleEndian.PutUint64(buf, affinity)
	for i, c := range cands {
		order[i] = scored{c, xxhash.Sum64(append(buf[:8], c.Node...))}
	}
	slices.SortFunc(order, func(a, b scored) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return 0
	})
	for _, s := range order {
		if b.inflight[s.r.Endpoint]+1 <= bound {
			return s.r
		}
	}
	return b.leastLoaded(cands)
}

// AffinityKey hashes a conversation prefix (for instance the raw JSON of
// the first messages) into an affinity key; 0 means none.
func AffinityKey(model string, prefix []byte) uint64 {
	if len(prefix) == 0 {
		return 0
	}
	d := xxhash.New()
	_, _ = d.WriteString(model)
	_, _ = d.Write(prefix)
	if v := d.Sum64(); v != 0 {
		return v
	}
	return 1
}
