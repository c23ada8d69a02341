package fleetsim

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/helexa-ai/cortex/internal/gateway"
)

// Router picks a replica for a request among the routable ones.
type Router interface {
	// Name is the router's name in tables.
	Name() string
	// pick returns the replica and what to call when the request is done.
	pick(s *Sim, r *Request, reps []*replica) (*replica, func())
}

// cortexRouter is the gateway's own replica choice: the real Balancer,
// with the prefix keys the gateway computes (PrefixKeys: one per 2 KiB
// chunk of the conversation, about 512 tokens, chained), here one per
// block of the trace (512 tokens; Mooncake's block ids already stand for
// the whole prefix up to them), up to the gateway's MaxPrefixKeys.
type cortexRouter struct {
	b    *gateway.Balancer
	name string
	// leases are the requests routed whose first token has not come.
	leases map[*Request]*gateway.Lease
}

// CortexRouter is the gateway's balancer as configured by default.
func CortexRouter() Router { return &cortexRouter{b: gateway.NewBalancer(), name: "cortex"} }

// CortexRouterWith is the gateway's balancer with --prefix-imbalance set.
func CortexRouterWith(prefixImbalance float64) Router {
	b := gateway.NewBalancer()
	b.HitEpsilon = prefixImbalance
	return &cortexRouter{b: b, name: fmt.Sprintf("cortex, prefix imbalance %g", prefixImbalance)}
}

func (c *cortexRouter) Name() string { return c.name }

func (c *cortexRouter) pick(s *Sim, r *Request, reps []*replica) (*replica, func()) {
	if c.leases == nil {
		c.leases = map[*Request]*gateway.Lease{}
	}
	return pickWith(c.b, c.leases, s, r, reps)
}

func (c *cortexRouter) firstToken(r *Request) { startLease(c.leases, r) }

// pickWith routes r by b as the gateway does: the prompt's keys and size
// (4 bytes a token, as PrefixChunk's 2 KiB stand for a 512-token block),
// the Model's parallel sequences, and each replica's prefill rate once it
// answered; the lease is kept in leases until
// the first token (firstToken), as the gateway's stream relay tells its
// balancer.
func pickWith(b *gateway.Balancer, leases map[*Request]*gateway.Lease, s *Sim, r *Request, reps []*replica) (*replica, func()) {
	cands := make([]gateway.Replica, len(reps))
	for i, rep := range reps {
		cands[i] = gateway.Replica{Node: rep.n.name, Endpoint: rep.endpoint, Device: strconv.Itoa(rep.device())}
	}
	spec := s.models[r.Model].spec
	p := gateway.Prompt{Model: spec.Key, Keys: prefixKeys(spec.Key, r.Blocks), Bytes: r.In * gateway.PrefixChunk / BlockTokens, Parallel: spec.Parallel}
	chosen, lease, ok := b.Pick(cands, p, nil)
	if !ok {
		return reps[0], nil
	}
	for _, rep := range reps {
		if rep.endpoint == chosen.Endpoint {
			// The neuron's answer carries the prefill rate its engine
			// measured, which the gateway hands its balancer.
			b.SetSpeed(spec.Key, rep.endpoint, rep.rates.PrefillTokPerSec)
			leases[r] = lease
			return rep, func() {
				delete(leases, r)
				lease.Release()
			}
		}
	}
	lease.Release()
	return reps[0], nil
}

// startLease tells r's balancer that its first token came.
func startLease(leases map[*Request]*gateway.Lease, r *Request) {
	if l, ok := leases[r]; ok {
		l.Started()
		delete(leases, r)
	}
}

// prefixKeys are the gateway's prefix keys of a request made of blocks.
func prefixKeys(model string, blocks []uint64) []uint64 {
	if len(blocks) == 0 {
		return nil
	}
	seed := xxhash.Sum64String(model)
	keys := make([]uint64, min(len(blocks), gateway.MaxPrefixKeys))
	var b [16]byte
	for i := range keys {
		binary.LittleEndian.PutUint64(b[:8], seed)
		binary.LittleEndian.PutUint64(b[8:], blocks[i])
		keys[i] = xxhash.Sum64(b[:])
	}
	return keys
}

func blockBytes(ids []uint64) []byte {
	b := make([]byte, 0, 8*len(ids))
	for _, id := range ids {
		b = binary.LittleEndian.AppendUint64(b, id)
	}
	return b
}

type roundRobin struct{ next int }

// RoundRobin takes the replicas in turn.
func RoundRobin() Router { return &roundRobin{} }

func (*roundRobin) Name() string { return "round-robin" }
func (rr *roundRobin) pick(_ *Sim, _ *Request, reps []*replica) (*replica, func()) {
	rr.next++
	return reps[rr.next%len(reps)], nil
}

type leastLoad struct{}

// LeastLoad takes the replica with the fewest requests in flight.
func LeastLoad() Router { return leastLoad{} }

func (leastLoad) Name() string { return "least-load" }
func (leastLoad) pick(_ *Sim, _ *Request, reps []*replica) (*replica, func()) {
	best := reps[0]
	for _, r := range reps[1:] {
		if r.inflight < best.inflight {
			best = r
		}
	}
	return best, nil
}

// chwbl is consistent hashing with bounded loads as KubeAI describes its
// prefix-hash strategy: the key is the prompt's first 100 characters, each
// replica has 256 points on a ring, and the request goes to the first
// replica clockwise from the key whose load stays within 1.25 × the mean.
type chwbl struct {
	ring []ringPoint
	for_ []string // the endpoints the ring was built for
}

type ringPoint struct {
	h        uint64
	endpoint string
}

// CHWBL is KubeAI's prefix-hash router (100 characters, load factor 1.25,
// 256 virtual replicas).
func CHWBL() Router { return &chwbl{} }

func (*chwbl) Name() string { return "chwbl" }

func (c *chwbl) pick(s *Sim, r *Request, reps []*replica) (*replica, func()) {
	eps := make([]string, len(reps))
	for i, rep := range reps {
		eps[i] = rep.endpoint
	}
	if !slices.Equal(eps, c.for_) {
		c.for_ = eps
		c.ring = c.ring[:0]
		for _, ep := range eps {
			for v := range 256 {
				var b [8]byte
				binary.LittleEndian.PutUint64(b[:], uint64(v))
				c.ring = append(c.ring, ringPoint{xxhash.Sum64(append([]byte(ep), b[:]...)), ep})
			}
		}
		slices.SortFunc(c.ring, func(a, b ringPoint) int { return cmp.Compare(a.h, b.h) })
	}
	if len(r.Blocks) == 0 {
		return leastLoad{}.pick(s, r, reps)
	}
	// 100 characters are about 25 tokens: well inside the first block.
	key := xxhash.Sum64(blockBytes(r.Blocks[:1]))
	total := 0
	byEp := map[string]*replica{}
	for _, rep := range reps {
		total += rep.inflight
		byEp[rep.endpoint] = rep
	}
	bound := int(math.Ceil(1.25 * float64(total+1) / float64(len(reps))))
	i, _ := slices.BinarySearchFunc(c.ring, key, func(p ringPoint, k uint64) int { return cmp.Compare(p.h, k) })
	for k := range c.ring {
		p := c.ring[(i+k)%len(c.ring)]
		if rep := byEp[p.endpoint]; rep.inflight+1 <= bound {
			return rep, nil
		}
	}
	return leastLoad{}.pick(s, r, reps)
}

type oracle struct{}

// Oracle knows every replica's cached blocks and queue exactly and picks
// the replica whose first token would come soonest: the prefill work
// queued there plus this prompt's uncached part; ties go to the longer
// cached prefix, then the fewer requests in flight.
func Oracle() Router { return oracle{} }

func (oracle) Name() string { return "oracle" }
func (oracle) pick(s *Sim, r *Request, reps []*replica) (*replica, func()) {
	type cand struct {
		rep  *replica
		eta  float64
		hits int
	}
	var best cand
	for i, rep := range reps {
		hits := rep.cache.prefix(r.Blocks)
		rate := rep.rates.PrefillTokPerSec
		eta := max(0, rep.n.prefillAt[rep.device()]-s.now) + float64(max(1, r.In-hits*BlockTokens))/rate
		for _, q := range rep.queue {
			qr := &s.trace.Requests[q.req]
			eta += float64(max(1, qr.In-rep.cache.prefix(qr.Blocks)*BlockTokens)) / rate
		}
		// A full replica makes the request wait for a slot as well.
		if rep.active >= rep.m.spec.Parallel {
			eta += rep.rates.step(rep.active) * 64
		}
		c := cand{rep, eta, hits}
		if i == 0 || c.eta < best.eta || (c.eta == best.eta && (c.hits > best.hits || (c.hits == best.hits && c.rep.inflight < best.rep.inflight))) {
			best = c
		}
	}
	return best.rep, nil
}

// cortexGateways is several gateway replicas behind one Service: each has
// its own Balancer (its own requests in flight and prefix table), and the
// requests are spread over them as a Service spreads connections, by a
// hash of the request. With share, what each replica remembers reaches
// the others' tables at the next tick of the prefix sync
// (gateway.DefaultPeerSyncInterval), and each replica's requests in flight
// as they were at the last tick count in the others' bounds
// (Balancer.SetPeerLoad), as the gateway's prefix sync delivers them
// (internal/gateway/prefixsync.go); the balancers run on the simulator's
// clock.
type cortexGateways struct {
	bs    []*gateway.Balancer
	name  string
	share bool
	sim   *Sim
	n     uint64 // requests routed
	// tick is the last sync tick whose loads were delivered.
	tick float64
	// leases are the requests routed whose first token has not come.
	leases map[*Request]*gateway.Lease
}

// CortexGateways is n gateway replicas with the default balancer; share
// turns the prefix sync on.
func CortexGateways(n int, share bool) Router {
	c := &cortexGateways{share: share, name: fmt.Sprintf("cortex, %d gateways", n)}
	if n == 1 {
		c.name = "cortex, 1 gateway"
	}
	if share {
		c.name += ", prefix sync"
	}
	for i := range n {
		b := gateway.NewBalancer()
		b.SetClock(c.clock)
		if share {
			b.Remembered = func(keys []uint64, endpoint string) { c.remembered(i, keys, endpoint) }
		}
		c.bs = append(c.bs, b)
	}
	c.tick = -1
	return c
}

func (c *cortexGateways) Name() string { return c.name }

func (c *cortexGateways) remembered(from int, keys []uint64, endpoint string) {
	s := c.sim
	every := gateway.DefaultPeerSyncInterval.Seconds()
	at := (math.Floor(s.now/every) + 1) * every
	for i, b := range c.bs {
		if i != from {
			s.at(at, func() { b.Learn(keys, endpoint) })
		}
	}
}

func (c *cortexGateways) clock() time.Time {
	if c.sim == nil {
		return time.Unix(0, 0)
	}
	return time.Unix(0, 0).Add(time.Duration(c.sim.now * float64(time.Second)))
}

// deliverLoads hands every replica the others' loads once per sync tick,
// taken at the first request after the tick.
func (c *cortexGateways) deliverLoads() {
	tick := math.Floor(c.sim.now / gateway.DefaultPeerSyncInterval.Seconds())
	if tick == c.tick {
		return
	}
	c.tick = tick
	loads := make([]map[string]gateway.Load, len(c.bs))
	for i, b := range c.bs {
		loads[i] = b.Loads()
	}
	for i, b := range c.bs {
		for j := range c.bs {
			if j != i {
				b.SetPeerLoad(strconv.Itoa(j), loads[j])
			}
		}
	}
}

func (c *cortexGateways) pick(s *Sim, r *Request, reps []*replica) (*replica, func()) {
	c.sim = s
	if c.share {
		c.deliverLoads()
	}
	var b [8]byte
	c.n++
	binary.LittleEndian.PutUint64(b[:], c.n)
	g := c.bs[xxhash.Sum64(b[:])%uint64(len(c.bs))]
	if c.leases == nil {
		c.leases = map[*Request]*gateway.Lease{}
	}
	return pickWith(g, c.leases, s, r, reps)
}

func (c *cortexGateways) firstToken(r *Request) { startLease(c.leases, r) }
