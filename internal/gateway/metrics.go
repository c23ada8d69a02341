package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the gateway's Prometheus metrics, in base units. The model
// label is the Model key ("<namespace>/<name>"), or "unknown" for names
// that resolve to nothing, so junk model names cannot blow up cardinality.
type metrics struct {
	registry        *prometheus.Registry
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	ttft            *prometheus.HistogramVec
	promptTokens    *prometheus.CounterVec
	completionToks  *prometheus.CounterVec
	tokensPerSecond *prometheus.HistogramVec
	coldWait        *prometheus.HistogramVec
	inFlight        *prometheus.GaugeVec
	upstreamErrors  *prometheus.CounterVec
	retries         *prometheus.CounterVec
	admissionWait   *prometheus.HistogramVec
	admissionQueue  *prometheus.GaugeVec
	admitted        prometheus.Gauge
	overloaded      *prometheus.CounterVec
}

func newMetrics() *metrics {
	latency := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cortex_gateway_requests_total",
			Help: "Requests answered, by model, API dialect (openai, anthropic, responses) and HTTP status code.",
		}, []string{"model", "api", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cortex_gateway_request_duration_seconds", Help: "Time from request to the end of the answer.", Buckets: latency,
		}, []string{"model", "api"}),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cortex_gateway_time_to_first_token_seconds", Help: "Time from request to the first generated token (a stream's first chunk, or the neuron's 103 for a plain answer).", Buckets: latency,
		}, []string{"model", "api"}),
		promptTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cortex_gateway_prompt_tokens_total", Help: "Prompt tokens processed.",
		}, []string{"model"}),
		completionToks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cortex_gateway_completion_tokens_total", Help: "Completion tokens generated.",
		}, []string{"model"}),
		tokensPerSecond: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cortex_gateway_output_tokens_per_second", Help: "Completion tokens per second of generation, per request.",
			Buckets: []float64{1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000},
		}, []string{"model"}),
		coldWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cortex_gateway_cold_start_wait_seconds", Help: "Time requests were held waiting for their model to load.",
			Buckets: []float64{.1, .5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600},
		}, []string{"model"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cortex_gateway_in_flight_requests", Help: "Requests being served, by model and node.",
		}, []string{"model", "node"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cortex_gateway_upstream_errors_total", Help: "Failed upstream attempts, by model, node and kind (connect, status, stream).",
		}, []string{"model", "node", "kind"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cortex_gateway_retries_total", Help: "Requests retried on another replica before their first byte.",
		}, []string{"model"}),
		admissionWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cortex_gateway_admission_wait_seconds", Help: "Time requests waited for room under the in-flight limits before they were relayed.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2, 5, 10, 30},
		}, []string{"model"}),
		admissionQueue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cortex_gateway_admission_waiting_requests", Help: "Requests waiting for room under the in-flight limits.",
		}, []string{"model"}),
		admitted: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cortex_gateway_admitted_requests", Help: "Requests relayed now, counted against --max-in-flight.",
		}),
		overloaded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cortex_gateway_overload_rejections_total",
			Help: "Requests turned away as overloaded, by model and reason (replica: every replica at its limit; gateway: --max-in-flight; upstream: every replica's queue full).",
		}, []string{"model", "reason"}),
	}
	m.registry.MustRegister(m.requests, m.duration, m.ttft, m.promptTokens, m.completionToks, m.tokensPerSecond,
		m.coldWait, m.inFlight, m.upstreamErrors, m.retries, m.admissionWait, m.admissionQueue, m.admitted, m.overloaded,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
