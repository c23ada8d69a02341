package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
)

// keyMetrics are the per-API-key usage metrics. The key label is the key's
// name from the keys file ("anonymous" without one), so its cardinality is
// what the operator configured.
type keyMetrics struct {
	requests     *prometheus.CounterVec
	tokens       *prometheus.CounterVec
	inFlight     *prometheus.GaugeVec
	keys         prometheus.Gauge
	reloadErrors prometheus.Counter
	replicas     prometheus.Gauge
	tokenRetries prometheus.Counter
}

// Directions of the per-key token counter.
const (
	tokensIn  = "input"
	tokensOut = "output"
)

func newKeyMetrics(reg prometheus.Registerer) *keyMetrics {
	m := &keyMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cortex_gateway_key_requests_total",
			Help: "API requests by key name and outcome (ok, client_error, server_error, stream_error, rate_limited_requests, rate_limited_tokens, rate_limited_concurrency).",
		}, []string{"key", "outcome"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cortex_gateway_key_tokens_total",
			Help: "Tokens by key name and direction (input: prompt, output: completion), from the neurons' usage.",
		}, []string{"key", "direction"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cortex_gateway_key_in_flight_requests",
			Help: "Requests admitted under a key's limits and not yet finished, on this replica.",
		}, []string{"key"}),
		keys: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cortex_gateway_api_keys",
			Help: "API keys loaded from the keys file.",
		}),
		reloadErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cortex_gateway_api_keys_reload_errors_total",
			Help: "Re-reads of the keys file that failed (the keys last loaded stay in force).",
		}),
		replicas: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cortex_gateway_key_limit_replicas",
			Help: "Gateway replicas the per-key limits are divided among.",
		}),
		tokenRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cortex_gateway_neuron_token_retries_total",
			Help: "Neuron calls refused with 401 and sent again with the rotated (or previous) neuron token.",
		}),
	}
	reg.MustRegister(m.requests, m.tokens, m.inFlight, m.keys, m.reloadErrors, m.replicas, m.tokenRetries)
	return m
}

// observe counts one finished request of a key.
func (m *keyMetrics) observe(key, outcome string, prompt, output int) {
	m.requests.WithLabelValues(key, outcome).Inc()
	if prompt > 0 {
		m.tokens.WithLabelValues(key, tokensIn).Add(float64(prompt))
	}
	if output > 0 {
		m.tokens.WithLabelValues(key, tokensOut).Add(float64(output))
	}
}
