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

// Balancer picks a replica for each request: the one where its first
// token would come soonest, unless the replica that already holds its
// prompt's prefix is not much later.
//
// The wait is estimated in prompt bytes of prefill, the work a replica
// does before a request's first token: the prompt bytes routed to the
// replica's device whose first token has not come yet (Lease.Started: at
// a stream's first chunk, or at the 103 a neuron sends at a plain answer's
// first token; without one, when the answer ends), plus the part of this
// prompt the replica does not hold, plus one PrefixChunk for every request
// in flight on that device (each slows the decode steps it takes turns
// with), plus SlotWaitChunks chunks for every request of this Model
// beyond its parallel sequences there, which waits for one to free. The
// device is the replica's first GPU: the neuron runs every Model on one
// device with one worker, so the loads of Models sharing a GPU add up,
// and those of a Model on the node's other GPU do not; the sequences are
// the Model's own. On a fleet of mixed GPUs the
// wait is divided by the replica's prefill rate relative to the fastest
// candidate's, as each neuron reports it with its answers (SetSpeed), to
// the power SpeedExponent.
//
// A request's prefix is a chain of keys, one per chunk of its prompt
// (PrefixKeys): key i stands for chunks 0..i. The balancer remembers, for
// the keys of recent requests, which replica served them last (a table of
// about PrefixEntries keys): that replica's KV cache most likely still
// holds the prefix, so its wait counts only the rest of the prompt. The
// replica that served the longest prefix the request shares with an
// earlier one gets it while its wait is at most (1+HitEpsilon) × the
// soonest replica's: keeping a conversation, or a shared system prompt,
// where its cache is saves the next request's prefill too. A prefix
// nobody served yet goes by rendezvous hashing of its first key: every
// (key, replica) pair gets a score, and the first replica in score order
// whose wait is at most (1+Epsilon) × the soonest gets it, so requests
// that share a first chunk meet on one replica, across gateway replicas
// too, whenever that costs them nothing.
//
// In the fleet simulator (Mooncake's trace, 8 replicas) this gave a mean
// time to first token 0.62× that of bounding the requests in flight per
// replica (consistent hashing with bounded loads, which this balancer
// used before) at the load where least-load collapses, and a lower mean
// at every load, with a decode no slower, at the price of a less even
// count of requests in flight (docs/benchmarks.md).
type Balancer struct {
	// Epsilon is how much longer than the soonest replica's a new
	// prompt's wait may be at the replica its first key hashes to.
	Epsilon float64
	// HitEpsilon is how much longer than the soonest replica's a
	// request's wait may be at the replica that served its longest known
	// prefix.
	HitEpsilon float64

	mu sync.Mutex
	// loads are the requests this gateway replica routed and has not seen
	// finish, by load key: per device worker (deviceKey: requests in
	// flight over every Model there, and the prompt bytes whose first
	// token has not come) and per replica (replicaKey: the Model's
	// requests in flight, which its sequences serve).
	loads map[string]Load
	// speed is each replica's prefill rate as its neuron reports it, by
	// Model and endpoint (SetSpeed).
	speed map[speedKey]float64
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

	// peers are the loads the other gateway replicas reported, by peer,
	// each good for PeerLoadTTL (SetPeerLoad): the waits count them with
	// this replica's own, so that several gateway replicas do not each
	// send their requests to the same idle-looking neuron.
	peers map[string]peerLoad
	// PeerLoadTTL is how long a peer's report counts (0:
	// DefaultPeerLoadTTL).
	PeerLoadTTL time.Duration
}

// Load is what a gateway replica has routed to one device worker or
// replica and not seen finish: requests in flight, and the prompt bytes
// of those whose first token has not come (counted per device only).
type Load struct {
	InFlight int
	Prefill  int
}

type peerLoad struct {
	load map[string]Load
	at   time.Time
}

// Prompt is what the balancer knows of a request.
type Prompt struct {
	// Model is the Model's key: a replica's speed is per Model.
	Model string
	// Keys are the prompt's PrefixKeys (nil: no affinity).
	Keys []uint64
	// Bytes is the prompt's size, in the bytes PrefixKeys hashes.
	Bytes int
	// Parallel is how many sequences a replica of the Model runs at once
	// (0: unknown, no wait for a sequence is counted).
	Parallel int
}

// DefaultPeerLoadTTL is how long a peer gateway's report of its load
// counts when no newer one comes: twenty of the prefix sync's default
// intervals, so a peer that stopped (or whose batches stopped arriving)
// soon stops weighing on the choice.
const DefaultPeerLoadTTL = 2 * time.Second

// DefaultPrefixEntries bounds the prefix table: 64 Ki keys of 2 KiB chunks
// stand for 128 MiB of distinct prompt text, more than the KV caches of a
// few dozen replicas hold, in a few MiB of memory.
const DefaultPrefixEntries = 64 << 10

// DefaultPrefixImbalance is the balancer's HitEpsilon unless configured:
// the replica that holds a request's prefix gets it while the request
// would wait there at most 2.5× as long as at the soonest replica. In the
// fleet simulator (Mooncake's trace, 8 replicas, 2× to 6× its rate) 1.5
// was within 5 % of the lowest mean time to first token of 0.5, 1, 1.5, 2
// and 3 at every load, which no other setting was (1 lost 25 % at 6×, 2
// lost 10 % at 6×, 3 lost 8 % at 4×), and had the lowest p99 from 4× on
// (docs/benchmarks.md).
const DefaultPrefixImbalance = 1.5

// DefaultEpsilon is the balancer's Epsilon: a prompt with no known prefix
// goes to its rendezvous choice only while no replica would serve it
// sooner, as it saves nothing there yet; among replicas that would serve
// it as soon, the rendezvous order decides, so two gateway replicas
// agree. In the fleet simulator (2× to 6× the trace's rate) 0.25, 0.5 or
// 1 gave a lower mean time to first token only at 4×, by 1 % (0.485 s
// with 0.25 against 0.489 s), and 0.25 took 6× from 2.22 s to 2.72 s.
const DefaultEpsilon = 0

// SlotWaitChunks is what the balancer counts, in PrefixChunks of
// prefill, for each request a replica holds beyond its parallel
// sequences: it waits for one of them to finish its answer.
const SlotWaitChunks = 4

// NewBalancer returns a Balancer with DefaultEpsilon, and
// DefaultPrefixImbalance for a prefix hit.
func NewBalancer() *Balancer {
	return &Balancer{Epsilon: DefaultEpsilon, HitEpsilon: DefaultPrefixImbalance, loads: map[string]Load{},
		down: map[string]time.Time{}, now: time.Now}
}

// deviceKey is the load key of the neuron worker that runs r: one per
// device (the replica's first), which takes every Model there in turn,
// so their prompts and decode steps delay each other, and Models on the
// node's other devices do not. A replica whose devices are unknown shares
// one key with every such replica of its neuron.
func deviceKey(r Replica) string { return r.Endpoint + "#" + r.Device }

// replicaKey is the load key of model's replica on r: its requests in
// flight share that replica's parallel sequences.
func replicaKey(model string, r Replica) string { return r.Endpoint + "@" + model }

// Lease is a request's place on the replica Pick chose. Its methods may
// be called on a nil Lease and more than once.
type Lease struct {
	b       *Balancer
	dev     string // deviceKey
	rep     string // replicaKey
	prefill int
	started bool // under b.mu
	done    bool // under b.mu
}

// Started says the replica sent the request's first token: its prompt no
// longer waits for prefill there.
func (l *Lease) Started() {
	if l == nil {
		return
	}
	l.b.mu.Lock()
	defer l.b.mu.Unlock()
	l.startLocked()
}

func (l *Lease) startLocked() {
	if l.started {
		return
	}
	l.started = true
	l.b.add(l.dev, 0, -l.prefill)
}

// add changes the load under key, forgetting it at zero. b.mu is held.
func (b *Balancer) add(key string, inflight, prefill int) {
	l := b.loads[key]
	l.InFlight += inflight
	l.Prefill += prefill
	if l.InFlight <= 0 && l.Prefill <= 0 {
		delete(b.loads, key)
		return
	}
	b.loads[key] = l
}

// Release ends the request.
func (l *Lease) Release() {
	if l == nil {
		return
	}
	l.b.mu.Lock()
	defer l.b.mu.Unlock()
	if l.done {
		return
	}
	l.done = true
	l.startLocked()
	l.b.add(l.dev, -1, 0)
	l.b.add(l.rep, -1, 0)
}

// Pick chooses among replicas, skipping those in exclude, and counts the
// request on the chosen one until its Lease is released. ok is false when
// every replica is excluded.
func (b *Balancer) Pick(replicas []Replica, p Prompt, exclude []string) (r Replica, lease *Lease, ok bool) {
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
	chosen, uncached := b.choose(cands, p)
	b.remember(p.Keys, chosen.Endpoint)
	if b.Remembered != nil && len(p.Keys) > 0 {
		b.Remembered(p.Keys, chosen.Endpoint)
	}
	lease = &Lease{b: b, dev: deviceKey(chosen), rep: replicaKey(p.Model, chosen), prefill: uncached}
	b.add(lease.dev, 1, uncached)
	b.add(lease.rep, 1, 0)
	return chosen, lease, true
}

type speedKey struct{ model, endpoint string }

// SpeedExponent is the power of a replica's relative prefill rate that
// divides its wait: a replica whose neuron measured half the fastest
// one's rate counts each byte of its wait as 2^0.25 ≈ 1.19 bytes. At light
// load only the order matters, and any power sends a prompt to the faster
// of two idle replicas. Under load, in the fleet simulator (replicas on
// H100 with L4 or A10, which prefill about 8× slower), the whole ratio
// moved conversations off the slow replicas and queued them on the fast
// ones: at twice the trace's rate it was slower than ignoring speed (3.26 s
// mean against 2.29 s); 0.25 was faster than ignoring it at every load
// below the fleet's capacity on all three mixes tried (docs/fleet.md).
const SpeedExponent = 0.25

// SpeedTolerance is the least rate, relative to the fastest candidate's,
// above which a replica counts as fast as the fastest: one kind of GPU
// measures different rates on different prompts (longer ones prefill
// slower), and that noise must not take new prompts away from their
// rendezvous replica or move conversations. Kinds of GPU that matter
// differ more: an L4 or A10 prefills about 8× slower than an H100.
const SpeedTolerance = 0.5

// minRelativeSpeed bounds a replica's relative speed below: a CPU
// replica beside an H100 is about 10^-3 as fast, 0.18 after the exponent.
const minRelativeSpeed = 0.01

// maxSpeeds bounds the speeds remembered: endpoints come and go with
// their pods; past the bound the table starts again.
const maxSpeeds = 1 << 14

// SetSpeed records the prefill rate a replica's neuron reported for a
// Model (prompt tokens per second, as its engine measured them); 0 or less
// forgets it.
func (b *Balancer) SetSpeed(model, endpoint string, tokensPerSecond float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := speedKey{model, endpoint}
	if !(tokensPerSecond > 0) || math.IsInf(tokensPerSecond, 0) {
		delete(b.speed, k)
		return
	}
	if b.speed == nil || len(b.speed) >= maxSpeeds {
		b.speed = map[speedKey]float64{}
	}
	b.speed[k] = tokensPerSecond
}

// SetClock replaces the clock (the fleet simulator's virtual time).
func (b *Balancer) SetClock(now func() time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.now = now
}

// Loads returns this replica's own load, by load key (deviceKey and
// replicaKey).
func (b *Balancer) Loads() map[string]Load {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.loads)
}

// SetPeerLoad records the load another gateway replica reported (by load
// key; a key left out has none), replacing its previous report.
func (b *Balancer) SetPeerLoad(peer string, load map[string]Load) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.peers == nil {
		b.peers = map[string]peerLoad{}
	}
	b.peers[peer] = peerLoad{load: load, at: b.now()}
}

// PeerInFlight is how many requests of model the other gateway replicas
// reported in flight to replica r, in their reports still good.
func (b *Balancer) PeerInFlight(model string, r Replica) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.peers) == 0 {
		return 0
	}
	b.dropStalePeers(b.now())
	k, n := replicaKey(model, r), 0
	for _, p := range b.peers {
		n += p.load[k].InFlight
	}
	return n
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

// load is the load under key from this replica and from the peers whose
// reports are still good (dropStalePeers). b.mu is held.
func (b *Balancer) load(key string) Load {
	l := b.loads[key]
	for _, p := range b.peers {
		pl := p.load[key]
		l.InFlight += pl.InFlight
		l.Prefill += pl.Prefill
	}
	return l
}

// MarkDown skips an endpoint for d while other replicas are available.
func (b *Balancer) MarkDown(endpoint string, d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down[endpoint] = b.now().Add(d)
}

// candidate is a replica with the request's estimated wait there.
type candidate struct {
	r        Replica
	load     Load
	uncached int // prompt bytes the replica would prefill
	// wait is the prompt bytes of prefill before the first token, over
	// the replica's relative speed (speeds).
	wait float64
}

// choose is the replica for p among cands (not empty), and the prompt
// bytes it would prefill. b.mu is held.
func (b *Balancer) choose(cands []Replica, p Prompt) (Replica, int) {
	// depth[endpoint]: how many of p's keys the replica served last, the
	// deepest first; home: the candidate that served the longest prefix.
	var depth map[string]int
	home := ""
	for i, k := range p.Keys {
		ep, ok := b.lookup(k)
		if !ok {
			// A longer prefix was served only if this one was: the
			// keys of one request are remembered together.
			break
		}
		if depth == nil {
			depth = map[string]int{}
		}
		depth[ep] = i + 1
		if slices.ContainsFunc(cands, func(c Replica) bool { return c.Endpoint == ep }) {
			home = ep
		}
	}
	slowdown := b.speeds(cands, p.Model)
	cs := make([]candidate, len(cands))
	best := 0
	for i, r := range cands {
		c := candidate{r: r, load: b.load(deviceKey(r))}
		c.uncached = max(1, p.Bytes-depth[r.Endpoint]*PrefixChunk)
		wait := c.load.Prefill + c.uncached + PrefixChunk*c.load.InFlight
		if p.Parallel > 0 {
			if over := b.load(replicaKey(p.Model, r)).InFlight + 1 - p.Parallel; over > 0 {
				wait += over * SlotWaitChunks * PrefixChunk
			}
		}
		c.wait = float64(wait) / slowdown[i]
		cs[i] = c
		if c.wait < cs[best].wait || (c.wait == cs[best].wait && c.load.InFlight < cs[best].load.InFlight) {
			best = i
		}
	}
	within := func(c candidate, eps float64) bool {
		return c.wait <= (1+eps)*cs[best].wait
	}
	if home != "" {
		i := slices.IndexFunc(cs, func(c candidate) bool { return c.r.Endpoint == home })
		if within(cs[i], b.HitEpsilon) {
			return cs[i].r, cs[i].uncached
		}
	} else if len(p.Keys) > 0 && len(cs) > 1 {
		for _, i := range b.rendezvous(cands, p.Keys[0]) {
			if within(cs[i], b.Epsilon) {
				return cs[i].r, cs[i].uncached
			}
		}
	}
	return cs[best].r, cs[best].uncached
}

// speeds are the candidates' relative prefill rates for model, in order,
// each the reported rate over the fastest candidate's, to the power
// SpeedExponent; 1 for a replica within SpeedTolerance of the fastest,
// and for one whose neuron reported none yet (it is tried, and its
// answer tells). b.mu is held.
func (b *Balancer) speeds(cands []Replica, model string) []float64 {
	out := make([]float64, len(cands))
	var fastest float64
	for i, c := range cands {
		out[i] = b.speed[speedKey{model, c.Endpoint}]
		fastest = max(fastest, out[i])
	}
	for i, v := range out {
		if v == 0 || v > fastest*SpeedTolerance {
			out[i] = 1
		} else {
			// Bounded below, so that a nonsense rate from one neuron
			// cannot make every other replica's wait infinite.
			out[i] = max(math.Pow(v/fastest, SpeedExponent), minRelativeSpeed)
		}
	}
	return out
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

// rendezvous is the indices of cands in the order of their score for
// key: highest first.
func (b *Balancer) rendezvous(cands []Replica, key uint64) []int {
	type scored struct {
		i     int
		score uint64
	}
	order := make([]scored, len(cands))
	// The hash is fixed (not seeded per process), so every gateway replica
	// sends a conversation to the same neuron.
	buf := make([]byte, 8, 64)
	binary.LittleEndian.PutUint64(buf, key)
	for i, c := range cands {
		order[i] = scored{i, xxhash.Sum64(append(buf[:8], c.Node...))}
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
	out := make([]int, len(order))
	for i, s := range order {
		out[i] = s.i
	}
	return out
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
