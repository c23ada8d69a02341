package neuron

import (
	"context"
	"net/http"

	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/version"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// UnloadResponse answers POST /models/unload: what was freed.
type UnloadResponse struct {
	Name string `json:"name"`
	// Unloaded is false when the neuron did not hold the model.
	Unloaded bool `json:"unloaded"`
	// FreedBytes is the device memory the model had reserved.
	FreedBytes int64 `json:"freedBytes"`
}

func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	err := openai.CheckContentType(r.Header.Get("Content-Type"))
	if err == nil {
		err = openai.DecodeJSON(r.Body, s.cfg.MaxBodyBytes, v)
	}
	if err != nil {
		writeError(w, err)
		return false
	}
	return true
}

func (s *Server) handleVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, neuronapi.Version{Version: version.String(), LlamaCpp: s.cfg.Engine.Version()})
}

func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	snap, err := s.reg.snapshot(r.Context())
	if err != nil {
		writeError(w, openai.ServerError("Reading devices failed: %s.", err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, neuronapi.Discovery{
		Node:       s.cfg.NodeName,
		Version:    version.String(),
		Backends:   s.cfg.Engine.Backends(),
		Devices:    snap.Devices,
		CPUBackend: s.compute.CPUBackend,
		Libraries:  s.compute.Libraries,
		NoGPU:      s.compute.NoGPU,
	})
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	snap, err := s.reg.snapshot(r.Context())
	if err != nil {
		writeError(w, openai.ServerError("Reading devices failed: %s.", err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, snap)
}

// handleLoad answers 202 with the model loading when it accepted a new
// load, 200 with the current state when the same load is under way or
// done.
func (s *Server) handleLoad(w http.ResponseWriter, r *http.Request) {
	var req neuronapi.LoadRequest
	if !s.decode(w, r, &req) {
		return
	}
	infoOf(r).model = req.Name
	st, created, err := s.reg.load(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	code := http.StatusOK
	if created || st.State == neuronapi.StateLoading {
		code = http.StatusAccepted
	}
	writeJSON(w, code, st)
}

func (s *Server) handleUnload(w http.ResponseWriter, r *http.Request) {
	var req neuronapi.UnloadRequest
	if !s.decode(w, r, &req) {
		return
	}
	if req.Name == "" {
		writeError(w, openai.MissingParameter("name"))
		return
	}
	infoOf(r).model = req.Name
	freed, existed, err := s.reg.unload(r.Context(), req.Name)
	if err != nil {
		writeError(w, openai.Unavailable("Unloading '%s' was interrupted: %s.", req.Name, err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, UnloadResponse{Name: req.Name, Unloaded: existed, FreedBytes: freed})
}

func (s *Server) handleEstimate(w http.ResponseWriter, r *http.Request) {
	var req neuronapi.EstimateRequest
	if !s.decode(w, r, &req) {
		return
	}
	lr, err := s.reg.normaliseLoad(neuronapi.LoadRequest{Name: "estimate", Source: req.Source, Engine: req.Engine})
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), estimateTimeout)
	defer cancel()
	est, _, err := s.reg.estimateSource(ctx, lr.Source, lr.Engine)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, est)
}
