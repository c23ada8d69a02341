// Package neurontest provides a neuron stand-in for tests of the manager and
// the gateway: a real HTTP server on loopback that speaks the neuron control
// API (internal/neuronapi), simulates device memory, loads models after a
// configurable delay, counts the calls it receives, and can keep its
// NeuronNode's heartbeat fresh against a real API server.
//
// Its inference endpoints answer canned text (see Inference); tests of real
// inference use real neuron processes.
package neurontest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"time"

	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/vram"
)

// Config describes a simulated host.
type Config struct {
	// Name is the NeuronNode name the server belongs to.
	Name string
	// Devices are the devices' total memory in bytes (one entry per GPU).
	Devices []int64
	// CPU reports the devices as kind "cpu" instead of "cuda".
	CPU bool
	// LoadDelay is how long a load stays in state loading.
	LoadDelay time.Duration
	// Token, when set, is required as a bearer token.
	Token string
	// Sizes maps a source URI to the bytes one replica needs on one device
	// (its estimate's total); sources not listed need DefaultSize.
	Sizes       map[string]int64
	DefaultSize int64
	// ComputeBytes is the part of every estimate needed on each device a
	// replica spans (compute buffers), as the real neuron reports it; the
	// rest divides among the devices.
	ComputeBytes int64
	// EstimateDelay is how long POST /models/estimate takes (a remote
	// header read).
	EstimateDelay time.Duration
	// FailSources lists source URIs whose loads fail.
	FailSources map[string]string
}

type model struct {
	status neuronapi.ModelStatus
	perDev map[int]int64
	timer  *time.Timer
}

// Server is a simulated neuron.
type Server struct {
	cfg Config
	srv *httptest.Server

	mu      sync.Mutex
	models  map[string]*model
	used    []int64
	loads   map[string]int
	unloads map[string]int
	refused int
	down    bool
	// hung, while open, holds every request until it is closed (SetHung)
	// or the client gives up: a process that stopped without dying.
	hung chan struct{}

	inf inferenceState
}

// Start starts a simulated neuron on a loopback port.
func Start(cfg Config) *Server {
	s := &Server{
		cfg:     cfg,
		models:  map[string]*model{},
		used:    make([]int64, len(cfg.Devices)),
		loads:   map[string]int{},
		unloads: map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+neuronapi.PathHealthz, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET "+neuronapi.PathModels, s.auth(s.handleModels))
	mux.HandleFunc("GET "+neuronapi.PathDiscovery, s.auth(s.handleDiscovery))
	mux.HandleFunc("POST "+neuronapi.PathLoad, s.auth(s.handleLoad))
	mux.HandleFunc("POST "+neuronapi.PathUnload, s.auth(s.handleUnload))
	mux.HandleFunc("POST "+neuronapi.PathEstimate, s.auth(s.handleEstimate))
	mux.HandleFunc("POST "+neuronapi.PathChatCompletions, s.auth(s.handleChat))
	mux.HandleFunc("POST "+neuronapi.PathCompletions, s.auth(s.handleChat))
	mux.HandleFunc("POST "+neuronapi.PathEmbeddings, s.auth(s.handleEmbeddings))
	mux.HandleFunc("POST "+neuronapi.PathTokenize, s.auth(s.handleTokenize))
	s.srv = httptest.NewServer(mux)
	return s
}

// URL is the server's base URL.
func (s *Server) URL() string { return s.srv.URL }

// Name is the NeuronNode name.
func (s *Server) Name() string { return s.cfg.Name }

// Close stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	for _, m := range s.models {
		if m.timer != nil {
			m.timer.Stop()
		}
	}
	s.mu.Unlock()
	s.srv.Close()
}

// SetDown makes every request fail at the connection level (true) or
// restores service (false), simulating a crashed neuron whose process is
// gone while its NeuronNode remains.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
	if down {
		s.srv.CloseClientConnections()
	}
}

// Loads returns how many load calls were received for a model.
func (s *Server) Loads(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loads[name]
}

// Refused counts loads refused for lack of memory.
func (s *Server) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// Unloads returns how many unload calls were received for a model that was
// present.
func (s *Server) Unloads(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unloads[name]
}

// Resident returns the models the server holds, sorted.
func (s *Server) Resident() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name := range s.models {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Snapshot returns what GET /models would answer.
func (s *Server) Snapshot() neuronapi.ModelsResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshotLocked()
}

// SetLastUsed sets a resident model's last-use time, as if it had served
// a request then.
func (s *Server) SetLastUsed(name string, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.models[name]; ok {
		m.status.LastUsed = &t
	}
}

// SetRequests sets the requests a resident model reports it accepted since
// its load, as if it had served them.
func (s *Server) SetRequests(name string, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.models[name]; ok {
		m.status.Requests = n
	}
}

// SetInFlight sets the requests a resident model reports in flight, as if
// they were being served.
func (s *Server) SetInFlight(name string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.models[name]; ok {
		m.status.InFlight = n
	}
}

// Backdate moves a resident model's load time (and last use, if any) d
// into the past, as if it had been loaded that much earlier.
func (s *Server) Backdate(name string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.models[name]
	if !ok {
		return
	}
	for _, t := range []**time.Time{&m.status.LoadedAt, &m.status.LastUsed} {
		if *t != nil {
			b := (*t).Add(-d)
			*t = &b
		}
	}
}

func (s *Server) snapshotLocked() neuronapi.ModelsResponse {
	out := neuronapi.ModelsResponse{Models: []neuronapi.ModelStatus{}, Devices: s.devicesLocked()}
	for _, m := range s.models {
		st := m.status
		st.Devices = slices.Clone(st.Devices)
		st.DeviceBytes = slices.Clone(st.DeviceBytes)
		out.Models = append(out.Models, st)
	}
	slices.SortFunc(out.Models, func(a, b neuronapi.ModelStatus) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

func (s *Server) devicesLocked() []neuronapi.Device {
	kind := "cuda"
	if s.cfg.CPU {
		kind = "cpu"
	}
	devs := make([]neuronapi.Device, len(s.cfg.Devices))
	for i, total := range s.cfg.Devices {
		devs[i] = neuronapi.Device{
			Index:       i,
			Kind:        kind,
			UUID:        fmt.Sprintf("GPU-%s-%d", s.cfg.Name, i),
			Name:        "Simulated GPU",
			MemoryTotal: total,
			MemoryFree:  total - s.used[i],
		}
	}
	return devs
}

// SetHung makes the neuron hang (true) — every request is held until the
// client gives up — or answer again (false).
func (s *Server) SetHung(hung bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case hung && s.hung == nil:
		s.hung = make(chan struct{})
	case !hung && s.hung != nil:
		close(s.hung)
		s.hung = nil
	}
}

func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		down, hung := s.down, s.hung
		s.mu.Unlock()
		if hung != nil {
			select {
			case <-hung:
			case <-r.Context().Done():
				return
			}
		}
		if down {
			// Drop the connection like a dead process would.
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					_ = conn.Close()
					return
				}
			}
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		if s.cfg.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.cfg.Token {
			writeErr(w, http.StatusUnauthorized, neuronapi.CodeUnauthorized, "missing or wrong bearer token")
			return
		}
		h(w, r)
	}
}

func (s *Server) handleModels(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Snapshot())
}

func (s *Server) handleDiscovery(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	d := neuronapi.Discovery{Node: s.cfg.Name, Version: "neurontest", Backends: []string{"cpu"}, Devices: s.devicesLocked()}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) size(uri string) int64 {
	if b, ok := s.cfg.Sizes[uri]; ok {
		return b
	}
	return s.cfg.DefaultSize
}

func (s *Server) handleEstimate(w http.ResponseWriter, r *http.Request) {
	var req neuronapi.EstimateRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, neuronapi.CodeInvalidRequest, err.Error())
		return
	}
	time.Sleep(s.cfg.EstimateDelay)
	writeJSON(w, http.StatusOK, s.estimate(req.Source.URI))
}

func (s *Server) estimate(uri string) neuronapi.Estimate {
	total := s.size(uri)
	compute := min(s.cfg.ComputeBytes, total)
	split := total - compute
	return neuronapi.Estimate{TotalBytes: total, WeightsBytes: split - split/4, KVCacheBytes: split / 4,
		ComputeBytes: compute, Layers: 32}
}

func (s *Server) handleLoad(w http.ResponseWriter, r *http.Request) {
	var req neuronapi.LoadRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Name == "" {
		writeErr(w, http.StatusBadRequest, neuronapi.CodeInvalidRequest, "bad load request")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loads[req.Name]++
	if m, ok := s.models[req.Name]; ok {
		if m.status.Source.URI != req.Source.URI {
			writeErr(w, http.StatusConflict, neuronapi.CodeConflict, "loaded with another source; unload first")
			return
		}
		code := http.StatusOK
		if m.status.State == neuronapi.StateLoading {
			code = http.StatusAccepted
		}
		writeJSON(w, code, m.status)
		return
	}
	// Reserve as the real neuron does: the estimate's need (or the
	// request's override, all of it divisible), divided by the fleet's
	// one rule over the requested devices' free memory.
	need := s.estimate(req.Source.URI).Need(req.Engine.GPULayers)
	if req.VRAMBytes > 0 {
		need = vram.Need{Split: req.VRAMBytes}
	}
	devs := slices.Clone(req.Devices)
	slices.Sort(devs)
	if len(devs) == 0 {
		devs = []int{0}
	}
	free := make([]int64, len(devs))
	for i, d := range devs {
		if d < 0 || d >= len(s.cfg.Devices) {
			writeErr(w, http.StatusBadRequest, neuronapi.CodeInvalidRequest, fmt.Sprintf("no device %d", d))
			return
		}
		free[i] = s.cfg.Devices[d] - s.used[d]
	}
	shares, ok := vram.Shares(need, free)
	if !ok {
		s.refused++
		writeErr(w, http.StatusInsufficientStorage, neuronapi.CodeInsufficientMemory,
			fmt.Sprintf("needs %d bytes across devices %v (%v free)", need.Total(len(devs)), devs, free))
		return
	}
	perDev := map[int]int64{}
	for i, d := range devs {
		perDev[d] = shares[i]
		s.used[d] += shares[i]
	}
	m := &model{perDev: perDev, status: neuronapi.ModelStatus{
		Name: req.Name, State: neuronapi.StateLoading, Source: req.Source, Engine: req.Engine,
		Devices: devs, DeviceBytes: shares, VRAMBytes: need.Total(len(devs)),
		Progress: &neuronapi.Progress{Phase: "loading"},
	}}
	s.models[req.Name] = m
	finish := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.models[req.Name] != m {
			return
		}
		now := time.Now()
		if msg, bad := s.cfg.FailSources[req.Source.URI]; bad {
			m.status.State = neuronapi.StateFailed
			m.status.Error = msg
			for d, b := range m.perDev {
				s.used[d] -= b
			}
			m.perDev = nil
			m.status.VRAMBytes = 0
			m.status.DeviceBytes = nil
		} else {
			m.status.State = neuronapi.StateReady
			m.status.LoadedAt = &now
		}
		m.status.Progress = nil
	}
	if s.cfg.LoadDelay <= 0 {
		m.timer = nil
		s.mu.Unlock()
		finish()
		s.mu.Lock()
		writeJSON(w, http.StatusOK, m.status)
		return
	}
	m.timer = time.AfterFunc(s.cfg.LoadDelay, finish)
	writeJSON(w, http.StatusAccepted, m.status)
}

func (s *Server) handleUnload(w http.ResponseWriter, r *http.Request) {
	var req neuronapi.UnloadRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Name == "" {
		writeErr(w, http.StatusBadRequest, neuronapi.CodeInvalidRequest, "bad unload request")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.models[req.Name]
	if !ok {
		w.WriteHeader(http.StatusOK)
		return
	}
	s.unloads[req.Name]++
	if m.timer != nil {
		m.timer.Stop()
	}
	for d, b := range m.perDev {
		s.used[d] -= b
	}
	delete(s.models, req.Name)
	w.WriteHeader(http.StatusOK)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, errCode, msg string) {
	writeJSON(w, code, neuronapi.ErrorBody{Error: neuronapi.ErrorDetail{Message: msg, Type: "invalid_request_error", Code: errCode}})
}
