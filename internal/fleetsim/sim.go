package fleetsim

import (
	"container/heap"
	"fmt"
	"math"
	"slices"
	"time"
)

// ModelSpec is one model of the simulated fleet.
type ModelSpec struct {
	// Key is the Model key, "<namespace>/<name>".
	Key  string
	Size ModelSize
	// Bytes is one replica's memory (ReplicaBytes).
	Bytes int64
	// Parallel is the engine's parallel sequences (continuous batching).
	Parallel int
	// ContextLength is the context per sequence.
	ContextLength int
	// KeepAlive is the Model's spec.keepAlive (cortex) or the policy's.
	KeepAlive time.Duration
	// MinReplicas and MaxReplicas bound the replicas.
	MinReplicas, MaxReplicas int
}

// Config is one simulated run.
type Config struct {
	// Class is the accelerator of every node, unless NodeClasses says.
	Class GPUClass
	// NodeClasses, when set, gives node i the class NodeClasses[i mod
	// len]: a fleet of mixed GPUs.
	NodeClasses []GPUClass
	// Nodes and GPUsPerNode size the fleet.
	Nodes, GPUsPerNode int
	Models             []ModelSpec
	Policy             Policy
	Router             Router
	// PollInterval is how often the manager polls every neuron (and so
	// learns that a load finished); DemandInterval how often the gateway
	// rewrites a waiting Model's demand signal; WaitingWindow how fresh the
	// manager needs it; APILatency the time from a write to the pass it
	// wakes.
	PollInterval, DemandInterval, WaitingWindow, APILatency float64
	// ColdStartTimeout is how long the gateway holds a request for a cold
	// Model before failing it.
	ColdStartTimeout float64
	// SampleEvery is the interval of the load-over-time samples; 0: none.
	SampleEvery float64
}

// Defaults fills the production defaults of the manager and gateway.
func (c *Config) Defaults() {
	if c.GPUsPerNode == 0 {
		c.GPUsPerNode = 1
	}
	if c.PollInterval == 0 {
		c.PollInterval = 5
	}
	if c.DemandInterval == 0 {
		c.DemandInterval = 5
	}
	if c.WaitingWindow == 0 {
		c.WaitingWindow = 15
	}
	if c.APILatency == 0 {
		c.APILatency = 0.05
	}
	if c.ColdStartTimeout == 0 {
		c.ColdStartTimeout = 600
	}
}

// epoch is the wall time of virtual second 0 (the planner reads times).
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func wall(t float64) time.Time { return epoch.Add(time.Duration(t * float64(time.Second))) }

type replicaState int

const (
	stLoading replicaState = iota
	stReady
)

// Sim is one run in progress.
type Sim struct {
	cfg    Config
	now    float64
	events eventQueue
	seq    uint64

	nodes  []*node
	models []*model
	byKey  map[string]*model

	trace *Trace
	reqs  []reqResult

	memByteSec float64
	heldBytes  int64
	lastAcct   float64
	loads      int
	evictions  int
	idleUnl    int
	coldBy     map[ColdCause]int
	drained    int
	samples    []Sample
}

type node struct {
	idx      int
	name     string
	class    GPUClass
	devTotal []int64
	devUsed  []int64
	// prefillAt is when each device's worker is free of the prompts
	// routed to it: the neuron's one worker per device runs every model's
	// prefill there in turn.
	prefillAt []float64
	replicas  []*replica
	// draining counts gone replicas still finishing requests; waiting are
	// loads to start once none is.
	draining int
	waiting  []func()
}

type model struct {
	idx      int
	spec     ModelSpec
	replicas []*replica
	held     []int // request indices waiting for a replica
	// The gateway's demand signal: the annotation's time (NaN: none),
	// when it was last written, and whether the throttle was reset by a
	// served wait.
	demandAt  float64
	lastWrite float64
	// lastEvicted is when the manager last evicted a replica of the model.
	lastEvicted float64
	// loaded is whether the model was ever loaded; gone says how its
	// last replica went (a cold start's cause).
	loaded bool
	gone   ColdCause
}

type replica struct {
	m        *model
	n        *node
	rates    Rates // the model's on the node's class
	devs     []int
	devBytes []int64
	bytes    int64
	state    replicaState
	// visible: the gateway routes to it.
	visible  bool
	loadedAt float64
	lastUsed float64
	inflight int // admitted or queued at the replica
	// served counts the requests the replica accepted, as a neuron
	// reports them (ModelStatus.Requests).
	served   int64
	active   int // in a decode slot
	queue    []*job
	cache    *blockCache
	gone     bool
	endpoint string
}

// firstTokenRouter is a Router told when each request's first token
// comes, as the gateway's stream relay tells its balancer (Lease.Started).
type firstTokenRouter interface{ firstToken(r *Request) }

type job struct {
	req     int
	rep     *replica
	release func()
	started bool
}

// reqResult is what happened to one request.
type reqResult struct {
	ttft      float64 // seconds; NaN until the first token, and if failed
	cold      bool
	failed    bool
	hitBlocks int
	blocks    int
	tpot      float64 // seconds per output token after the first; 0 if one
}

// Sample is the fleet at one instant.
type Sample struct {
	At float64
	// InFlight per replica, by "model@node".
	InFlight map[string]int
	// Replicas loaded or loading, and the bytes they hold.
	Replicas int
	Bytes    int64
}

type event struct {
	at  float64
	seq uint64
	fn  func()
}

type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// at schedules fn at time t (never in the past).
func (s *Sim) at(t float64, fn func()) {
	s.seq++
	heap.Push(&s.events, event{at: max(t, s.now), seq: s.seq, fn: fn})
}

// Run simulates the trace on the configured fleet.
func Run(cfg Config, trace *Trace) (*Result, error) {
	cfg.Defaults()
	if cfg.Nodes <= 0 || len(cfg.Models) == 0 || cfg.Policy == nil || cfg.Router == nil {
		return nil, fmt.Errorf("fleetsim: need nodes, models, a policy and a router")
	}
	s := &Sim{cfg: cfg, trace: trace, byKey: map[string]*model{}, coldBy: map[ColdCause]int{}}
	for i := range cfg.Nodes {
		n := &node{idx: i, name: fmt.Sprintf("node-%04d", i), class: cfg.Class}
		if len(cfg.NodeClasses) > 0 {
			n.class = cfg.NodeClasses[i%len(cfg.NodeClasses)]
		}
		for range cfg.GPUsPerNode {
			n.devTotal = append(n.devTotal, n.class.MemoryBytes)
			n.devUsed = append(n.devUsed, 0)
			n.prefillAt = append(n.prefillAt, 0)
		}
		s.nodes = append(s.nodes, n)
	}
	for i, spec := range cfg.Models {
		if spec.Parallel <= 0 || spec.Bytes <= 0 {
			return nil, fmt.Errorf("fleetsim: model %s needs parallel and bytes", spec.Key)
		}
		m := &model{idx: i, spec: spec, demandAt: math.NaN(), lastWrite: math.Inf(-1), lastEvicted: math.NaN()}
		s.models = append(s.models, m)
		s.byKey[spec.Key] = m
	}
	s.reqs = make([]reqResult, len(trace.Requests))
	for i, r := range trace.Requests {
		if r.Model < 0 || r.Model >= len(s.models) {
			return nil, fmt.Errorf("fleetsim: request %d asks for model %d of %d", i, r.Model, len(s.models))
		}
		s.reqs[i].ttft = math.NaN()
	}
	cfg.Policy.start(s)
	// Arrivals are fed one at a time, so the queue stays small.
	if len(trace.Requests) > 0 {
		s.at(trace.Requests[0].At, func() { s.arrive(0) })
	}
	if cfg.SampleEvery > 0 {
		var sample func()
		sample = func() {
			s.sample()
			if s.now < trace.Duration() {
				s.at(s.now+cfg.SampleEvery, sample)
			}
		}
		s.at(0, sample)
	}
	end := trace.Duration() + cfg.ColdStartTimeout + 3600
	for s.events.Len() > 0 {
		e := heap.Pop(&s.events).(event)
		if e.at > end {
			break
		}
		s.now = e.at
		e.fn()
	}
	s.account()
	return s.result(), nil
}

// Now is the virtual time, seconds.
func (s *Sim) Now() float64 { return s.now }

func (s *Sim) account() {
	s.memByteSec += float64(s.heldBytes) * (s.now - s.lastAcct)
	s.lastAcct = s.now
}

func (s *Sim) sample() {
	smp := Sample{At: s.now, InFlight: map[string]int{}}
	for _, n := range s.nodes {
		for _, r := range n.replicas {
			smp.Replicas++
			smp.Bytes += r.bytes
			smp.InFlight[r.m.spec.Key+"@"+n.name] = r.inflight
		}
	}
	s.samples = append(s.samples, smp)
}

func (s *Sim) arrive(i int) {
	if i+1 < len(s.trace.Requests) {
		s.at(s.trace.Requests[i+1].At, func() { s.arrive(i + 1) })
	}
	r := &s.trace.Requests[i]
	s.reqs[i].blocks = len(r.Blocks)
	m := s.models[r.Model]
	if reps := m.visible(); len(reps) > 0 {
		s.dispatch(i, reps)
		s.cfg.Policy.dispatched(s, m)
		return
	}
	s.reqs[i].cold = true
	switch {
	case len(m.held) > 0 || len(m.replicas) > 0:
		s.coldBy[ColdLoading]++
	case !m.loaded:
		s.coldBy[ColdFirst]++
	default:
		s.coldBy[m.gone]++
	}
	m.held = append(m.held, i)
	s.cfg.Policy.cold(s, m)
	s.at(r.At+s.cfg.ColdStartTimeout, func() {
		if k := slices.Index(m.held, i); k >= 0 {
			m.held = slices.Delete(m.held, k, k+1)
			s.reqs[i].failed = true
		}
	})
}

func (m *model) visible() []*replica {
	var out []*replica
	for _, r := range m.replicas {
		if r.visible {
			out = append(out, r)
		}
	}
	return out
}

func (s *Sim) dispatch(i int, reps []*replica) {
	rep, release := s.cfg.Router.pick(s, &s.trace.Requests[i], reps)
	j := &job{req: i, rep: rep, release: release}
	rep.inflight++
	rep.served++
	if rep.active < rep.m.spec.Parallel {
		s.start(j)
	} else {
		rep.queue = append(rep.queue, j)
	}
}

func (s *Sim) start(j *job) {
	rep := j.rep
	r := &s.trace.Requests[j.req]
	j.started = true
	rep.active++
	hit := rep.cache.prefix(r.Blocks)
	rep.cache.use(r.Blocks)
	s.reqs[j.req].hitBlocks = hit
	uncached := max(1, r.In-hit*BlockTokens)
	dev := rep.device()
	begin := max(s.now, rep.n.prefillAt[dev])
	prefillEnd := begin + float64(uncached)/rep.rates.PrefillTokPerSec
	rep.n.prefillAt[dev] = prefillEnd
	step := rep.decodeStep()
	first := prefillEnd + step
	done := first + float64(r.Out-1)*step
	rep.lastUsed = s.now
	s.at(first, func() {
		s.reqs[j.req].ttft = first - r.At
		if ft, ok := s.cfg.Router.(firstTokenRouter); ok {
			ft.firstToken(r)
		}
	})
	s.at(done, func() {
		if r.Out > 1 {
			s.reqs[j.req].tpot = (done - first) / float64(r.Out-1)
		}
		s.finish(j)
	})
}

// device is the replica's first device, whose worker runs its work.
func (rep *replica) device() int {
	if len(rep.devs) == 0 {
		return 0
	}
	return rep.devs[0]
}

// decodeStep is the time per output token of a request starting on rep:
// its own batch's step, plus one step of every other model decoding on
// the same device, which the device's worker runs in turn with it.
func (rep *replica) decodeStep() float64 {
	step := rep.rates.step(rep.active)
	dev := rep.device()
	for _, o := range rep.n.replicas {
		if o != rep && o.active > 0 && o.device() == dev {
			step += o.rates.step(o.active)
		}
	}
	return step
}

func (s *Sim) finish(j *job) {
	rep := j.rep
	rep.active--
	rep.inflight--
	rep.lastUsed = s.now
	if j.release != nil {
		j.release()
	}
	if len(rep.queue) > 0 {
		next := rep.queue[0]
		rep.queue = rep.queue[1:]
		s.start(next)
	}
	if rep.gone {
		if rep.inflight == 0 {
			s.release(rep)
			n := rep.n
			if n.draining--; n.draining == 0 {
				w := n.waiting
				n.waiting = nil
				for _, fn := range w {
					fn()
				}
			}
		}
		return
	}
	s.cfg.Policy.idle(s, rep)
}

// Load starts loading a replica of m on node n, devices devs holding
// devBytes each; it becomes Ready after the model's load time, counted
// from when the node's draining replicas are gone.
func (s *Sim) Load(m *model, n *node, devs []int, devBytes []int64) *replica {
	s.account()
	m.loaded = true
	rep := &replica{m: m, n: n, rates: RatesFor(n.class, m.spec.Size, m.spec.Bytes), devs: devs, devBytes: devBytes, state: stLoading, loadedAt: -1, lastUsed: -1,
		cache:    newBlockCache(m.spec.ContextLength * m.spec.Parallel / BlockTokens),
		endpoint: "http://" + n.name + ":8080"}
	for k, d := range devs {
		n.devUsed[d] += devBytes[k]
		rep.bytes += devBytes[k]
	}
	s.heldBytes += s.cfg.Policy.heldBytes(s, rep)
	n.replicas = append(n.replicas, rep)
	m.replicas = append(m.replicas, rep)
	s.loads++
	// The load starts once the memory it takes is free: a replica being
	// unloaded for it may still finish requests.
	s.afterDrain(n, func() {
		s.at(s.now+rep.rates.LoadSeconds, func() {
			if rep.gone {
				return
			}
			rep.state = stReady
			rep.loadedAt = s.now
			s.cfg.Policy.ready(s, rep)
		})
	})
	return rep
}

// Show makes a Ready replica routable and hands it the requests held for
// its model.
func (s *Sim) Show(rep *replica) {
	if rep.gone || rep.visible {
		return
	}
	rep.visible = true
	m := rep.m
	held := m.held
	m.held = nil
	if len(held) > 0 {
		m.demandAt = math.NaN()
		m.lastWrite = math.Inf(-1) // the wait was served: the next one signals at once
	}
	for _, i := range held {
		s.dispatch(i, m.visible())
	}
}

// Unload removes a replica. Like the neuron, it stops taking requests at
// once and lets those in flight finish (they were routed after the poll
// the manager planned on), then frees the memory; loads waiting for that
// memory start then (see afterDrain).
func (s *Sim) Unload(rep *replica, evicted bool) {
	if rep.gone {
		return
	}
	rep.gone = true
	rep.visible = false
	m := rep.m
	m.replicas = slices.DeleteFunc(m.replicas, func(r *replica) bool { return r == rep })
	if evicted {
		s.evictions++
		m.lastEvicted = s.now
		m.gone = ColdEvicted
	} else {
		s.idleUnl++
		m.gone = ColdIdle
	}
	if rep.inflight > 0 {
		s.drained += rep.inflight
		rep.n.draining++
		return
	}
	s.release(rep)
}

// release frees a gone replica's memory.
func (s *Sim) release(rep *replica) {
	s.account()
	s.heldBytes -= s.cfg.Policy.heldBytes(s, rep)
	n := rep.n
	for k, d := range rep.devs {
		n.devUsed[d] -= rep.devBytes[k]
	}
	n.replicas = slices.DeleteFunc(n.replicas, func(r *replica) bool { return r == rep })
}

// afterDrain runs fn once no replica of n is draining.
func (s *Sim) afterDrain(n *node, fn func()) {
	if n.draining == 0 {
		fn()
		return
	}
	n.waiting = append(n.waiting, fn)
}

// Free is the unused memory of device d of node n.
func (n *node) free(d int) int64 { return n.devTotal[d] - n.devUsed[d] }

func (n *node) holds(m *model) bool {
	return slices.ContainsFunc(n.replicas, func(r *replica) bool { return r.m == m })
}

// ColdCause is why a request found no replica.
type ColdCause string

// The causes of a cold start.
const (
	// ColdFirst: the model was never loaded before (unavoidable).
	ColdFirst ColdCause = "first"
	// ColdEvicted: its last replica was evicted for another model.
	ColdEvicted ColdCause = "evicted"
	// ColdIdle: its last replica was unloaded when idle.
	ColdIdle ColdCause = "idle"
	// ColdLoading: a replica was already loading (or another request was
	// already waiting) when it came.
	ColdLoading ColdCause = "loading"
)
