// Package gateway is the cortex gateway program: one OpenAI + Anthropic
// endpoint for the whole fleet. It reads Models and NeuronNodes from an
// informer cache, routes each request to a ready replica (holding it while
// a cold Model loads), translates dialects, and records metrics.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// Options are the non-flag inputs of Run, set by tests.
type Options struct {
	// Listener, when set, serves the API instead of listening on Addr.
	Listener net.Listener
	// MetricsListener, when set, serves /metrics instead of MetricsAddr.
	MetricsListener net.Listener
	// PeerListener, when set, serves the peers' prefix batches instead of
	// PeerAddr (with Config.Peers).
	PeerListener net.Listener
	// Clock overrides the real clock.
	Clock clock.Clock
	// Transport overrides the HTTP transport to neurons.
	Transport http.RoundTripper
	// Ready, when set, is called once the cache has synced and the server
	// is listening.
	Ready func(apiAddr string)
}

// Gateway serves the API.
type Gateway struct {
	cfg      Config
	clock    clock.Clock
	catalog  *Catalog
	balancer *Balancer
	admit    *admission
	demand   *Demand
	metrics  *metrics
	keys     *keyring
	// Per-key limits and usage (keylimits.go, keymetrics.go).
	keyLimiters keyLimiters
	keyMetrics  *keyMetrics
	peers       peerCounter
	upstream    *http.Client
	tokens      *neuronapi.TokenSource
	ready       chan struct{}
	// streams tracks responses in progress so shutdown can wait for them.
	streams sync.WaitGroup
	// conns counts client connections and says when to ask them to close
	// (drain.go).
	conns connTracker
}

// +kubebuilder:rbac:groups=cortex.helexa.ai,resources=models,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=cortex.helexa.ai,resources=neuronnodes,verbs=get;list;watch

// Run serves until ctx ends, then drains streams for up to
// ShutdownTimeout.
func Run(ctx context.Context, cfg Config, restCfg *rest.Config, opts Options) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	logger := log.FromContext(ctx)
	g, err := New(cfg, opts)
	if err != nil {
		return err
	}
	g.keys.log = logger.WithName("api-keys")

	scheme := runtime.NewScheme()
	if err := cortexv1.AddToScheme(scheme); err != nil {
		return err
	}
	cacheOpts := cache.Options{Scheme: scheme}
	if cfg.Namespace != "" {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{cfg.Namespace: {}}
	}
	informers, err := cache.New(restCfg, cacheOpts)
	if err != nil {
		return fmt.Errorf("creating cache: %w", err)
	}
	if err := g.watch(ctx, informers); err != nil {
		return err
	}
	writer, err := client.New(restCfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("creating client: %w", err)
	}
	g.demand.Client = writer

	cacheCtx, stopCache := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCache()
	cacheErr := make(chan error, 1)
	go func() { cacheErr <- informers.Start(cacheCtx) }()
	if !informers.WaitForCacheSync(ctx) {
		return errors.New("cache did not sync")
	}
	close(g.ready)

	ln := opts.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return fmt.Errorf("listening on %s: %w", cfg.Addr, err)
		}
	}
	srv := &http.Server{
		Handler:           g.Handler(logger),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		// No WriteTimeout: it would cut long streams. Streams are bounded
		// by the upstream idle timeout instead.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 1 << 20,
		BaseContext:    func(net.Listener) context.Context { return log.IntoContext(context.WithoutCancel(ctx), logger) },
		ConnState:      g.conns.hook,
	}
	errc := make(chan error, 3)
	go func() { errc <- srv.Serve(ln) }()

	var msrv *http.Server
	mln := opts.MetricsListener
	if mln == nil && cfg.MetricsAddr != "" && cfg.MetricsAddr != "0" {
		if mln, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return fmt.Errorf("listening on %s: %w", cfg.MetricsAddr, err)
		}
	}
	var psrv *http.Server
	if peers := cfg.PeerList(); len(peers) > 0 {
		pln := opts.PeerListener
		if pln == nil {
			if pln, err = net.Listen("tcp", cfg.PeerAddr); err != nil {
				return fmt.Errorf("listening on %s: %w", cfg.PeerAddr, err)
			}
		}
		g.balancer.PeerLoadTTL = PeerLoadTTL(cfg.PeerSyncInterval)
		ps := newPrefixSync(g.balancer, g.tokens, peers, cfg.PeerSyncInterval, g.metrics.registry)
		ps.log = logger.WithName("prefix-sync")
		ps.loadChanged = g.admit.poke
		mux := http.NewServeMux()
		mux.Handle(PathPeerPrefixes, ps)
		psrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
		go func() { errc <- psrv.Serve(pln) }()
		go ps.run(ctx)
		logger.Info("Sharing routed prompt prefixes with the other gateway replicas", "peers", peers, "addr", pln.Addr().String())
	}
	if mln != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(g.metrics.registry, promhttp.HandlerOpts{}))
		msrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- msrv.Serve(mln) }()
	}
	logger.Info("Gateway serving", "addr", ln.Addr().String(), "namespace", cfg.Namespace, "anonymous", cfg.AllowAnonymous)
	if opts.Ready != nil {
		opts.Ready(ln.Addr().String())
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving: %w", err)
		}
	case err := <-cacheErr:
		if err != nil {
			return fmt.Errorf("cache stopped: %w", err)
		}
	}
	logger.Info("Shutting down; draining connections and streams", "drainPeriod", cfg.DrainPeriod, "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	g.conns.drain(sctx, cfg.DrainPeriod)
	if msrv != nil {
		_ = msrv.Shutdown(sctx)
	}
	if psrv != nil {
		_ = psrv.Shutdown(sctx)
	}
	err = srv.Shutdown(sctx)
	drained := make(chan struct{})
	go func() { g.streams.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-sctx.Done():
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

// New builds a Gateway without starting anything (tests drive Handler
// directly with a hand-fed Catalog).
func New(cfg Config, opts Options) (*Gateway, error) {
	tokens, err := newNeuronTokens(cfg)
	if err != nil {
		return nil, fmt.Errorf("neuron token: %w", err)
	}
	clk := opts.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	keys, err := loadKeyring(cfg.APIKeysFile, clk)
	if err != nil {
		return nil, err
	}
	transport := opts.Transport
	if transport == nil {
		transport = &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}
	}
	balancer := NewBalancer()
	balancer.HitEpsilon = cfg.PrefixImbalance
	g := &Gateway{
		cfg:      cfg,
		clock:    clk,
		catalog:  NewCatalog(),
		balancer: balancer,
		demand:   &Demand{Clock: clk, Interval: cfg.DemandInterval},
		metrics:  newMetrics(),
		keys:     keys,
		upstream: &http.Client{Transport: transport},
		tokens:   tokens,
		ready:    make(chan struct{}),
	}
	g.initKeys()
	g.admit = newAdmission(cfg.Admission, g.balancer, g.metrics)
	return g, nil
}

// Catalog exposes the routing table (tests feed it directly).
func (g *Gateway) Catalog() *Catalog { return g.catalog }

// watch feeds the catalog from informers.
func (g *Gateway) watch(ctx context.Context, informers cache.Cache) error {
	mi, err := informers.GetInformer(ctx, &cortexv1.Model{})
	if err != nil {
		return fmt.Errorf("watching Models: %w", err)
	}
	if _, err := mi.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { g.onModel(obj, false) },
		UpdateFunc: func(_, obj any) { g.onModel(obj, false) },
		DeleteFunc: func(obj any) { g.onModel(obj, true) },
	}); err != nil {
		return err
	}
	ni, err := informers.GetInformer(ctx, &cortexv1.NeuronNode{})
	if err != nil {
		return fmt.Errorf("watching NeuronNodes: %w", err)
	}
	_, err = ni.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { g.onNode(obj, false) },
		UpdateFunc: func(_, obj any) { g.onNode(obj, false) },
		DeleteFunc: func(obj any) { g.onNode(obj, true) },
	})
	return err
}

func (g *Gateway) onModel(obj any, deleted bool) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj, deleted = d.Obj, true
	}
	m, ok := obj.(*cortexv1.Model)
	if !ok {
		return
	}
	if deleted || !m.DeletionTimestamp.IsZero() {
		g.catalog.DeleteModel(m.Key())
		return
	}
	g.catalog.UpsertModel(m)
}

func (g *Gateway) onNode(obj any, deleted bool) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj, deleted = d.Obj, true
	}
	nn, ok := obj.(*cortexv1.NeuronNode)
	if !ok {
		return
	}
	if deleted {
		g.catalog.DeleteNode(nn.Name)
		return
	}
	g.catalog.UpsertNode(nn)
}

// Handler returns the API handler.
func (g *Gateway) Handler(logger logr.Logger) http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = g.errorHandler
	e.Use(g.recoverer, g.requestID, g.access(logger), g.guardWrites, g.limitBody, g.authenticate)

	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	e.GET("/readyz", func(c echo.Context) error {
		select {
		case <-g.ready:
			return c.String(http.StatusOK, "ok")
		default:
			return c.String(http.StatusServiceUnavailable, "cache not synced")
		}
	})
	e.GET("/health", g.health)
	e.GET("/v1/models", g.listModels)
	e.GET("/v1/models/*", g.getModel)
	e.POST("/v1/chat/completions", g.chatCompletions)
	e.POST("/v1/completions", g.completions)
	e.POST("/v1/embeddings", g.embeddings)
	e.POST("/v1/responses", g.responses)
	e.POST("/v1/messages", g.messages)
	e.POST("/v1/messages/count_tokens", g.countTokens)
	return e
}
