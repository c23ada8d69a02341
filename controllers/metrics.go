package controllers

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the manager's Prometheus metrics.
type Metrics struct {
	Placements          *prometheus.CounterVec
	Loads               *prometheus.CounterVec
	LoadDuration        prometheus.Histogram
	Evictions           *prometheus.CounterVec
	UnschedulableModels prometheus.Gauge
	ModelsByPhase       *prometheus.GaugeVec
	ReconcileErrors     *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Placements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cortex_manager_placements_total",
			Help: "Placement decisions, by result (placed, unschedulable).",
		}, []string{"result"}),
		Loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cortex_manager_loads_total",
			Help: "Load orders sent to neurons, by result (accepted, ready, failed, refused).",
		}, []string{"result"}),
		LoadDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cortex_manager_load_duration_seconds",
			Help:    "Time from a load order to the replica turning Ready.",
			Buckets: []float64{0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600},
		}),
		Evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cortex_manager_evictions_total",
			Help: "Replicas unloaded by the manager, by reason (Idle, Evicted, Surplus, Deleted, Failed, Orphaned, Misplaced, Outdated).",
		}, []string{"reason"}),
		UnschedulableModels: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cortex_manager_unschedulable_models",
			Help: "Models that want a replica no node can hold.",
		}),
		ModelsByPhase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cortex_manager_models",
			Help: "Models by phase.",
		}, []string{"phase"}),
		ReconcileErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cortex_manager_reconcile_errors_total",
			Help: "Reconciles that returned an error, by controller.",
		}, []string{"controller"}),
	}
	m.Placements = register(reg, m.Placements)
	m.Loads = register(reg, m.Loads)
	m.LoadDuration = register(reg, m.LoadDuration)
	m.Evictions = register(reg, m.Evictions)
	m.UnschedulableModels = register(reg, m.UnschedulableModels)
	m.ModelsByPhase = register(reg, m.ModelsByPhase)
	m.ReconcileErrors = register(reg, m.ReconcileErrors)
	return m
}

// register registers c, or returns the collector already registered under
// the same name: a process that runs the manager twice (tests, a restart
// after losing leadership) keeps counting on the same series.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
