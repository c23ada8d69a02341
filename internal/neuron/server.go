// Package neuron is the neuron daemon: one per GPU host, it holds several
// models at once in the inference engine, serves an OpenAI-compatible API
// for them, takes load and unload orders from the manager, and registers
// the host as a NeuronNode.
//
// The HTTP side is plain net/http: the neuron has a dozen fixed routes, and
// its hot path is SSE streaming, where direct control of headers, flushing
// and the request context matters more than a framework's conveniences.
package neuron

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/helexa-ai/cortex/internal/devices"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/sources"
	"github.com/helexa-ai/cortex/internal/stallguard"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// Server is a running neuron.
type Server struct {
	cfg   Config
	log   logr.Logger
	reg   *registry
	met   *metrics
	inv   devices.Inventory
	token *neuronapi.TokenSource

	ln      net.Listener
	srv     *http.Server
	handler http.Handler
	ready   atomic.Bool

	reqCtx     context.Context // parent of every request; canceled after the drain
	cancelReqs context.CancelFunc
	cancelBG   context.CancelFunc // background loads and registration
	regDone    chan struct{}
	reggr      *registrar
	done       chan struct{}
	err        error
	ownsInv    bool
	// compute is what computes here, read once at start for /discovery.
	compute neuronapi.Discovery
}

// Run runs a neuron until ctx ends (SIGTERM in cmd/neuron), then shuts it
// down gracefully: it stops accepting, lets requests in flight finish for
// up to ShutdownTimeout, cancels what remains and unloads every model.
func Run(ctx context.Context, cfg Config) error {
	s, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	return s.Wait()
}

// Start starts a neuron and returns once it is listening; it stops when ctx
// ends. Tests use it to run a neuron in process: Start with Listener (or
// Addr "127.0.0.1:0"), then URL.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	log := logr.FromContextOrDiscard(ctx).WithName("neuron")
	s := &Server{cfg: cfg, log: log, met: newMetrics(), done: make(chan struct{}), regDone: make(chan struct{})}

	token, err := newTokenSource(log, cfg) // the file must be readable at start
	if err != nil {
		return nil, err
	}
	s.token = token
	if !s.token.Enabled() {
		log.Info("Serving without authentication (--allow-unauthenticated)")
	}

	s.inv = cfg.Devices
	if s.inv == nil {
		inv, err := devices.Open(logr.NewContext(ctx, log), devices.Options{MemoryLimit: cfg.MemoryLimit, DisableNVML: cfg.DisableNVML})
		if err != nil {
			return nil, fmt.Errorf("opening the device inventory: %w", err)
		}
		s.inv, s.ownsInv = inv, true
	}

	bg, cancelBG := context.WithCancel(logr.NewContext(context.WithoutCancel(ctx), log))
	s.cancelBG = cancelBG
	s.reqCtx, s.cancelReqs = context.WithCancel(logr.NewContext(context.WithoutCancel(ctx), log))
	res := sources.New(sources.Options{CacheDir: cfg.CacheDir, Client: cfg.HTTPClient, HFEndpoint: cfg.HFEndpoint, HFToken: cfg.HFToken})
	reg := &registry{
		log: log, eng: cfg.Engine, inv: s.inv, res: res, met: s.met,
		threads: cfg.Threads, queue: cfg.QueueSize, drain: cfg.UnloadDrainTimeout,
		baseCtx: bg, now: time.Now, models: map[string]*model{},
	}
	s.reg = reg
	s.met.reg.MustRegister(newStateCollector(reg))
	s.handler = s.routes()

	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			s.cleanup()
			return nil, fmt.Errorf("listening on %s: %w", cfg.Addr, err)
		}
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           stallguard.Handler(s.handler, cfg.ClientWriteTimeout),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		// ReadTimeout covers the headers and the body; Go clears the read
		// deadline once the body is read, so it never cuts a stream.
		ReadTimeout:    cfg.ReadTimeout,
		IdleTimeout:    cfg.IdleTimeout,
		MaxHeaderBytes: 1 << 20,
		BaseContext:    func(net.Listener) context.Context { return s.reqCtx },
		ErrorLog:       nil,
	}

	reggr, err := newRegistrar(ctx, s, cfg)
	if err != nil {
		_ = ln.Close()
		s.cleanup()
		return nil, err
	}
	reg.onChange = reggr.trigger
	s.reggr = reggr

	serveErr := make(chan error, 1)
	go func() { serveErr <- s.srv.Serve(ln) }()
	go func() {
		defer close(s.regDone)
		reggr.run(bg)
	}()
	s.ready.Store(true)
	log.Info("Neuron serving", "addr", ln.Addr().String(), "node", cfg.NodeName, "engine", cfg.Engine.Version(), "backends", cfg.Engine.Backends())
	s.compute = inspectCompute(s.inv, cfg)
	if s.compute.NoGPU != "" {
		log.Info("No GPU: serving on the CPU", "reason", s.compute.NoGPU, "cpuBackend", s.compute.CPUBackend, "libraries", s.compute.Libraries)
	} else {
		log.Info("Compute backends", "cpuBackend", s.compute.CPUBackend, "libraries", s.compute.Libraries)
	}

	go func() {
		var err error
		select {
		case <-ctx.Done():
		case err = <-serveErr:
			log.Error(err, "HTTP server stopped")
		}
		s.err = errors.Join(err, s.shutdown(reggr))
		close(s.done)
	}()
	return s, nil
}

func (s *Server) cleanup() {
	s.cancelBG()
	s.cancelReqs()
	if s.ownsInv {
		_ = s.inv.Close()
	}
}

// shutdown drains and stops everything.
func (s *Server) shutdown(reggr *registrar) error {
	s.ready.Store(false)
	s.log.Info("Shutting down: draining requests", "timeout", s.cfg.ShutdownTimeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	err := s.srv.Shutdown(ctx)
	cancel()
	if err != nil {
		s.log.Info("Drain timed out; canceling requests in flight")
		s.cancelReqs()
		_ = s.srv.Close()
		err = nil
	}
	s.cancelReqs()
	uctx, ucancel := context.WithTimeout(context.Background(), s.cfg.UnloadDrainTimeout+10*time.Second)
	s.reg.closeAll(uctx)
	ucancel()
	s.cancelBG()
	<-s.regDone
	reggr.final()
	if s.ownsInv {
		_ = s.inv.Close()
	}
	s.log.Info("Neuron stopped")
	return err
}

// Wait blocks until the neuron has shut down and returns why it stopped
// abnormally, if it did.
func (s *Server) Wait() error {
	<-s.done
	return s.err
}

// Addr is the address the neuron listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the neuron's base URL on its listener.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Handler is the neuron's HTTP handler (for httptest servers).
func (s *Server) Handler() http.Handler { return s.handler }

// routes builds the handler: recovery, metrics and logging, then
// authentication, around the mux.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	get := func(path string, h http.HandlerFunc) { mux.Handle(path, method(http.MethodGet, h)) }
	post := func(path string, h http.HandlerFunc) { mux.Handle(path, method(http.MethodPost, h)) }
	get(neuronapi.PathHealthz, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	get(neuronapi.PathReadyz, func(w http.ResponseWriter, r *http.Request) {
		if !s.ready.Load() {
			writeError(w, openai.Unavailable("The neuron is shutting down."))
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	metricsHandler := promhttp.HandlerFor(s.met.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	get(neuronapi.PathMetrics, metricsHandler.ServeHTTP)
	get(neuronapi.PathVersion, s.handleVersion)
	get(neuronapi.PathDiscovery, s.handleDiscovery)
	get(neuronapi.PathModels, s.handleModels)
	post(neuronapi.PathLoad, s.handleLoad)
	post(neuronapi.PathUnload, s.handleUnload)
	post(neuronapi.PathEstimate, s.handleEstimate)
	post(neuronapi.PathTokenize, s.handleTokenize)
	post(neuronapi.PathChatCompletions, s.handleChat)
	post(neuronapi.PathCompletions, s.handleCompletions)
	post(neuronapi.PathEmbeddings, s.handleEmbeddings)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, openai.NotFound("No route for %s %s.", r.Method, r.URL.Path))
	})
	return s.recoverer(s.observe(s.authenticate(mux)))
}

// method restricts h to one method (HEAD too for GET), answering others
// with a 405 in the error envelope rather than the mux's plain text.
func method(m string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != m && (m != http.MethodGet || r.Method != http.MethodHead) {
			w.Header().Set("Allow", m)
			writeError(w, openai.NewError(http.StatusMethodNotAllowed, openai.TypeInvalidRequest, "method_not_allowed", "",
				"Method %s is not allowed on %s; use %s.", r.Method, r.URL.Path, m))
			return
		}
		h(w, r)
	})
}

// exempt paths answer without a token: probes and the metrics scrape,
// which carry nothing a caller could abuse.
func exempt(path string) bool {
	return path == neuronapi.PathHealthz || path == neuronapi.PathReadyz || path == neuronapi.PathMetrics
}

func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.token.Enabled() || exempt(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		auth := r.Header.Get("Authorization")
		if len(auth) < 7 || !strings.EqualFold(auth[:7], "bearer ") {
			writeError(w, openai.Unauthorized("Missing bearer token: send Authorization: Bearer <token>."))
			return
		}
		if !s.token.Accepts(strings.TrimSpace(auth[7:])) {
			writeError(w, openai.Unauthorized("Incorrect bearer token."))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// reqInfo is filled in by handlers for the metrics and log line.
type reqInfo struct {
	model string
}

type reqInfoKey struct{}

func infoOf(r *http.Request) *reqInfo {
	if ri, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
		return ri
	}
	return &reqInfo{}
}

// statusWriter records the status and whether anything was written. It
// unwraps, so http.ResponseController and sse.Writer reach the flusher.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// Informational: the final status is still to come.
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// endpointOf is the route label: known paths only, so a scanner cannot
// mint label values.
func endpointOf(path string) string {
	switch path {
	case neuronapi.PathHealthz, neuronapi.PathReadyz, neuronapi.PathMetrics, neuronapi.PathVersion,
		neuronapi.PathDiscovery, neuronapi.PathModels, neuronapi.PathLoad, neuronapi.PathUnload,
		neuronapi.PathEstimate, neuronapi.PathTokenize, neuronapi.PathChatCompletions,
		neuronapi.PathCompletions, neuronapi.PathEmbeddings:
		return path
	}
	return "other"
}

func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &reqInfo{}
		log := s.log.WithValues("method", r.Method, "path", r.URL.Path)
		if id := r.Header.Get("X-Request-Id"); id != "" {
			log = log.WithValues("requestID", id)
		}
		ctx := logr.NewContext(context.WithValue(r.Context(), reqInfoKey{}, ri), log)
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(ctx))
		status := sw.status
		if !sw.wrote {
			status = 499 // the client left before any answer
		}
		ep := endpointOf(r.URL.Path)
		s.met.requests.WithLabelValues(ri.model, ep, fmt.Sprint(status)).Inc()
		if ep != neuronapi.PathMetrics && ep != neuronapi.PathHealthz && ep != neuronapi.PathReadyz {
			s.met.duration.WithLabelValues(ri.model, ep).Observe(time.Since(start).Seconds())
			lvl := 1
			if status >= 500 {
				lvl = 0
			}
			log.V(lvl).Info("Request", "status", status, "model", ri.model, "duration", time.Since(start).String())
		}
	})
}

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v) // the server's own way to abort a response
			}
			s.log.Error(fmt.Errorf("panic: %v", v), "Handler panicked", "path", r.URL.Path, "stack", string(debug.Stack()))
			if sw.wrote {
				panic(http.ErrAbortHandler) // cut the connection: the answer is broken
			}
			writeError(sw, openai.ServerError("The server had an error while processing your request."))
		}()
		next.ServeHTTP(sw, r)
	})
}
