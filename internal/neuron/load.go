package neuron

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/go-logr/logr"

	"github.com/helexa-ai/cortex/internal/chat"
	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/gguf"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/sources"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

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
	var projPath string
	if ps, ok := m.req.Source.Projector(); ok {
		projPath, err = r.res.Resolve(logr.NewContext(ctx, log), ps, func(p sources.Progress) {
			r.setProgress(m, p.Phase, p.Done, p.Total, 0)
		})
		if err != nil {
			r.failLoad(ctx, m, "source", fmt.Errorf("projector: %w", err))
			return
		}
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
		est := estimateFile(gf, m.req.Engine)
		if projPath != "" {
			pf, err := gguf.Open(projPath)
			if err != nil {
				r.failLoad(ctx, m, "source", fmt.Errorf("reading the projector's GGUF header: %w", err))
				return
			}
			addProjector(&est, pf)
		}
		r.mu.Lock()
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
	m.path, m.projPath = path, projPath
	r.mu.Unlock()
	r.loadEngine(ctx, m, log)
}

// loadEngine loads m.path into the engine and makes the model ready.
func (r *registry) loadEngine(ctx context.Context, m *model, log logr.Logger) {
	r.mu.Lock()
	p := engine.LoadParams{
		Path:           m.path,
		ProjectorPath:  m.projPath,
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
