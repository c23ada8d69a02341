package neuron

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/go-logr/logr"

	"github.com/helexa-ai/cortex/internal/chat"
	"github.com/helexa-ai/cortex/internal/devices"
	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/gguf"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/sources"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// estimateTimeout bounds reading a GGUF header at load acceptance (a few
// range requests for a remote source).
const estimateTimeout = 60 * time.Second

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

	eng      engine.Model
	info     engine.Info
	tmpl     *chat.Template
	acceptAt time.Time
	loadedAt time.Time
	lastUsed time.Time
	inflight int
	idle     chan struct{} // closed when inflight drops to 0 during an unload
	cancel   context.CancelFunc
	loadDone chan struct{}
	gone     chan struct{}
	freed    int64
	reloaded bool
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

// normaliseLoad validates a load request and puts it in canonical form, so
// that equal settings compare equal.
func (r *registry) normaliseLoad(req neuronapi.LoadRequest) (neuronapi.LoadRequest, error) {
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" {
		return req, errInvalid("name", "Missing required parameter: 'name'.")
	}
	if len(req.Name) > 317 || strings.IndexFunc(req.Name, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }) >= 0 {
		return req, errInvalid("name", "Invalid 'name': %q is not a Model key (<namespace>/<name>).", req.Name)
	}
	req.Source.URI = strings.TrimSpace(req.Source.URI)
	req.Source.SHA256 = strings.ToLower(strings.TrimSpace(req.Source.SHA256))
	if _, err := r.res.Parse(req.Source); err != nil {
		return req, errInvalid("source", "Invalid 'source': %s.", err.Error())
	}
	e := &req.Engine
	if e.ContextLength < 0 || e.ContextLength > 1<<22 {
		return req, errInvalid("engine.contextLength", "Invalid 'engine.contextLength': %d is out of range.", e.ContextLength)
	}
	if e.Parallel < 0 || e.Parallel > 256 {
		return req, errInvalid("engine.parallel", "Invalid 'engine.parallel': %d is out of range.", e.Parallel)
	}
	e.FlashAttention = strings.ToLower(e.FlashAttention)
	switch e.FlashAttention {
	case "":
		e.FlashAttention = "auto"
	case "auto", "enabled", "disabled":
	default:
		return req, errInvalid("engine.flashAttention", "Invalid 'engine.flashAttention': %q; use auto, enabled or disabled.", e.FlashAttention)
	}
	e.KVCacheType = strings.ToLower(e.KVCacheType)
	switch e.KVCacheType {
	case "":
		e.KVCacheType = "f16"
	case "f16", "q8_0", "q4_0":
	default:
		return req, errInvalid("engine.kvCacheType", "Invalid 'engine.kvCacheType': %q; use f16, q8_0 or q4_0.", e.KVCacheType)
	}
	if e.ChatTemplate != "" && e.ChatTemplate != chat.ChatML {
		if _, err := chat.NewTemplate(e.ChatTemplate, chat.SpecialTokens{}); err != nil {
			return req, errInvalid("engine.chatTemplate", "Invalid 'engine.chatTemplate': %s.", err.Error())
		}
	}
	devs := slices.Clone(req.Devices)
	slices.Sort(devs)
	for i, d := range devs {
		if d < 0 || (i > 0 && devs[i-1] == d) {
			return req, errInvalid("devices", "Invalid 'devices': %v must be distinct device indices.", req.Devices)
		}
	}
	req.Devices = devs
	if req.VRAMBytes < 0 {
		return req, errInvalid("vramBytes", "Invalid 'vramBytes': must not be negative.")
	}
	return req, nil
}

// sameLoad reports whether a load request asks for what m already is.
func sameLoad(m *model, req neuronapi.LoadRequest) bool {
	a, b := m.req, req
	if a.Source != b.Source || a.Engine.ContextLength != b.Engine.ContextLength ||
		a.Engine.Parallel != b.Engine.Parallel || a.Engine.FlashAttention != b.Engine.FlashAttention ||
		a.Engine.KVCacheType != b.Engine.KVCacheType || a.Engine.ChatTemplate != b.Engine.ChatTemplate {
		return false
	}
	if (a.Engine.GPULayers == nil) != (b.Engine.GPULayers == nil) ||
		(a.Engine.GPULayers != nil && *a.Engine.GPULayers != *b.Engine.GPULayers) {
		return false
	}
	// Devices matter only when the new request names them.
	return len(b.Devices) == 0 || slices.Equal(b.Devices, m.devices) || (len(m.devices) == 0 && slices.Equal(a.Devices, b.Devices))
}

// load accepts a load: it returns at once with the model loading (or its
// current state when the same load is under way or done), after checking
// and reserving memory. The download and the engine load continue in the
// background.
func (r *registry) load(ctx context.Context, req neuronapi.LoadRequest) (neuronapi.ModelStatus, bool, error) {
	req, err := r.normaliseLoad(req)
	if err != nil {
		return neuronapi.ModelStatus{}, false, err
	}
	for {
		r.mu.Lock()
		m, ok := r.models[req.Name]
		if !ok || m.state == neuronapi.StateFailed {
			break // with the lock held: start a new load
		}
		if m.state == neuronapi.StateUnloading {
			r.mu.Unlock()
			return neuronapi.ModelStatus{}, false, withRetry(openai.NewError(http.StatusServiceUnavailable, openai.TypeServiceUnavailable,
				neuronapi.CodeModelNotReady, "name", "Model '%s' is being unloaded; retry the load in a moment.", req.Name), time.Second)
		}
		if !sameLoad(m, req) {
			st := m.state
			r.mu.Unlock()
			return neuronapi.ModelStatus{}, false, errConflict("Model '%s' is already %s here with a different source, engine settings or devices; unload it first.", req.Name, st)
		}
		accepted := m.accepted
		r.mu.Unlock()
		// Single flight: wait for the first request's acceptance.
		select {
		case <-accepted:
		case <-ctx.Done():
			return neuronapi.ModelStatus{}, false, ctx.Err()
		}
		r.mu.Lock()
		if m.acceptErr != nil {
			err := m.acceptErr
			r.mu.Unlock()
			return neuronapi.ModelStatus{}, false, err
		}
		if r.models[req.Name] != m {
			r.mu.Unlock()
			continue // unloaded meanwhile: look again
		}
		st := r.statusLocked(m)
		r.mu.Unlock()
		return st, false, nil
	}

	m := &model{
		name:     req.Name,
		req:      req,
		state:    neuronapi.StateLoading,
		accepted: make(chan struct{}),
		progress: &neuronapi.Progress{Phase: "loading"},
		acceptAt: r.now(),
		gone:     make(chan struct{}),
		loadDone: make(chan struct{}),
	}
	r.models[req.Name] = m
	r.mu.Unlock()

	err = r.accept(m)
	r.mu.Lock()
	if err != nil {
		m.acceptErr = err
		delete(r.models, m.name)
		close(m.gone)
		close(m.loadDone)
	}
	close(m.accepted)
	st := r.statusLocked(m)
	r.mu.Unlock()
	if err != nil {
		r.met.loadFailures.WithLabelValues(failureReason(err)).Inc()
		return neuronapi.ModelStatus{}, false, err
	}
	r.log.Info("Accepted model load", "model", m.name, "source", m.req.Source.URI, "devices", st.Devices, "reservedBytes", st.VRAMBytes)
	r.changed()
	return st, true, nil
}

// accept estimates the model's memory, places it and reserves the memory,
// then starts the background load.
func (r *registry) accept(m *model) error {
	ctx, cancel := context.WithTimeout(r.baseCtx, estimateTimeout)
	defer cancel()
	deferred := false
	if m.req.VRAMBytes > 0 {
		r.mu.Lock()
		m.need = need{Split: m.req.VRAMBytes}
		r.mu.Unlock()
	} else {
		est, _, err := r.estimateSource(ctx, m.req.Source, m.req.Engine)
		switch {
		case err == nil:
			r.mu.Lock()
			m.est = &est
			m.need = needFor(est, m.req.Engine.GPULayers)
			r.mu.Unlock()
		case isRemote(m.req.Source) && !sources.IsPermanent(err):
			// The header could not be read remotely (a server without
			// range support, a transient error): estimate once the file
			// is here, before the engine touches it.
			r.log.Info("Deferring the memory estimate to after the download", "model", m.name, "reason", err.Error())
			deferred = true
			r.mu.Lock()
			m.deferred = true
			r.mu.Unlock()
		default:
			return err
		}
	}
	if !deferred {
		devs, err := r.inv.Devices(ctx)
		if err != nil {
			return openai.ServerError("Reading the device inventory failed: %s.", err.Error())
		}
		r.mu.Lock()
		err = r.reserveLocked(m, devs)
		r.mu.Unlock()
		if err != nil {
			return err
		}
	}
	lctx, lcancel := context.WithCancel(r.baseCtx)
	r.mu.Lock()
	m.cancel = lcancel
	r.mu.Unlock()
	go r.runLoad(lctx, m)
	return nil
}

// reserveLocked places m on devices and reserves its memory.
func (r *registry) reserveLocked(m *model, devs []devices.Device) error {
	mem := r.devMemLocked(devs, m)
	res, err := place(m.need, mem, m.req.Devices)
	if err != nil {
		if strings.HasPrefix(err.Error(), "needs ") {
			return errInsufficientMemory(fmt.Sprintf("Model '%s' %s.", m.name, err.Error()))
		}
		return errInvalid("devices", "Invalid 'devices': %s.", err.Error())
	}
	m.reserved = res
	m.devices = make([]int, 0, len(res))
	for i := range res {
		m.devices = append(m.devices, i)
	}
	slices.Sort(m.devices)
	m.cpu = true
	for _, d := range mem {
		if _, ok := res[d.Index]; ok && d.Kind != devices.KindCPU {
			m.cpu = false
		}
	}
	return nil
}

// devMemLocked is each device's memory with every other model's
// reservation subtracted.
func (r *registry) devMemLocked(devs []devices.Device, except *model) []devMem {
	reserved := map[int]int64{}
	for _, m := range r.models {
		if m == except {
			continue
		}
		for i, b := range m.reserved {
			reserved[i] += b
		}
	}
	out := make([]devMem, 0, len(devs))
	for _, d := range devs {
		free := min(d.MemoryFree, d.MemoryTotal-reserved[d.Index])
		out = append(out, devMem{Index: d.Index, Kind: d.Kind, Total: d.MemoryTotal, Free: max(free, 0)})
	}
	return out
}

func isRemote(src neuronapi.Source) bool {
	return !strings.HasPrefix(strings.ToLower(strings.TrimSpace(src.URI)), "file:")
}

// estimateSource reads the GGUF header of src (a ranged read when remote and
// not cached) and estimates its memory with the engine settings.
func (r *registry) estimateSource(ctx context.Context, src neuronapi.Source, ec neuronapi.EngineConfig) (neuronapi.Estimate, *gguf.File, error) {
	f, err := r.res.Open(ctx, src)
	if err != nil {
		return neuronapi.Estimate{}, nil, sourceError(err)
	}
	defer func() { _ = f.Close() }()
	gf, err := gguf.Read(f)
	if err != nil {
		if errors.Is(err, gguf.ErrNotGGUF) {
			return neuronapi.Estimate{}, nil, sourceError(&sources.Error{Code: neuronapi.CodeSourceUnavailable, Permanent: true,
				Err: fmt.Errorf("%s is not a GGUF file", src.URI)})
		}
		return neuronapi.Estimate{}, nil, sourceError(&sources.Error{Code: neuronapi.CodeSourceUnavailable, Permanent: !isRemote(src),
			Err: fmt.Errorf("reading the GGUF header of %s: %w", src.URI, err)})
	}
	return estimateFile(gf, ec), gf, nil
}

func estimateFile(gf *gguf.File, ec neuronapi.EngineConfig) neuronapi.Estimate {
	me := gguf.Estimate(gf, ec.ContextLength, ec.Parallel, ec.KVCacheType, ec.FlashAttention == "enabled")
	layers, _ := gf.ArchUint("block_count")
	trained, _ := gf.ArchUint("context_length")
	return neuronapi.Estimate{
		TotalBytes:           me.Total,
		WeightsBytes:         me.Weights,
		KVCacheBytes:         me.KVCache,
		ComputeBytes:         me.Compute + me.Output,
		Layers:               int(layers),
		ContextLength:        me.ContextLength,
		Parallel:             me.Parallel,
		Architecture:         gf.Architecture(),
		TrainedContextLength: int(trained),
	}
}

// needFor turns an estimate into what placement divides: with only some
// layers offloaded, only their share of weights and cache is on the GPUs.
func needFor(est neuronapi.Estimate, gpuLayers *int) need {
	split := est.WeightsBytes + est.KVCacheBytes
	if gpuLayers != nil && *gpuLayers >= 0 && est.Layers > 0 && *gpuLayers < est.Layers {
		split = split * int64(*gpuLayers) / int64(est.Layers)
	}
	return need{Split: split, Each: est.ComputeBytes}
}

// runLoad downloads the source and loads it into the engine.
func (r *registry) runLoad(ctx context.Context, m *model) {
	defer close(m.loadDone)
	log := r.log.WithValues("model", m.name)
	_, cached := r.res.Cached(m.req.Source)
	r.mu.Lock()
	m.downloaded = !cached
	r.mu.Unlock()
	path, err := r.res.Resolve(logr.NewContext(ctx, log), m.req.Source, func(p sources.Progress) {
		r.setProgress(m, p.Phase, p.Done, p.Total, 0)
	})
	if err != nil {
		r.failLoad(ctx, m, "source", err)
		return
	}
	r.mu.Lock()
	deferred := m.deferred
	r.mu.Unlock()
	if deferred {
		gf, err := gguf.Open(path)
		if err != nil {
			r.failLoad(ctx, m, "source", fmt.Errorf("reading the GGUF header: %w", err))
			return
		}
		r.mu.Lock()
		est := estimateFile(gf, m.req.Engine)
		m.est = &est
		m.need = needFor(est, m.req.Engine.GPULayers)
		r.mu.Unlock()
		devs, err := r.inv.Devices(ctx)
		if err != nil {
			r.failLoad(ctx, m, "devices", err)
			return
		}
		r.mu.Lock()
		err = r.reserveLocked(m, devs)
		r.mu.Unlock()
		if err != nil {
			r.failLoad(ctx, m, "memory", err)
			return
		}
		r.changed()
	}
	r.mu.Lock()
	m.path = path
	r.mu.Unlock()
	r.loadEngine(ctx, m, log)
}

// loadEngine loads m.path into the engine and makes the model ready.
func (r *registry) loadEngine(ctx context.Context, m *model, log logr.Logger) {
	r.mu.Lock()
	p := engine.LoadParams{
		Path:           m.path,
		ContextLength:  m.req.Engine.ContextLength,
		Parallel:       m.req.Engine.Parallel,
		GPULayers:      -1,
		FlashAttention: m.req.Engine.FlashAttention,
		KVCacheType:    m.req.Engine.KVCacheType,
		Threads:        r.threads,
		QueueSize:      r.queue,
	}
	if m.req.Engine.GPULayers != nil {
		p.GPULayers = *m.req.Engine.GPULayers
	}
	if m.cpu {
		p.GPULayers = 0
	} else {
		p.Devices = slices.Clone(m.devices)
	}
	r.mu.Unlock()
	p.Progress = func(f float32) { r.setProgress(m, "loading", 0, 0, f) }
	r.setProgress(m, "loading", 0, 0, 0)
	start := r.now()
	em, err := r.eng.Load(ctx, p)
	if err != nil {
		r.failLoad(ctx, m, "engine", fmt.Errorf("loading into the engine: %w", err))
		return
	}
	info := em.Info()
	tmpl, err := chat.ForModel(info, m.req.Engine.ChatTemplate)
	if err != nil {
		if m.req.Engine.ChatTemplate != "" {
			_ = em.Close()
			r.failLoad(ctx, m, "template", err)
			return
		}
		// A GGUF's own template that this renderer cannot compile should
		// not make the model unusable: ChatML is a fair stand-in.
		log.Info("The model's chat template does not compile; using ChatML", "error", err.Error())
		if tmpl, err = chat.ForModel(info, chat.ChatML); err != nil {
			_ = em.Close()
			r.failLoad(ctx, m, "template", err)
			return
		}
	}
	r.mu.Lock()
	if m.state != neuronapi.StateLoading || ctx.Err() != nil {
		// Unloaded while loading: the unload waits for us and frees the
		// reservation.
		r.mu.Unlock()
		_ = em.Close()
		return
	}
	m.eng, m.info, m.tmpl = em, info, tmpl
	m.state = neuronapi.StateReady
	m.progress = nil
	m.errMsg = ""
	m.loadedAt = r.now()
	total := m.loadedAt.Sub(m.acceptAt)
	r.mu.Unlock()
	r.met.loadDuration.Observe(total.Seconds())
	log.Info("Model ready", "engineLoad", r.now().Sub(start).String(), "total", total.String(),
		"contextLength", info.ContextLength, "parallel", info.Parallel, "template", templateName(tmpl))
	r.changed()
}

func templateName(t *chat.Template) string {
	if t.Builtin() {
		return "chatml (built-in)"
	}
	return string(t.ToolFormat())
}

// failLoad marks a load failed and returns its memory. A load cut short by
// an unload or shutdown is not a failure.
func (r *registry) failLoad(ctx context.Context, m *model, reason string, err error) {
	r.mu.Lock()
	if m.state != neuronapi.StateLoading || ctx.Err() != nil {
		r.mu.Unlock()
		return
	}
	m.state = neuronapi.StateFailed
	m.errMsg = errText(err)
	m.progress = nil
	m.reserved = nil
	r.mu.Unlock()
	r.met.loadFailures.WithLabelValues(reason).Inc()
	r.log.Error(err, "Model load failed", "model", m.name, "reason", reason)
	r.changed()
}

// setProgress records load progress; Percent spans the whole load, the
// download (when there is one) taking the first 90%.
func (r *registry) setProgress(m *model, phase string, done, total int64, frac float32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.state != neuronapi.StateLoading {
		return
	}
	p := &neuronapi.Progress{Phase: phase, BytesDone: done, BytesTotal: total}
	switch phase {
	case sources.PhaseDownloading:
		if total > 0 {
			p.Percent = int(90 * done / total)
		}
	case sources.PhaseVerifying:
		p.Percent = 90
	default:
		f := min(max(float64(frac), 0), 1)
		if m.downloaded {
			p.Percent = 90 + int(10*f)
		} else {
			p.Percent = int(100 * f)
		}
	}
	if m.progress != nil && p.Percent < m.progress.Percent && m.progress.Phase == phase {
		p.Percent = m.progress.Percent
	}
	m.progress = p
}

// unload removes a model: it stops accepting requests for it, cancels a
// load under way, lets requests in flight finish for up to the drain
// timeout, closes the engine model (ending what is left with ErrClosed) and
// returns the memory. It returns the bytes freed; a model it does not hold
// is not an error.
func (r *registry) unload(ctx context.Context, name string) (int64, bool, error) {
	r.mu.Lock()
	m, ok := r.models[name]
	if !ok {
		r.mu.Unlock()
		return 0, false, nil
	}
	accepted := m.accepted
	r.mu.Unlock()
	select { // a load still being accepted decides first
	case <-accepted:
	case <-ctx.Done():
		return 0, true, ctx.Err()
	}

	r.mu.Lock()
	if r.models[name] != m {
		r.mu.Unlock()
		return r.unload(ctx, name)
	}
	if m.state == neuronapi.StateUnloading {
		gone := m.gone
		r.mu.Unlock()
		select {
		case <-gone:
			r.mu.Lock()
			freed := m.freed
			r.mu.Unlock()
			return freed, true, nil
		case <-ctx.Done():
			return 0, true, ctx.Err()
		}
	}
	prev := m.state
	m.state = neuronapi.StateUnloading
	m.progress = nil
	m.freed = m.reservedTotal()
	if m.cancel != nil {
		m.cancel()
	}
	var idle chan struct{}
	if m.inflight > 0 {
		m.idle = make(chan struct{})
		idle = m.idle
	}
	em, loadDone, inflight := m.eng, m.loadDone, m.inflight
	r.mu.Unlock()
	r.log.Info("Unloading model", "model", name, "state", prev, "inFlight", inflight)
	r.changed()

	<-loadDone // a canceled load returns promptly
	if idle != nil {
		t := time.NewTimer(r.drain)
		select {
		case <-idle:
		case <-t.C:
			r.log.Info("Unload drain timed out; ending requests in flight", "model", name, "timeout", r.drain.String())
		}
		t.Stop()
	}
	if em != nil {
		if err := em.Close(); err != nil {
			r.log.Error(err, "Closing engine model", "model", name)
		}
	}
	r.mu.Lock()
	if r.models[name] == m {
		delete(r.models, name)
	}
	m.reserved = nil
	m.eng = nil
	freed := m.freed
	close(m.gone)
	r.mu.Unlock()
	r.log.Info("Model unloaded", "model", name, "freedBytes", freed)
	r.changed()
	return freed, true, nil
}

// lease is a request's hold on a ready model; release it when done.
type lease struct {
	r    *registry
	m    *model
	eng  engine.Model
	tmpl *chat.Template
	info engine.Info
	once sync.Once
}

func (l *lease) release() {
	l.once.Do(func() {
		l.r.mu.Lock()
		defer l.r.mu.Unlock()
		l.m.inflight--
		if l.m.inflight == 0 && l.m.idle != nil {
			close(l.m.idle)
			l.m.idle = nil
		}
	})
}

// acquire takes a lease on a ready model.
// touch marks the model used (for keep-alive and eviction): inference
// does, token counting does not.
func (r *registry) acquire(name string, touch bool) (*lease, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.models[name]
	if !ok {
		return nil, openai.ModelNotFound(name)
	}
	switch m.state {
	case neuronapi.StateReady:
	case neuronapi.StateLoading:
		detail := ""
		if m.progress != nil {
			detail = fmt.Sprintf("%s, %d%%", m.progress.Phase, m.progress.Percent)
		}
		return nil, errModelNotReady(name, m.state, detail, 5*time.Second)
	case neuronapi.StateFailed:
		return nil, errModelNotReady(name, m.state, "its load failed: "+m.errMsg, 30*time.Second)
	default:
		return nil, errModelNotReady(name, m.state, "", time.Second)
	}
	m.inflight++
	if touch {
		m.lastUsed = r.now()
	}
	return &lease{r: r, m: m, eng: m.eng, tmpl: m.tmpl, info: m.info}, nil
}

// poisoned handles a model whose engine failed fatally: it is reloaded from
// its file once; a second failure marks it failed.
func (r *registry) poisoned(m *model, em engine.Model) {
	r.mu.Lock()
	if m.state != neuronapi.StateReady || m.eng != em {
		r.mu.Unlock()
		return // already handled
	}
	if m.reloaded {
		m.state = neuronapi.StateFailed
		m.errMsg = "the engine failed again after an automatic reload; unload and load the model to retry"
		m.reserved = nil
		m.eng = nil
		r.mu.Unlock()
		_ = em.Close()
		r.met.loadFailures.WithLabelValues("poisoned").Inc()
		r.log.Info("Model failed again after its automatic reload; marked failed", "model", m.name)
		r.changed()
		return
	}
	m.reloaded = true
	m.state = neuronapi.StateLoading
	m.progress = &neuronapi.Progress{Phase: "loading"}
	m.downloaded = false
	m.eng = nil
	m.acceptAt = r.now()
	ctx, cancel := context.WithCancel(r.baseCtx)
	m.cancel = cancel
	m.loadDone = make(chan struct{})
	done := m.loadDone
	r.mu.Unlock()
	r.log.Info("Model's engine failed; reloading it once", "model", m.name)
	r.changed()
	go func() {
		defer close(done)
		_ = em.Close()
		r.loadEngine(ctx, m, r.log.WithValues("model", m.name))
	}()
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

// closeAll unloads every model at shutdown.
func (r *registry) closeAll(ctx context.Context) {
	r.mu.Lock()
	names := make([]string, 0, len(r.models))
	for n := range r.models {
		names = append(names, n)
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Go(func() { _, _, _ = r.unload(ctx, n) })
	}
	wg.Wait()
}

// failureReason labels a refused load for metrics.
func failureReason(err error) string {
	oe := openai.AsError(err)
	switch oe.Code {
	case neuronapi.CodeInsufficientMemory:
		return "memory"
	case neuronapi.CodeChecksumMismatch, neuronapi.CodeSourceUnavailable:
		return "source"
	case neuronapi.CodeInvalidRequest:
		return "invalid"
	}
	return "other"
}

// errText is an error's message for a status field: the client-facing
// message of an API error, the error text otherwise.
func errText(err error) string {
	var oe *openai.Error
	if errors.As(err, &oe) {
		return oe.Message
	}
	return err.Error()
}
