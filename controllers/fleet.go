package controllers

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/placement"
)

// Observation is what one neuron last reported about itself over its API.
type Observation struct {
	// Endpoint the observation was taken from.
	Endpoint string
	// At is when the answer arrived.
	At time.Time
	// Models and Devices are the neuron's answer to GET /models.
	Models  []neuronapi.ModelStatus
	Devices []neuronapi.Device
	// Err is set when the last poll failed; Models and Devices then hold
	// the last good answer, if any.
	Err error
}

// Fleet is the manager's in-memory view of what every neuron holds, rebuilt
// from the neurons' own answers (never from Model status), so a restarted
// manager learns the truth before it acts. The NeuronNode reconciler writes
// it; the Model reconciler reads it.
type Fleet struct {
	mu  sync.RWMutex
	obs map[string]*Observation // by NeuronNode name
	// rates measure each Model's request rate from the requests its
	// replicas report accepted, poll after poll (see Set and
	// RequestRate).
	rates map[string]*placement.RateEstimator
	// idle learns each Model's idle gaps: the last use every poll shows
	// (Set), the demand signals the Model passes read (ObserveDemand).
	// Polls, not passes, feed it uses: a pass may come a minute after the
	// last, and the gaps between uses it never saw would merge.
	idle placement.IdleTracker
	// watched is when this manager first looked at each node's heartbeat
	// (HeartbeatAge).
	watched map[string]time.Time
}

// NewFleet returns an empty Fleet.
func NewFleet() *Fleet {
	return &Fleet{obs: map[string]*Observation{}, rates: map[string]*placement.RateEstimator{}, watched: map[string]time.Time{}}
}

// Get returns a copy of a node's observation.
func (f *Fleet) Get(node string) (Observation, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	o, ok := f.obs[node]
	if !ok {
		return Observation{}, false
	}
	return o.clone(), true
}

// Observed reports whether a node has answered at least once since the
// manager started.
func (f *Fleet) Observed(node string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	o, ok := f.obs[node]
	return ok && !o.At.IsZero()
}

// Set records a node's fresh answer and returns the model keys whose state
// on that node changed (appeared, disappeared, changed state or devices).
func (f *Fleet) Set(node string, o Observation) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	prev := f.obs[node]
	f.obs[node] = &o
	f.countRequestsLocked(prev, &o)
	for _, m := range o.Models {
		if m.LastUsed != nil {
			f.idle.Observe(m.Name, time.Time{}, *m.LastUsed)
		}
	}
	return diffModels(prev, &o)
}

// countRequestsLocked adds to each Model's rate the requests its replica
// on the node accepted since the previous answer: the difference of the
// neuron's counters, or the whole counter when the replica is new or was
// reloaded since (its counter starts again). A Model first seen with a
// count (after a manager restart) is measured from its replica's load, so
// its history counts over the time it took.
func (f *Fleet) countRequestsLocked(prev, next *Observation) {
	before := map[string]neuronapi.ModelStatus{}
	if prev != nil {
		for _, m := range prev.Models {
			before[m.Name] = m
		}
	}
	for _, m := range next.Models {
		n := m.Requests
		if p, ok := before[m.Name]; ok && sameLoad(p, m) && p.Requests <= n {
			n -= p.Requests
		}
		if n <= 0 {
			continue
		}
		e := f.rates[m.Name]
		if e == nil {
			e = &placement.RateEstimator{}
			f.rates[m.Name] = e
			if m.LoadedAt != nil && m.LoadedAt.Before(next.At) {
				e.AddSpread(*m.LoadedAt, next.At, float64(n))
				continue
			}
		}
		e.Add(next.At, float64(n))
	}
}

// sameLoad reports whether two answers can describe the same load of a
// model: a model reports its load time only once Ready.
func sameLoad(a, b neuronapi.ModelStatus) bool {
	return a.LoadedAt == nil || b.LoadedAt == nil || a.LoadedAt.Equal(*b.LoadedAt)
}

// RequestRate is a Model's request rate at now, in requests per second,
// measured from when the manager first saw the Model (this call starts
// it) or its first requests.
func (f *Fleet) RequestRate(model string, now time.Time) float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.rates[model]
	if e == nil {
		e = &placement.RateEstimator{}
		e.Add(now, 0)
		f.rates[model] = e
	}
	return e.Rate(now)
}

// ObserveDemand records a Model's demand signal (the gateway's
// annotation: a request found no replica) for its idle gaps.
func (f *Fleet) ObserveDemand(model string, at time.Time) {
	if at.IsZero() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.idle.Observe(model, at, time.Time{})
}

// LearnedKeepAlive is the keep-alive placement.LearnKeepAlive chooses for
// a Model of this many bytes from the idle gaps seen so far, at worth
// byte-seconds per cold start, and the weight of those gaps; fallback while
// there are too few.
func (f *Fleet) LearnedKeepAlive(model string, bytes int64, worth float64, fallback time.Duration) (time.Duration, float64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	h := f.idle.Histogram(model)
	if h == nil {
		return fallback, 0
	}
	return placement.LearnKeepAlive(h, bytes, worth, fallback), h.Weight()
}

// Forget drops the rates and idle gaps of Models keep does not name
// (deleted ones).
func (f *Fleet) Forget(keep func(model string) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k := range f.rates {
		if !keep(k) {
			delete(f.rates, k)
		}
	}
	f.idle.Forget(keep)
}

// SetError records a failed poll, keeping the last good answer.
func (f *Fleet) SetError(node string, endpoint string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.obs[node]
	if !ok {
		f.obs[node] = &Observation{Endpoint: endpoint, Err: err}
		return
	}
	o.Err = err
}

// Delete forgets a node and returns the model keys it held.
func (f *Fleet) Delete(node string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	prev := f.obs[node]
	delete(f.obs, node)
	delete(f.watched, node)
	return diffModels(prev, nil)
}

// Answering reports whether the node's last poll succeeded within
// within of now.
func (f *Fleet) Answering(node string, now time.Time, within time.Duration) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	o, ok := f.obs[node]
	return ok && o.Err == nil && !o.At.IsZero() && now.Sub(o.At) <= within
}

// HeartbeatAge is how long this manager has gone without a heartbeat from
// node: since the heartbeat hb, but at most since the manager first looked
// at the node. A heartbeat the manager could not have seen — written
// before it started, by neurons that could not reach the API server while
// it was down — is not held against the node: after a long API-server
// outage every heartbeat is older than the staleness, the manager that lost
// its lease restarts, and without this it would call every node NotReady
// and place every Model's replicas again, until the neurons' next
// heartbeats (a double load for each). A node dead all along is found by
// its poll instead: refused at once, or, if hung, once the poll's bound
// (the staleness) runs out.
func (f *Fleet) HeartbeatAge(node string, hb, now time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	first, ok := f.watched[node]
	if !ok {
		first = now
		f.watched[node] = now
	}
	if first.After(hb) {
		return now.Sub(first)
	}
	return now.Sub(hb)
}

// Upsert records the manager's own action on a node before the next poll
// confirms it, so plans made in between see the memory as taken (or freed).
// A nil status removes the model.
func (f *Fleet) Upsert(node, model string, st *neuronapi.ModelStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.obs[node]
	if !ok {
		return
	}
	var old *neuronapi.ModelStatus
	i := slices.IndexFunc(o.Models, func(m neuronapi.ModelStatus) bool { return m.Name == model })
	if i >= 0 {
		old = &o.Models[i]
	}
	// Keep device free memory consistent with the change.
	adjust := func(m *neuronapi.ModelStatus, sign int64) {
		if m == nil || len(m.Devices) == 0 {
			return
		}
		for k, d := range m.Devices {
			share := m.VRAMBytes / int64(len(m.Devices))
			if len(m.DeviceBytes) == len(m.Devices) {
				share = m.DeviceBytes[k]
			}
			for j := range o.Devices {
				if o.Devices[j].Index == d {
					o.Devices[j].MemoryFree += sign * share
				}
			}
		}
	}
	models := slices.Clone(o.Models)
	devices := slices.Clone(o.Devices)
	o.Models, o.Devices = models, devices
	adjust(old, +1)
	if i >= 0 {
		o.Models = slices.Delete(o.Models, i, i+1)
	}
	if st != nil {
		cp := *st
		cp.Devices = slices.Clone(st.Devices)
		o.Models = append(o.Models, cp)
		adjust(&cp, -1)
	}
}

// Nodes lists the nodes with an observation.
func (f *Fleet) Nodes() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]string, 0, len(f.obs))
	for n := range f.obs {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func (o *Observation) clone() Observation {
	c := *o
	c.Models = slices.Clone(o.Models)
	for i := range c.Models {
		c.Models[i].Devices = slices.Clone(c.Models[i].Devices)
	}
	c.Devices = slices.Clone(o.Devices)
	return c
}

// diffModels lists the models whose replica on a node appeared,
// disappeared, or changed state, devices or load: the replicas its
// requests in flight call for (placement.ScaleOutAt of the replica's
// parallel sequences), so a Model whose replica fills up is planned again
// at that poll, not at the next resync.
func diffModels(prev, next *Observation) []string {
	type key struct {
		state neuronapi.ModelState
		devs  string
		load  int
	}
	index := func(o *Observation) map[string]key {
		m := map[string]key{}
		if o == nil {
			return m
		}
		for _, s := range o.Models {
			per := placement.ScaleOutAt(max(1, s.Parallel))
			m[s.Name] = key{s.State, fmt.Sprint(s.Devices), (s.InFlight + per - 1) / per}
		}
		return m
	}
	a, b := index(prev), index(next)
	var changed []string
	for name, ka := range a {
		if kb, ok := b[name]; !ok || kb != ka {
			changed = append(changed, name)
		}
	}
	for name := range b {
		if _, ok := a[name]; !ok {
			changed = append(changed, name)
		}
	}
	slices.Sort(changed)
	return changed
}
