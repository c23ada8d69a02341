package fleetsim

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/helexa-ai/cortex/controllers"
	"github.com/helexa-ai/cortex/internal/placement"
)

// cortexPolicy is the manager as it runs: every PollInterval it polls the
// neurons (a snapshot of what each holds, its requests in flight and last
// use), runs a pass of the real planner (placement.Compute) over the
// snapshot and carries out the plan, unloads before loads; a replica
// becomes routable at the poll that finds it Ready. The gateway's demand
// signal (written on a cold request, rewritten every DemandInterval while
// requests wait) wakes a pass after APILatency, and the planner's Waiting
// flag comes from placement.Waiting, the manager's own rule.
type cortexPolicy struct {
	// obs is the manager's view per node: what the last poll saw, with
	// its own loads and unloads applied since.
	obs [][]observed
	// nextPass is when a pass is already scheduled (coalescing wakes).
	nextPass float64
	passes   int
	// learn, when set, replaces each Model's keep-alive by one learned
	// from its idle gaps (placement.LearnKeepAlive) at this many
	// byte-seconds per cold start.
	learn float64
	gaps  placement.IdleTracker
	// rates are the request rates the manager measures per Model from
	// what its polls show each replica served (the manager's
	// RateTracker); noRate leaves them out of the planner's input.
	rates  []placement.RateEstimator
	noRate bool
	// fastPoll, when set, is the poll interval while any load is under
	// way (the manager's LoadingPollInterval; the simulator polls the
	// whole fleet at it, the manager only the nodes that load).
	fastPoll float64
}

func (p *cortexPolicy) loading(s *Sim) bool {
	for _, o := range p.obs {
		for _, r := range o {
			if r.state == placement.StateLoading {
				return true
			}
		}
	}
	return false
}

// CortexLoadingPoll is Cortex with the manager polling every interval
// while a load is under way (the manager's default is
// controllers.DefaultLoadingPollInterval; Cortex uses it). An interval
// equal to the poll interval is the manager before that rule.
func CortexLoadingPoll(interval time.Duration) Policy {
	return &cortexPolicy{learn: defaultWorth, fastPoll: interval.Seconds()}
}

type observed struct {
	rep      *replica
	state    placement.State
	inflight int
	served   int64
	lastUsed float64
	loadedAt float64
}

// defaultWorth is the manager's default --cold-start-worth in
// byte-seconds.
var defaultWorth = controllers.DefaultColdStartWorth * float64(GiB) * 3600

// Cortex is the manager's planner, poll cadence and demand handling and
// the gateway's replica choice, with the manager's defaults for Models
// without spec.keepAlive: keep-alives learned from each Model's idle gaps
// at the default worth of a cold start, the Model's KeepAlive until there
// are enough of them.
func Cortex() Policy {
	return CortexLearned(defaultWorth)
}

// CortexSpecKeepAlive is Cortex with every Model's own KeepAlive, as for
// Models that set spec.keepAlive.
func CortexSpecKeepAlive() Policy {
	return &cortexPolicy{fastPoll: controllers.DefaultLoadingPollInterval.Seconds()}
}

// CortexLearned is Cortex with keep-alives learned per Model from the
// idle gaps the manager observes (each poll's last use, each demand
// signal), at coldStartWorth byte-seconds per cold start.
func CortexLearned(coldStartWorth float64) Policy {
	return &cortexPolicy{learn: coldStartWorth, fastPoll: controllers.DefaultLoadingPollInterval.Seconds()}
}

func (p *cortexPolicy) Name() string {
	switch {
	case p.learn == 0:
		return "cortex, spec keep-alive"
	case p.learn != defaultWorth:
		return fmt.Sprintf("cortex, learned keep-alive (%.2g GiB·h)", p.learn/float64(GiB)/3600)
	case p.noRate:
		return "cortex, no request rates"
	case p.fastPoll != controllers.DefaultLoadingPollInterval.Seconds():
		return fmt.Sprintf("cortex, %gs poll while loading", p.fastPoll)
	}
	return "cortex"
}

// observe feeds the idle tracker what a poll shows, as the manager does
// on each pass: the Model's demand signal and its replicas' last use.
func (p *cortexPolicy) observe(s *Sim) {
	for _, m := range s.models {
		used := -1.0
		for _, r := range m.replicas {
			used = max(used, r.lastUsed)
		}
		p.gaps.Observe(m.spec.Key, tm(m.demandAt), tm(used))
	}
}

func (p *cortexPolicy) start(s *Sim) {
	p.obs = make([][]observed, len(s.nodes))
	p.gaps = placement.IdleTracker{}
	p.rates = make([]placement.RateEstimator, len(s.models))
	// The manager measures every Model from when it first sees it.
	for i := range p.rates {
		p.rates[i].Add(wall(0), 0)
	}
	p.nextPass = math.Inf(-1)
	var poll func()
	lastFull := 0.0
	poll = func() {
		// Every PollInterval a pass runs whatever changed (the manager's
		// resync and keep-alive timers); between, a poll that only a load
		// made faster wakes a pass when a state changed, as the manager's
		// poller wakes the Models whose residency changed.
		full := s.now-lastFull >= s.cfg.PollInterval-1e-9
		if full {
			lastFull = s.now
		}
		p.poll(s, full)
		next := s.cfg.PollInterval - (s.now - lastFull)
		if p.fastPoll > 0 && p.loading(s) {
			next = min(next, p.fastPoll)
		}
		if s.now < s.trace.Duration()+s.cfg.ColdStartTimeout {
			s.at(s.now+next, poll)
		}
	}
	s.at(0, poll)
}

func (p *cortexPolicy) poll(s *Sim, full bool) {
	changed := full
	for _, n := range s.nodes {
		if !changed {
			for _, r := range n.replicas {
				if r.state == stReady && !r.visible && !r.gone {
					changed = true
				}
			}
		}
		prev := map[*replica]int64{}
		for _, o := range p.obs[n.idx] {
			prev[o.rep] = o.served
		}
		o := p.obs[n.idx][:0]
		for _, r := range n.replicas {
			st := placement.StateLoading
			if r.state == stReady {
				st = placement.StateReady
			}
			p.rates[r.m.idx].Add(wall(s.now), float64(r.served-prev[r]))
			o = append(o, observed{rep: r, state: st, inflight: r.inflight, served: r.served, lastUsed: r.lastUsed, loadedAt: r.loadedAt})
		}
		p.obs[n.idx] = o
	}
	p.observe(s)
	if changed {
		p.pass(s)
	}
	// The pass wrote the Models' status: the gateway now routes to what
	// the poll found Ready.
	for _, o := range p.obs {
		for _, r := range o {
			if r.state == placement.StateReady {
				s.Show(r.rep)
			}
		}
	}
}

// cold is the gateway holding a request: it writes the demand signal at
// once for a new wait, then every DemandInterval while requests wait.
func (p *cortexPolicy) cold(s *Sim, m *model) {
	if s.now-m.lastWrite < s.cfg.DemandInterval {
		return
	}
	m.lastWrite = s.now
	at := s.now
	s.at(s.now+s.cfg.APILatency, func() {
		m.demandAt = at
		p.wake(s)
	})
	s.at(s.now+s.cfg.DemandInterval, func() {
		if len(m.held) > 0 {
			p.cold(s, m)
		}
	})
}

// wake runs a pass now unless one ran at this instant.
func (p *cortexPolicy) wake(s *Sim) {
	if p.nextPass == s.now {
		return
	}
	p.nextPass = s.now
	p.pass(s)
}

func (p *cortexPolicy) dispatched(*Sim, *model)            {}
func (p *cortexPolicy) ready(*Sim, *replica)               {}
func (p *cortexPolicy) idle(*Sim, *replica)                {}
func (p *cortexPolicy) heldBytes(_ *Sim, r *replica) int64 { return r.bytes }

func tm(t float64) time.Time {
	if math.IsNaN(t) || t < 0 {
		return time.Time{}
	}
	return wall(t)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// input maps the manager's view to the planner's input, as the manager's
// snapshot does.
func (p *cortexPolicy) input(s *Sim) placement.Input {
	now := wall(s.now)
	in := placement.Input{Now: now}
	type act struct{ used, loaded time.Time }
	acts := make([]act, len(s.models))
	for _, n := range s.nodes {
		pn := placement.Node{Name: n.name, Ready: true}
		used := make([]int64, len(n.devTotal))
		for _, o := range p.obs[n.idx] {
			r := o.rep
			res := placement.Resident{Model: r.m.spec.Key, Devices: r.devs, DeviceBytes: r.devBytes, Bytes: r.bytes,
				State: o.state, InFlight: o.inflight, LastUsed: tm(o.lastUsed), LoadedAt: tm(o.loadedAt)}
			for k, d := range r.devs {
				used[d] += r.devBytes[k]
			}
			pn.Residents = append(pn.Residents, res)
			a := &acts[r.m.idx]
			a.used, a.loaded = later(a.used, res.LastUsed), later(a.loaded, res.LoadedAt)
		}
		for d, total := range n.devTotal {
			pn.Devices = append(pn.Devices, placement.Device{Index: d, TotalBytes: total, FreeBytes: total - used[d]})
		}
		in.Nodes = append(in.Nodes, pn)
	}
	for _, m := range s.models {
		a := acts[m.idx]
		ka := m.spec.KeepAlive
		if p.learn > 0 {
			ka = placement.LearnKeepAlive(p.gaps.Histogram(m.spec.Key), m.spec.Bytes, p.learn, ka)
		}
		pm := placement.Model{
			Key:            m.spec.Key,
			MinReplicas:    m.spec.MinReplicas,
			MaxReplicas:    m.spec.MaxReplicas,
			KeepAlive:      ka,
			LastDemand:     later(tm(m.demandAt), a.used),
			TargetInFlight: placement.ScaleOutAt(m.spec.Parallel),
			BytesNeeded:    m.spec.Bytes,
			RequestRate:    p.rate(s, m),
			Waiting: placement.Waiting(placement.DemandSignals{
				Demand:     tm(m.demandAt),
				Window:     time.Duration(s.cfg.WaitingWindow * float64(time.Second)),
				Evicted:    tm(m.lastEvicted),
				LastLoaded: a.loaded,
				LastUsed:   a.used,
			}, now),
		}
		in.Models = append(in.Models, pm)
	}
	return in
}

func (p *cortexPolicy) rate(s *Sim, m *model) float64 {
	if p.noRate {
		return 0
	}
	return p.rates[m.idx].Rate(wall(s.now))
}

func (p *cortexPolicy) pass(s *Sim) {
	p.passes++
	plan := placement.Compute(p.input(s))
	for _, u := range plan.Unload {
		m, n := s.byKey[u.Model], s.nodeByName(u.Node)
		if m == nil || n == nil {
			continue
		}
		k := slices.IndexFunc(p.obs[n.idx], func(o observed) bool { return o.rep.m == m })
		if k < 0 {
			continue
		}
		s.Unload(p.obs[n.idx][k].rep, u.Reason == placement.ReasonEvicted)
		p.obs[n.idx] = slices.Delete(p.obs[n.idx], k, k+1)
	}
	for _, l := range plan.Load {
		m, n := s.byKey[l.Model], s.nodeByName(l.Node)
		if m == nil || n == nil {
			continue
		}
		rep := s.Load(m, n, slices.Clone(l.Devices), slices.Clone(l.DeviceBytes))
		// The manager's claim shows the load as Loading at once.
		p.obs[n.idx] = append(p.obs[n.idx], observed{rep: rep, state: placement.StateLoading, lastUsed: -1, loadedAt: -1})
	}
}

func (s *Sim) nodeByName(name string) *node {
	i, ok := slices.BinarySearchFunc(s.nodes, name, func(n *node, name string) int {
		switch {
		case n.name < name:
			return -1
		case n.name > name:
			return 1
		}
		return 0
	})
	if !ok {
		return nil
	}
	return s.nodes[i]
}

// CortexNoRate is Cortex without the measured request rates: victims are
// ordered by recency per byte alone.
func CortexNoRate() Policy {
	return &cortexPolicy{learn: defaultWorth, noRate: true, fastPoll: controllers.DefaultLoadingPollInterval.Seconds()}
}
