// Package manager is the cortex manager program: controller-runtime
// reconcilers that place Models on NeuronNodes.
package manager

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/controllers"
	"github.com/helexa-ai/cortex/internal/envflag"
	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// Config is the manager's configuration.
type Config struct {
	// MetricsAddr serves /metrics ("0" disables).
	MetricsAddr string
	// ProbeAddr serves /healthz and /readyz ("0" disables).
	ProbeAddr string
	// LeaderElect turns on leader election (one active manager).
	LeaderElect bool
	// LeaderElectionNamespace holds the election Lease (default: the pod's
	// namespace when in cluster).
	LeaderElectionNamespace string
	// NeuronTokenFile holds the bearer token neurons require.
	NeuronTokenFile string
	// NeuronToken is the token itself (tests; the file wins when both are
	// set).
	NeuronToken string
	// StaleAfter is how old a NeuronNode heartbeat may be before the node
	// turns NotReady.
	StaleAfter time.Duration
	// PollInterval is how often each Ready neuron is polled.
	PollInterval time.Duration
	// NeuronTimeout bounds one control call to a neuron.
	NeuronTimeout time.Duration
	// WaitingWindow is how fresh a Model's demand annotation must be for
	// requests to count as waiting for it at the gateway; a waiting Model
	// with no replica may evict idle replicas of equal priority. Keep it
	// above the gateway's --demand-interval.
	WaitingWindow time.Duration
	// ColdStartWorth, in GiB·h, is what one cold start is worth in idle
	// GPU memory-time: a Model without spec.keepAlive gets the keep-alive
	// with the lowest expected cost over its own idle gaps, each gap
	// longer than the keep-alive costing a cold start and each gap within
	// it the replica's memory held. 0 turns learning off (15m for all).
	ColdStartWorth float64
	// ModelWorkers is how many Model passes run at once; their planning is
	// one at a time, their calls to neurons and the API server overlap.
	ModelWorkers int
}

// DefaultConfig returns the defaults the flags start from.
func DefaultConfig() Config {
	return Config{
		MetricsAddr:    ":8080",
		ProbeAddr:      ":8081",
		StaleAfter:     30 * time.Second,
		PollInterval:   5 * time.Second,
		NeuronTimeout:  10 * time.Second,
		WaitingWindow:  controllers.DefaultWaitingWindow,
		ColdStartWorth: controllers.DefaultColdStartWorth,
		ModelWorkers:   4,
	}
}

// BindFlags registers the flags on fs, with environment fallbacks
// (CORTEX_<FLAG>, dashes as underscores).
func (c *Config) BindFlags(fs *flag.FlagSet) {
	envflag.StringVar(fs, &c.MetricsAddr, "metrics-bind-address", "address serving /metrics; 0 disables")
	envflag.StringVar(fs, &c.ProbeAddr, "health-probe-bind-address", "address serving /healthz and /readyz")
	envflag.BoolVar(fs, &c.LeaderElect, "leader-elect", "enable leader election")
	envflag.StringVar(fs, &c.LeaderElectionNamespace, "leader-election-namespace", "namespace of the leader election Lease")
	envflag.StringVar(fs, &c.NeuronTokenFile, "neuron-token-file", "file holding the neurons' bearer token")
	envflag.DurationVar(fs, &c.StaleAfter, "heartbeat-stale-after", "a NeuronNode whose heartbeat is older turns NotReady")
	envflag.DurationVar(fs, &c.PollInterval, "poll-interval", "how often each Ready neuron is polled")
	envflag.DurationVar(fs, &c.NeuronTimeout, "neuron-timeout", "timeout of one control call to a neuron")
	envflag.DurationVar(fs, &c.WaitingWindow, "waiting-window", "a Model whose demand signal is younger has requests waiting at the gateway")
	envflag.Float64Var(fs, &c.ColdStartWorth, "cold-start-worth", "GiB·h of idle GPU memory one cold start is worth, for the keep-alive learned for Models without spec.keepAlive; 0: no learning, 15m")
	envflag.IntVar(fs, &c.ModelWorkers, "model-workers", "Model passes at once (planning stays one at a time)")
}

// Validate checks the configuration once.
func (c *Config) Validate() error {
	var errs []error
	if c.StaleAfter <= 0 {
		errs = append(errs, errors.New("heartbeat-stale-after must be positive"))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, errors.New("poll-interval must be positive"))
	}
	if c.NeuronTimeout <= 0 {
		errs = append(errs, errors.New("neuron-timeout must be positive"))
	}
	if c.WaitingWindow <= 0 {
		errs = append(errs, errors.New("waiting-window must be positive"))
	}
	if !(c.ColdStartWorth >= 0 && c.ColdStartWorth <= 1e6) { // NaN fails too
		errs = append(errs, fmt.Errorf("cold-start-worth must be between 0 and 1e6 GiB·h, got %v", c.ColdStartWorth))
	}
	if c.ModelWorkers < 1 || c.ModelWorkers > 64 {
		errs = append(errs, fmt.Errorf("model-workers must be 1..64, not %d", c.ModelWorkers))
	}
	if c.PollInterval > c.StaleAfter {
		errs = append(errs, fmt.Errorf("poll-interval (%s) must not exceed heartbeat-stale-after (%s)", c.PollInterval, c.StaleAfter))
	}
	return errors.Join(errs...)
}

// Scheme holds the types the manager reads and writes.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := cortexv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// Options are the non-flag inputs of Run, set by tests.
type Options struct {
	// Neurons overrides the HTTP neuron client.
	Neurons controllers.NeuronClient
	// Clock overrides the real clock.
	Clock clock.PassiveClock
	// ReadyFunc, when set, is called once the controllers are running.
	ReadyFunc func()
	// SkipNameValidation lets one process start the manager more than once
	// (tests that restart it).
	SkipNameValidation bool
}

// Run runs the manager until ctx ends.
func Run(ctx context.Context, cfg Config, restCfg *rest.Config, opts Options) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	logger := log.FromContext(ctx)
	// The token file is re-read while the manager runs, so rotating its
	// Secret needs no restart (see neuronapi.TokenSource).
	tokens, err := neuronapi.NewTokenSource(cfg.NeuronTokenFile, cfg.NeuronToken, neuronapi.TokenOptions{Log: logger.WithName("neuron-token")})
	if err != nil {
		return fmt.Errorf("neuron token: %w", err)
	}
	neurons := opts.Neurons
	if neurons == nil {
		c := neuronapi.NewClient("")
		c.Tokens = tokens
		c.Timeout = cfg.NeuronTimeout
		neurons = c
	}
	clk := opts.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}

	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                        Scheme(),
		Metrics:                       metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress:        cfg.ProbeAddr,
		LeaderElection:                cfg.LeaderElect,
		LeaderElectionID:              "cortex-manager.cortex.helexa.ai",
		LeaderElectionNamespace:       cfg.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Logger:                        logger,
		Controller:                    config.Controller{SkipNameValidation: &opts.SkipNameValidation},
	})
	if err != nil {
		return fmt.Errorf("creating controller manager: %w", err)
	}
	metrics := controllers.NewMetrics(ctrlmetrics.Registry)
	fleet := controllers.NewFleet()
	models := &controllers.ModelReconciler{
		Client:         mgr.GetClient(),
		Neurons:        neurons,
		Fleet:          fleet,
		Clock:          clk,
		Recorder:       mgr.GetEventRecorder("cortex-manager"),
		Metrics:        metrics,
		StaleAfter:     cfg.StaleAfter,
		WaitingWindow:  cfg.WaitingWindow,
		ColdStartWorth: cfg.ColdStartWorth,
		Workers:        cfg.ModelWorkers,
	}
	if err := models.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Model controller: %w", err)
	}
	nodes := &controllers.NeuronNodeReconciler{
		Client:       mgr.GetClient(),
		Neurons:      neurons,
		Fleet:        fleet,
		Clock:        clk,
		StaleAfter:   cfg.StaleAfter,
		PollInterval: cfg.PollInterval,
		Notify:       models.Wake,
		Metrics:      metrics,
	}
	if err := nodes.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the NeuronNode controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	if opts.ReadyFunc != nil {
		go func() {
			if mgr.GetCache().WaitForCacheSync(ctx) {
				opts.ReadyFunc()
			}
		}()
	}
	logger.Info("Starting manager", "leaderElection", cfg.LeaderElect, "staleAfter", cfg.StaleAfter, "pollInterval", cfg.PollInterval)
	return mgr.Start(ctx)
}
