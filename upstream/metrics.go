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
	labelEndpoint, labelTo     = "endpoint", "to"
	labelGroup                 = "group"
)

type metrics struct {
	stateChanges *prometheus.CounterVec
	open         prometheus.Gauge
	requests     *prometheus.CounterVec
	failures     *prometheus.CounterVec
	retries      *prometheus.CounterVec
	exhausted    *prometheus.CounterVec
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
			Help: "Client requests forwarded to an endpoint group (retries not included).",
		}, []string{labelGroup}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricFailures,
			Help: "Failed attempts (transport errors, 502/503/504) per endpoint group.",
		}, []string{labelGroup}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRetries,
			Help: "Retried attempts per endpoint group.",
		}, []string{labelGroup}),
		exhausted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRetryBudgetExhausted,
			Help: "Retries refused because the group's retry budget was exhausted.",
		}, []string{labelGroup}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.stateChanges, m.open, m.requests, m.failures, m.retries, m.exhausted} {
		if err := reg.Register(c); err != nil {
			return nil, errors.Join(errors.New("upstream: registering metrics"), err)
		}
	}
	return m, nil
}

func (m *metrics) deleteGroup(label string) {
	m.requests.DeleteLabelValues(label)
	m.failures.DeleteLabelValues(label)
	m.retries.DeleteLabelValues(label)
	m.exhausted.DeleteLabelValues(label)
}
