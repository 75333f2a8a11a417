package dataclient

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-router/bulkhead/routing"
)

// Metric names.
const (
	MetricRoutes             = "bulkhead_routes"
	MetricProblems           = "bulkhead_problems"
	MetricRebuildDuration    = "bulkhead_rebuild_duration_seconds"
	MetricLastUpdate         = "bulkhead_table_last_update_timestamp_seconds"
	MetricConvergenceLatency = "bulkhead_convergence_latency_seconds"
	MetricKubeEvents         = "bulkhead_kube_events_total"
	MetricSynced             = "bulkhead_kube_synced"
)

type metrics struct {
	routes      prometheus.Gauge
	problems    *prometheus.GaugeVec
	rebuild     prometheus.Histogram
	lastUpdate  prometheus.Gauge
	convergence prometheus.Histogram
	events      *prometheus.CounterVec
	synced      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		routes: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricRoutes, Help: "Routes in the current table built from Kubernetes."}),
		problems: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricProblems,
			Help: "Objects (or parts of them) currently skipped or answering 503, by reason; details on the admin endpoint's /problems."}, []string{"reason"}),
		rebuild: prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricRebuildDuration,
			Help:    "Time to build the route table from the informer caches (snapshot and translation).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		lastUpdate: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricLastUpdate, Help: "Unix time when the route table was last rebuilt."}),
		convergence: prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricConvergenceLatency,
			Help:    "Time from a Kubernetes object change (EndpointSlice last-change-trigger-time where present, else when the watch delivered it) to the route table containing it being live in the proxy.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricKubeEvents,
			Help: "Watch events received, by kind and event (add, update, delete)."}, []string{"kind", "event"}),
		synced: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricSynced, Help: "1 once the informer caches have synced for the first time."}),
	}
	if reg != nil {
		reg.MustRegister(m.routes, m.problems, m.rebuild, m.lastUpdate, m.convergence, m.events, m.synced)
	}
	return m
}

// setProblems replaces the per-reason gauge values, zeroing reasons that
// disappeared so their series do not stay stuck at an old count.
func (m *metrics) setProblems(previous, current []routing.Problem) {
	counts := map[routing.Reason]int{}
	for _, p := range previous {
		counts[p.Reason] += 0
	}
	for _, p := range current {
		counts[p.Reason]++
	}
	for reason, n := range counts {
		m.problems.WithLabelValues(string(reason)).Set(float64(n))
	}
}
