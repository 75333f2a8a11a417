package upstream

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names. All are registered on the Registerer handed to New.
const (
	MetricBreakerStateChanges  = "bulkhead_upstream_breaker_state_changes_total"
	MetricBreakersOpen         = "bulkhead_upstream_breakers_open"
	MetricRequests             = "bulkhead_upstream_requests_total"
	MetricFailures             = "bulkhead_upstream_failures_total"
	MetricRetries              = "bulkhead_upstream_retries_total"
	MetricRetryBudgetExhausted = "bulkhead_upstream_retry_budget_exhausted_total"
	MetricEndpointRequests     = "bulkhead_upstream_endpoint_requests_total"
	MetricEndpointFailures     = "bulkhead_upstream_endpoint_failures_total"
	MetricTimeouts             = "bulkhead_upstream_timeouts_total"
	MetricUnroutedRefused      = "bulkhead_upstream_unrouted_refused_total"
	MetricGRPCResponses        = "bulkhead_upstream_grpc_responses_total"
	labelEndpoint, labelTo     = "endpoint", "to"
	// labelGroup carries a backend's Config.Label; the name is kept so
	// that existing queries keep working.
	labelGroup = "group"
)

type metrics struct {
	stateChanges *prometheus.CounterVec
	open         prometheus.Gauge
	requests     *prometheus.CounterVec
	failures     *prometheus.CounterVec
	retries      *prometheus.CounterVec
	exhausted    *prometheus.CounterVec

	endpointRequests *prometheus.CounterVec
	endpointFailures *prometheus.CounterVec
	timeouts         *prometheus.CounterVec
	unrouted         prometheus.Counter
	mirrored         *prometheus.CounterVec
	grpcResponses    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		stateChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricBreakerStateChanges,
			Help: "Circuit breaker state changes per endpoint (ip:port) and target state.",
		}, []string{labelEndpoint, labelTo}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricBreakersOpen,
			Help: "Number of endpoint circuit breakers currently open.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRequests,
			Help: "Client requests forwarded to a backend (retries not included), per backend label.",
		}, []string{labelGroup}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricFailures,
			Help: "Failed attempts (transport errors, timeouts, 502/503/504) per backend label.",
		}, []string{labelGroup}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRetries,
			Help: "Retried attempts per backend label.",
		}, []string{labelGroup}),
		exhausted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRetryBudgetExhausted,
			Help: "Retries refused because the backend's retry budget was exhausted.",
		}, []string{labelGroup}),
		endpointRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricEndpointRequests,
			Help: "Attempts sent to an endpoint (ip:port), retries included.",
		}, []string{labelEndpoint}),
		endpointFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricEndpointFailures,
			Help: "Failed attempts (transport errors, timeouts, 502/503/504) per endpoint (ip:port).",
		}, []string{labelEndpoint}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricTimeouts,
			Help: "Attempts cut by a timeout, per backend label and kind (connect, response-header, request).",
		}, []string{labelGroup, "kind"}),
		unrouted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricUnroutedRefused,
			Help: "Requests refused (502) because no bulkhead backend chose their endpoint (Config.RefuseUnrouted).",
		}),
		mirrored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricMirrorRequests,
			Help: "Request copies of the mirror filter per mirror backend label and result (sent, failed, dropped, skipped).",
		}, []string{labelGroup, "result"}),
		grpcResponses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricGRPCResponses,
			Help: "gRPC answers of pods per backend label and status code (OK, UNAVAILABLE, ...; MISSING: the stream ended without a status; INVALID: not a code), from trailers or trailers-only answers, retried attempts included.",
		}, []string{labelGroup, "code"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.stateChanges, m.open, m.requests, m.failures, m.retries, m.exhausted, m.endpointRequests, m.endpointFailures, m.timeouts, m.unrouted, m.mirrored, m.grpcResponses} {
		if err := reg.Register(c); err != nil {
			return nil, errors.Join(errors.New("upstream: registering metrics"), err)
		}
	}
	return m, nil
}

// deleteBackend drops the series of a backend label no backend uses any
// more.
func (m *metrics) deleteBackend(label string) {
	m.requests.DeleteLabelValues(label)
	m.failures.DeleteLabelValues(label)
	m.retries.DeleteLabelValues(label)
	m.exhausted.DeleteLabelValues(label)
	for _, k := range []string{timeoutConnect, timeoutResponseHeader, timeoutRequest} {
		m.timeouts.DeleteLabelValues(label, k)
	}
	for _, r := range []string{mirrorSent, mirrorFailed, mirrorDropped, mirrorSkipped} {
		m.mirrored.DeleteLabelValues(label, r)
	}
	for _, c := range grpcCodeNames {
		m.grpcResponses.DeleteLabelValues(label, c)
	}
}
