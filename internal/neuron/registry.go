package neuron

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/helexa-ai/cortex/internal/chat"
	"github.com/helexa-ai/cortex/internal/devices"
	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/sources"
)

// registry holds the models of this neuron and the memory they reserve.
//
// Memory: a load reserves its estimate on its devices when it is accepted,
// before any download, so two concurrent loads cannot both count the same
// free bytes; the reservation is returned when the model is unloaded or
// its load fails. A device's free memory is the smaller of what the driver
// reports and its total minus every reservation, so memory taken by other
// processes and memory promised to loads still under way both count.
type registry struct {
	log      logr.Logger
	eng      engine.Engine
	inv      devices.Inventory
	res      *sources.Resolver
	met      *metrics
	threads  int
	queue    int
	drain    time.Duration
	baseCtx  context.Context
	onChange func()
	now      func() time.Time

	mu     sync.Mutex
	models map[string]*model
}

// model is one model of the registry. Its fields are guarded by
// registry.mu.
type model struct {
	name  string
	req   neuronapi.LoadRequest // normalised
	state neuronapi.ModelState
	// accepted is closed once the load was accepted or refused (acceptErr).
	accepted  chan struct{}
	acceptErr error

	progress   *neuronapi.Progress
	downloaded bool // the source needed a download (progress split)
	errMsg     string
	est        *neuronapi.Estimate
	need       need
	deferred   bool // need unknown until the file is local
	reserved   map[int]int64
	devices    []int
	cpu        bool
	path       string
	// projPath is the vision projector's local file ("" for none).
	projPath string

	eng      engine.Model
	info     engine.Info
	tmpl     *chat.Template
	acceptAt time.Time
	loadedAt time.Time
	lastUsed time.Time
	inflight int
	requests int64         // accepted for inference since the load
	idle     chan struct{} // closed when inflight drops to 0 during an unload
	cancel   context.CancelFunc
	loadDone chan struct{}
	gone     chan struct{}
	freed    int64
	reloaded bool
	// prefillRate is the prompt tokens per second measured on recent
	// requests (lease.observePrefill); 0 until one.
	prefillRate float64
}

func (m *model) reservedTotal() int64 {
	var t int64
	for _, b := range m.reserved {
		t += b
	}
	return t
}

func (r *registry) changed() {
	if r.onChange != nil {
		r.onChange()
	}
}

// statusLocked is m's API status.
func (r *registry) statusLocked(m *model) neuronapi.ModelStatus {
	st := neuronapi.ModelStatus{
		Name:      m.name,
		State:     m.state,
		Source:    m.req.Source,
		Engine:    m.req.Engine,
		Devices:   slices.Clone(m.devices),
		VRAMBytes: m.reservedTotal(),
		Error:     m.errMsg,
		InFlight:  m.inflight,
		Requests:  m.requests,
	}
	if len(m.reserved) == len(m.devices) && len(m.devices) > 0 {
		st.DeviceBytes = make([]int64, len(m.devices))
		for i, d := range m.devices {
			st.DeviceBytes[i] = m.reserved[d]
		}
	}
	if m.progress != nil {
		p := *m.progress
		st.Progress = &p
	}
	if !m.loadedAt.IsZero() && m.state == neuronapi.StateReady {
		t := m.loadedAt.UTC()
		st.LoadedAt = &t
	}
	if !m.lastUsed.IsZero() {
		t := m.lastUsed.UTC()
		st.LastUsed = &t
	}
	switch {
	case m.eng != nil:
		st.ContextLength, st.Parallel = m.info.ContextLength, m.info.Parallel
		s := m.eng.Stats()
		st.Queued = s.Queued
	case m.est != nil:
		st.ContextLength, st.Parallel = m.est.ContextLength, m.est.Parallel
	}
	return st
}

// snapshot reads the devices and every model together.
func (r *registry) snapshot(ctx context.Context) (neuronapi.ModelsResponse, error) {
	devs, err := r.inv.Devices(ctx)
	if err != nil {
		return neuronapi.ModelsResponse{}, fmt.Errorf("reading devices: %w", err)
	}
	type poison struct {
		m  *model
		em engine.Model
	}
	var poisoned []poison
	r.mu.Lock()
	out := neuronapi.ModelsResponse{Models: make([]neuronapi.ModelStatus, 0, len(r.models))}
	for _, m := range r.models {
		if m.state == neuronapi.StateReady && m.eng != nil && m.eng.Stats().Poisoned {
			poisoned = append(poisoned, poison{m, m.eng})
		}
		out.Models = append(out.Models, r.statusLocked(m))
	}
	mem := r.devMemLocked(devs, nil)
	r.mu.Unlock()
	sort.Slice(out.Models, func(a, b int) bool { return out.Models[a].Name < out.Models[b].Name })
	out.Devices = make([]neuronapi.Device, len(devs))
	for i, d := range devs {
		ad := d.API()
		ad.MemoryFree = mem[i].Free
		out.Devices[i] = ad
	}
	for _, p := range poisoned {
		r.poisoned(p.m, p.em)
	}
	return out, nil
}
