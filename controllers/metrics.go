package controllers

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/placement"
)

// Metrics are the manager's Prometheus metrics. Call sites use the typed
// methods below, so every label value comes from a constant of the
// package that decides it (placement's reasons, the phases of the API).
type Metrics struct {
	placements          *prometheus.CounterVec
	loads               *prometheus.CounterVec
	loadDuration        prometheus.Histogram
	evictions           *prometheus.CounterVec
	unschedulableModels prometheus.Gauge
	modelsByPhase       *prometheus.GaugeVec
	reconcileErrors     *prometheus.CounterVec
}

// LoadResult is a label value of cortex_manager_loads_total.
type LoadResult string

// The results of a load order.
const (
	// LoadAccepted: the neuron accepted the order.
	LoadAccepted LoadResult = "accepted"
	// LoadRefused: the neuron refused it or could not be reached.
	LoadRefused LoadResult = "refused"
	// LoadReady: the replica turned Ready.
	LoadReady LoadResult = "ready"
	// LoadFailed: the replica failed while loading.
	LoadFailed LoadResult = "failed"
)

// Controller names a reconciler in cortex_manager_reconcile_errors_total.
type Controller string

// The manager's reconcilers.
const (
	ControllerModel      Controller = "model"
	ControllerNeuronNode Controller = "neuronnode"
)

// phases lists every Model phase, so each has a series even at 0.
var phases = []cortexv1.ModelPhase{cortexv1.ModelPhasePending, cortexv1.ModelPhaseLoading, cortexv1.ModelPhaseReady,
	cortexv1.ModelPhaseDegraded, cortexv1.ModelPhaseIdle, cortexv1.ModelPhaseUnschedulable, cortexv1.ModelPhaseFailed,
	cortexv1.ModelPhaseTerminating}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		placements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cortex_manager_placements_total",
			Help: "Placement decisions, by result (placed, unschedulable).",
		}, []string{"result"}),
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cortex_manager_loads_total",
			Help: "Load orders sent to neurons, by result (accepted, ready, failed, refused).",
		}, []string{"result"}),
		loadDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cortex_manager_load_duration_seconds",
			Help:    "Time from a load order to the replica turning Ready.",
			Buckets: []float64{0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600},
		}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cortex_manager_evictions_total",
			Help: "Replicas unloaded by the manager, by reason (Idle, Evicted, Surplus, Deleted, Failed, Orphaned, Misplaced, Outdated).",
		}, []string{"reason"}),
		unschedulableModels: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cortex_manager_unschedulable_models",
			Help: "Models that want a replica no node can hold.",
		}),
		modelsByPhase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cortex_manager_models",
			Help: "Models by phase.",
		}, []string{"phase"}),
		reconcileErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cortex_manager_reconcile_errors_total",
			Help: "Reconciles that returned an error, by controller.",
		}, []string{"controller"}),
	}
	m.placements = register(reg, m.placements)
	m.loads = register(reg, m.loads)
	m.loadDuration = register(reg, m.loadDuration)
	m.evictions = register(reg, m.evictions)
	m.unschedulableModels = register(reg, m.unschedulableModels)
	m.modelsByPhase = register(reg, m.modelsByPhase)
	m.reconcileErrors = register(reg, m.reconcileErrors)
	return m
}

// ObserveEviction counts a replica the manager unloaded, by the planner's
// reason.
func (m *Metrics) ObserveEviction(reason placement.UnloadReason) {
	m.evictions.WithLabelValues(string(reason)).Inc()
}

// ObserveLoad counts a load order's outcome.
func (m *Metrics) ObserveLoad(result LoadResult) { m.loads.WithLabelValues(string(result)).Inc() }

// ObserveLoadReady counts a replica that turned Ready, d after its order.
func (m *Metrics) ObserveLoadReady(d time.Duration) {
	m.loadDuration.Observe(d.Seconds())
	m.ObserveLoad(LoadReady)
}

// ObservePlacement counts a placement decision: placed, or not.
func (m *Metrics) ObservePlacement(placed bool) {
	if placed {
		m.placements.WithLabelValues("placed").Inc()
	} else {
		m.placements.WithLabelValues("unschedulable").Inc()
	}
}

// ObserveReconcileError counts a reconcile of c that returned an error.
func (m *Metrics) ObserveReconcileError(c Controller) {
	m.reconcileErrors.WithLabelValues(string(c)).Inc()
}

// SetFleet sets the fleet-wide gauges: Models per phase and how many are
// unschedulable.
func (m *Metrics) SetFleet(byPhase map[cortexv1.ModelPhase]int, unschedulable int) {
	m.unschedulableModels.Set(float64(unschedulable))
	for _, p := range phases {
		m.modelsByPhase.WithLabelValues(string(p)).Set(float64(byPhase[p]))
	}
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
