package gateway

import (
	"encoding/binary"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Balancer picks a replica for each request: the fewest requests in flight,
// with prefix affinity bounded by load.
//
// A request's prefix is a chain of keys, one per chunk of its prompt
// (PrefixKeys): key i stands for chunks 0..i. The balancer remembers, for
// the keys of recent requests, which replica served them last (a table of
// about PrefixEntries keys), and sends a request to the replica that
// served the longest prefix it shares with an earlier one: that replica's
// KV cache most likely still holds it. A prefix nobody served yet goes by
// rendezvous hashing of its first key: every (key, replica) pair gets a
// score and replicas are tried in score order, so requests that share a
// first chunk (a system prompt, a conversation's start) meet on one
// replica even across gateway replicas. Either way the bound is that of
// consistent hashing with bounded loads: a replica is skipped while its
// in-flight count would exceed (1+Epsilon) × the average after this
// request, so one popular shared prompt spreads over replicas instead of
// piling onto one; a replica that served the request's prefix may carry
// up to (1+HitEpsilon) × the average, since what it saves (the prefix's
// prefill) is worth more than a short wait for a slot. Epsilon is 0: a
// prompt with no known prefix saves nothing where it hashes, so it goes
// there only while that replica is within the even share.
type Balancer struct {
	// Epsilon is the allowed imbalance above the average load.
	Epsilon float64
	// HitEpsilon is the allowed imbalance for the replica that served the
	// request's longest known prefix.
	HitEpsilon float64

	mu       sync.Mutex
	inflight map[string]int // by endpoint
	// down holds endpoints that refused a connection recently, until when:
	// they are skipped while another replica is available, so one dead
	// process costs one retry, not one per request until the manager
	// notices.
	down map[string]time.Time
	now  func() time.Time

	// PrefixEntries bounds the prefix table (0: DefaultPrefixEntries).
	PrefixEntries int
	// The table is two generations: a key is looked up in recent, then
	// older; when recent holds half the bound, it becomes older and the
	// oldest generation is dropped — least recently used, roughly, at
	// constant cost.
	recent, older map[uint64]string

	// Remembered, when set, is told each request's prefix keys and the
	// replica chosen for them, under the balancer's lock (it must not
	// block or call back): the prefix sync sends them to the other
	// gateway replicas, which Learn them (prefixsync.go).
	Remembered func(keys []uint64, endpoint string)

	// peers are the requests in flight the other gateway replicas
	// reported, by peer, each good for PeerLoadTTL (SetPeerLoad): the
	// load bounds and the least-loaded choice count them with this
	// replica's own, so that several replicas do not each fill a neuron
	// to the bound.
	peers map[string]peerLoad
	// PeerLoadTTL is how long a peer's report counts (0:
	// DefaultPeerLoadTTL).
	PeerLoadTTL time.Duration
}

type peerLoad struct {
	inflight map[string]int
	at       time.Time
}

// DefaultPeerLoadTTL is how long a peer gateway's report of its requests
// in flight counts when no newer one comes: twenty of the prefix sync's
// default intervals, so a peer that stopped (or whose batches stopped
// arriving) soon stops weighing on the bounds.
const DefaultPeerLoadTTL = 2 * time.Second

// DefaultPrefixEntries bounds the prefix table: 64 Ki keys of 2 KiB chunks
// stand for 128 MiB of distinct prompt text, more than the KV caches of a
// few dozen replicas hold, in a few MiB of memory.
const DefaultPrefixEntries = 64 << 10

// DefaultPrefixImbalance is the balancer's HitEpsilon unless configured:
// in the fleet simulator (Mooncake's trace, 8 replicas, at the load where
// least-load collapses) 0.5 gave 0.99× the prefix hits of an oracle that
// knows every cache, against 0.84× with 0.25, and a mean time to first
// token 0.84× as long, at a max/mean load of 1.6 against 1.4
// (docs/fleet.md).
const DefaultPrefixImbalance = 0.5

// DefaultEpsilon is the balancer's Epsilon: a prompt with no known prefix
// goes to its rendezvous choice only while that replica stays within the
// even share, ⌈(in flight + 1) ÷ replicas⌉. Consistent hashing with
// bounded loads usually allows 0.25; in the fleet simulator (Mooncake's
// trace, 8 replicas, where least-load collapses) the even share gave a
// mean time to first token of 1.24 s against 1.46 s with one gateway
// replica and 1.36 s against 1.65 s with two sharing their prefixes, at
// about the same prefix hits and a more even load (docs/fleet.md). Without
// the prefix sync, two replicas did worse with it (2.97 s against 2.21 s):
// the rendezvous choice is what they agree on when neither knows a prefix.
const DefaultEpsilon = 0

// NewBalancer returns a Balancer with DefaultEpsilon, and
// DefaultPrefixImbalance for a prefix hit.
func NewBalancer() *Balancer {
	return &Balancer{Epsilon: DefaultEpsilon, HitEpsilon: DefaultPrefixImbalance, inflight: map[string]int{}, down: map[string]time.Time{}, now: time.Now}
}

// Pick chooses among replicas, skipping those in exclude, and counts the
// request in flight on the chosen one until release is called. prefix is
// the request's PrefixKeys (nil: no affinity). ok is false when every
// replica is excluded.
func (b *Balancer) Pick(replicas []Replica, prefix []uint64, exclude []string) (r Replica, release func(), ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cands := make([]Replica, 0, len(replicas))
	var suspect []Replica
	now := b.now()
	b.dropStalePeers(now)
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
	switch {
	case len(prefix) == 0 || len(cands) == 1:
		chosen = b.leastLoaded(cands)
	default:
		chosen = b.prefixed(cands, prefix)
	}
	b.remember(prefix, chosen.Endpoint)
	if b.Remembered != nil && len(prefix) > 0 {
		b.Remembered(prefix, chosen.Endpoint)
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

// SetClock replaces the clock (the fleet simulator's virtual time).
func (b *Balancer) SetClock(now func() time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.now = now
}

// InFlight returns this replica's own requests in flight, by endpoint.
func (b *Balancer) InFlight() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.inflight)
}

// SetPeerLoad records the requests in flight another gateway replica
// reported (by endpoint; an endpoint left out has none), replacing its
// previous report.
func (b *Balancer) SetPeerLoad(peer string, inflight map[string]int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.peers == nil {
		b.peers = map[string]peerLoad{}
	}
	b.peers[peer] = peerLoad{inflight: inflight, at: b.now()}
}

// dropStalePeers forgets the peer reports older than PeerLoadTTL, once
// per Pick, so load need not look at the clock. b.mu is held.
func (b *Balancer) dropStalePeers(now time.Time) {
	if len(b.peers) == 0 {
		return
	}
	ttl := b.PeerLoadTTL
	if ttl <= 0 {
		ttl = DefaultPeerLoadTTL
	}
	for id, p := range b.peers {
		if now.Sub(p.at) > ttl {
			delete(b.peers, id)
		}
	}
}

// load is an endpoint's requests in flight from this replica and from
// the peers whose reports are still good (dropStalePeers). b.mu is held.
func (b *Balancer) load(ep string) int {
	n := b.inflight[ep]
	for _, p := range b.peers {
		n += p.inflight[ep]
	}
	return n
}

// MarkDown skips an endpoint for d while other replicas are available.
func (b *Balancer) MarkDown(endpoint string, d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down[endpoint] = b.now().Add(d)
}

func (b *Balancer) leastLoaded(cands []Replica) Replica {
	best, bestLoad := cands[0], b.load(cands[0].Endpoint)
	for _, c := range cands[1:] {
		if l := b.load(c.Endpoint); l < bestLoad {
			best, bestLoad = c, l
		}
	}
	return best
}

// bound is the most requests in flight a replica may have after taking
// this one and still be chosen for affinity, at imbalance eps. It rounds
// up, as consistent hashing with bounded loads does. Rounding down (with
// the even share, the average rounded up, as the floor) keeps the
// imbalance nearer to what eps says when many requests are in flight,
// but in the fleet simulator it lost a third of the prefix hits at light
// load (2× and 3× the Mooncake trace's rate), where a short queue costs
// less than a prefill.
func (b *Balancer) bound(cands []Replica, eps float64) int {
	total := 0
	for _, c := range cands {
		total += b.load(c.Endpoint)
	}
	return int(math.Ceil((1 + eps) * float64(total+1) / float64(len(cands))))
}

// prefixed is the replica that served the longest prefix of the request
// and is within the load bound; else the rendezvous choice of its first
// key.
func (b *Balancer) prefixed(cands []Replica, prefix []uint64) Replica {
	bound := b.bound(cands, max(b.Epsilon, b.HitEpsilon))
	best := -1
	for _, k := range prefix {
		ep, ok := b.lookup(k)
		if !ok {
			// A longer prefix was served only if this one was: the
			// keys of one request are remembered together.
			break
		}
		if i := slices.IndexFunc(cands, func(c Replica) bool { return c.Endpoint == ep }); i >= 0 && b.load(ep)+1 <= bound {
			best = i
		}
	}
	if best >= 0 {
		return cands[best]
	}
	return b.affine(cands, prefix[0], b.bound(cands, b.Epsilon))
}

func (b *Balancer) lookup(k uint64) (string, bool) {
	if ep, ok := b.recent[k]; ok {
		return ep, true
	}
	ep, ok := b.older[k]
	return ep, ok
}

// Learn records that another gateway replica sent the prefix keys to
// endpoint, as if this one had: its next request with that prefix goes
// there too, load permitting.
func (b *Balancer) Learn(keys []uint64, endpoint string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.remember(keys, endpoint)
}

// remember records that endpoint serves every prefix in keys.
func (b *Balancer) remember(keys []uint64, endpoint string) {
	if len(keys) == 0 {
		return
	}
	limit := b.PrefixEntries
	if limit <= 0 {
		limit = DefaultPrefixEntries
	}
	if b.recent == nil || len(b.recent)+len(keys) > limit/2 {
		b.older, b.recent = b.recent, make(map[uint64]string, min(limit/2, 1024))
	}
	for _, k := range keys {
		b.recent[k] = endpoint
	}
}

func (b *Balancer) affine(cands []Replica, affinity uint64, bound int) Replica {
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
		if b.load(s.r.Endpoint)+1 <= bound {
			return s.r
		}
	}
	return b.leastLoaded(cands)
}

// PrefixChunk is the prompt bytes each prefix key covers: about 512
// tokens of English, a handful of the engine's KV cache blocks.
const PrefixChunk = 2 << 10

// MaxPrefixKeys bounds the keys of one request (128 KiB of prompt): longer
// prompts share their routing fate with their first 128 KiB.
const MaxPrefixKeys = 64

// PrefixKeys hashes a prompt (the conversation's messages as the gateway
// serialises them) into its chain of prefix keys: key i covers the first
// i+1 whole chunks of PrefixChunk bytes, chained so that it stands for the
// whole prefix, not the chunk alone. A prompt shorter than one chunk has
// one key over all of it. The model is mixed in, so two models never share
// keys. Empty prompt: no keys.
func PrefixKeys(model string, prompt []byte) []uint64 {
	if len(prompt) == 0 {
		return nil
	}
	n := min(max(1, len(prompt)/PrefixChunk), MaxPrefixKeys)
	keys := make([]uint64, 0, n)
	var buf [8]byte
	h := xxhash.Sum64String(model)
	for i := range n {
		chunk := prompt[i*PrefixChunk : min(len(prompt), (i+1)*PrefixChunk)]
		d := xxhash.New()
		binary.LittleEndian.PutUint64(buf[:], h)
		_, _ = d.Write(buf[:])
		_, _ = d.Write(chunk)
		h = d.Sum64()
		keys = append(keys, h)
	}
	return keys
}
