package controllers

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/helexa-ai/cortex/internal/neuronapi"
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
}

// NewFleet returns an empty Fleet.
func NewFleet() *Fleet { return &Fleet{obs: map[string]*Observation{}} }

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
	return diffModels(prev, &o)
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
	return diffModels(prev, nil)
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

func diffModels(prev, next *Observation) []string {
	type key struct {
		state neuronapi.ModelState
		devs  string
	}
	index := func(o *Observation) map[string]key {
		m := map[string]key{}
		if o == nil {
			return m
		}
		for _, s := range o.Models {
			m[s.Name] = key{s.State, fmt.Sprint(s.Devices)}
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
