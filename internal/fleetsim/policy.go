package fleetsim

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// Policy decides what is loaded where. Cortex drives the real planner;
// the others are the baselines.
type Policy interface {
	// Name is the policy's name in tables.
	Name() string
	start(s *Sim)
	// cold: a request found no routable replica of m and is held.
	cold(s *Sim, m *model)
	// dispatched: a request of m was routed to a replica.
	dispatched(s *Sim, m *model)
	// ready: a load finished.
	ready(s *Sim, rep *replica)
	// idle: a request finished on rep.
	idle(s *Sim, rep *replica)
	// heldBytes is the memory rep keeps from other models.
	heldBytes(s *Sim, rep *replica) int64
}

// onDemand is the baselines' loader: it acts on the live fleet at once
// (no poll, no planning cadence), which favours them over cortex's
// manager, which learns of a finished load at its next poll.
type onDemand struct {
	name string
	// keepAlive unloads a replica idle this long (Inf: never).
	keepAlive float64
	// evict lets a cold model evict idle replicas, least recently used
	// first.
	evict bool
	// wholeGPU gives every replica a device of its own.
	wholeGPU bool
}

// OllamaStyle is Ollama's policy run over a fleet: a fixed keep-alive
// (Ollama's default is 5 minutes), and a cold model evicts the least
// recently used idle models when memory is full.
func OllamaStyle(keepAlive time.Duration) Policy {
	return &onDemand{name: "ollama-style", keepAlive: keepAlive.Seconds(), evict: true}
}

// LRU keeps everything until the memory is needed, then evicts the least
// recently used idle replica.
func LRU() Policy { return &onDemand{name: "lru", keepAlive: math.Inf(1), evict: true} }

// Dedicated gives every replica a GPU of its own and scales a model to
// zero after scaleDownDelay without requests (KubeAI-style); a cold model
// waits for a free GPU and never evicts.
func Dedicated(scaleDownDelay time.Duration) Policy {
	return &onDemand{name: "dedicated", keepAlive: scaleDownDelay.Seconds(), wholeGPU: true}
}

func (p *onDemand) Name() string { return p.name }

func (p *onDemand) start(s *Sim) {
	var tick func()
	tick = func() {
		p.tick(s)
		if s.now < s.trace.Duration()+s.cfg.ColdStartTimeout {
			s.at(s.now+1, tick)
		}
	}
	s.at(1, tick)
}

func (p *onDemand) tick(s *Sim) {
	if !math.IsInf(p.keepAlive, 1) {
		for _, n := range s.nodes {
			for _, r := range slices.Clone(n.replicas) {
				if r.state == stReady && r.inflight == 0 && s.now-max(r.lastUsed, r.loadedAt) >= p.keepAlive &&
					len(r.m.replicas) > r.m.spec.MinReplicas {
					s.Unload(r, false)
				}
			}
		}
	}
	for _, m := range s.models {
		if len(m.held) > 0 {
			p.cold(s, m)
		}
	}
}

func (p *onDemand) cold(s *Sim, m *model) {
	if len(m.replicas) > 0 {
		return // loading (or routable and about to take the request)
	}
	p.place(s, m, p.evict)
}

func (p *onDemand) dispatched(s *Sim, m *model) {
	if len(m.replicas) >= max(1, m.spec.MaxReplicas) {
		return
	}
	for _, r := range m.replicas {
		if r.state != stReady || r.inflight < r.m.spec.Parallel {
			return
		}
	}
	p.place(s, m, false)
}

func (p *onDemand) ready(s *Sim, rep *replica) { s.Show(rep) }
func (p *onDemand) idle(*Sim, *replica)        {}

func (p *onDemand) heldBytes(s *Sim, rep *replica) int64 {
	if p.wholeGPU {
		return rep.n.class.MemoryBytes
	}
	return rep.bytes
}

// place loads a replica of m: on the device that fits it with the most
// room (an empty one, for wholeGPU), else, when allowed, after evicting
// the least recently used idle replicas of one device.
func (p *onDemand) place(s *Sim, m *model, evict bool) bool {
	need := m.spec.Bytes
	bestN, bestD := -1, -1
	var bestFree int64 = -1
	for _, n := range s.nodes {
		if n.holds(m) {
			continue
		}
		for d := range n.devTotal {
			f := n.free(d)
			if p.wholeGPU && n.devUsed[d] > 0 {
				continue
			}
			if f >= need && f > bestFree {
				bestN, bestD, bestFree = n.idx, d, f
			}
		}
	}
	if bestN >= 0 {
		s.Load(m, s.nodes[bestN], []int{bestD}, []int64{need})
		return true
	}
	if !evict {
		return false
	}
	var idle []*replica
	for _, n := range s.nodes {
		if n.holds(m) {
			continue
		}
		for _, r := range n.replicas {
			if r.state == stReady && r.inflight == 0 && len(r.m.replicas) > r.m.spec.MinReplicas {
				idle = append(idle, r)
			}
		}
	}
	slices.SortFunc(idle, func(a, b *replica) int {
		return cmp.Or(cmp.Compare(max(a.lastUsed, a.loadedAt), max(b.lastUsed, b.loadedAt)),
			cmp.Compare(a.n.idx, b.n.idx))
	})
	freed := map[[2]int]int64{}
	for _, r := range idle {
		if len(r.devs) != 1 {
			continue
		}
		k := [2]int{r.n.idx, r.devs[0]}
		freed[k] += r.bytes
		if r.n.free(k[1])+freed[k] < need {
			continue
		}
		// Evict this device's victims, oldest first, until it fits.
		n := r.n
		for _, v := range idle {
			if n.free(k[1]) >= need {
				break
			}
			if v.n == n && len(v.devs) == 1 && v.devs[0] == k[1] {
				s.Unload(v, true)
			}
		}
		s.Load(m, n, []int{k[1]}, []int64{need})
		return true
	}
	return false
}

// static holds each model's replicas.min replicas, loaded before the run,
// and never changes them: the routing benchmark's fleet.
type static struct{}

// Static preloads replicas.min replicas of every model, one per node, each
// on the node's first GPU with room (the first GPU if none has).
func Static() Policy { return static{} }

func (static) Name() string { return "static" }
func (static) start(s *Sim) {
	next := 0
	for _, m := range s.models {
		for range m.spec.MinReplicas {
			n := s.nodes[next%len(s.nodes)]
			next++
			dev := 0
			for d := range n.devTotal {
				if n.devTotal[d]-n.devUsed[d] >= m.spec.Bytes {
					dev = d
					break
				}
			}
			rep := s.Load(m, n, []int{dev}, []int64{m.spec.Bytes})
			rep.state, rep.loadedAt = stReady, 0
			s.Show(rep)
		}
	}
}
func (static) cold(*Sim, *model)                  {}
func (static) dispatched(*Sim, *model)            {}
func (static) ready(*Sim, *replica)               {}
func (static) idle(*Sim, *replica)                {}
func (static) heldBytes(_ *Sim, r *replica) int64 { return r.bytes }
