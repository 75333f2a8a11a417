package dataclient

import (
	"time"

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
	MetricConnected          = "bulkhead_apiserver_connected"
	MetricLastSync           = "bulkhead_apiserver_last_sync_timestamp_seconds"
	MetricReconnects         = "bulkhead_apiserver_reconnects_total"
	MetricRelists            = "bulkhead_apiserver_relists_total"
	MetricResumes            = "bulkhead_apiserver_watch_resumes_total"
	MetricTableSource        = "bulkhead_table_source"
	MetricSnapshotAge        = "bulkhead_table_snapshot_age_seconds"
	MetricGuardHolding       = "bulkhead_deletion_guard_holding"
	MetricGuardHolds         = "bulkhead_deletion_guard_holds_total"
	MetricGuardHeldObjects   = "bulkhead_deletion_guard_held_objects"
	MetricGuardReleased      = "bulkhead_deletion_guard_released_total"
	MetricEndpointUpdates    = "bulkhead_backend_endpoint_updates_total"
	MetricRouteUpdates       = "bulkhead_route_updates_total"
	MetricRebuilds           = "bulkhead_rebuilds_total"
)

type metrics struct {
	routes      prometheus.Gauge
	problems    *prometheus.GaugeVec
	rebuild     prometheus.Histogram
	lastUpdate  prometheus.Gauge
	convergence prometheus.Histogram
	events      *prometheus.CounterVec
	synced      prometheus.Gauge
	connected   prometheus.Gauge
	lastSync    prometheus.Gauge
	reconnects  prometheus.Counter
	relists     *prometheus.CounterVec
	resumes     *prometheus.CounterVec
	source      *prometheus.GaugeVec
	holding     prometheus.Gauge
	holds       prometheus.Counter
	heldObjects *prometheus.GaugeVec
	released    *prometheus.CounterVec
	// endpointUpdates counts backends whose endpoints went to the
	// upstream layer; routeUpdates the route tables given to skipper
	// (each one rebuilds skipper's matcher, which an endpoint change must
	// never do).
	endpointUpdates prometheus.Counter
	routeUpdates    prometheus.Counter
	// rebuilds counts rebuilds by kind: full (translation of everything)
	// or endpoints (the endpoints of the Services whose slices changed).
	rebuilds *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, c *Client) *metrics {
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
			Buckets: []float64{0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricKubeEvents,
			Help: "Watch events received, by kind and event (add, update, delete)."}, []string{"kind", "event"}),
		synced: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricSynced, Help: "1 once the informer caches have synced for the first time."}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricConnected,
			Help: "1 while the API server is reachable and the informers are synced (after an outage: once it answers again; relists may still be waiting for their moment); 0 during an outage (the table keeps serving)."}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricLastSync, Help: "Unix time of the last successful (re)sync with the API server."}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricReconnects,
			Help: "Times the API server was regained after an outage (resume mode: watches resumed or relisted; restart mode: informers restarted on fresh connections)."}),
		relists: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRelists,
			Help: "Full lists of a resource sent to the API server (a LIST, or a streaming watch-list), the first one at start included."}, []string{"resource"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricResumes,
			Help: "Watches of a resource started from a known resourceVersion (no list); the server may refuse one as too old (410), and a relist follows."}, []string{"resource"}),
		source: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricTableSource,
			Help: "1 for where the serving table came from: apiserver, or snapshot (the stored last-known-good table)."}, []string{"source"}),
		holding: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricGuardHolding,
			Help: "1 while the deletion guard holds back removals it cannot explain (additions and changes are never held)."}),
		holds: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricGuardHolds,
			Help: "Times the deletion guard started holding removals (one per burst judged mass removal)."}),
		heldObjects: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricGuardHeldObjects,
			Help: "Objects whose removal the deletion guard holds, by kind (Ingress; HTTPRoute; Service: its endpoints)."}, []string{"kind"}),
		released: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricGuardReleased,
			Help: "Held objects no longer held, by why: expired (hold period over, removal applied), confirmed (by an operator, applied), back (the object returned)."}, []string{"why"}),
		endpointUpdates: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricEndpointUpdates,
			Help: "Backends whose endpoint list was handed to the upstream layer (no route table change)."}),
		rebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRebuilds,
			Help: "Rebuilds by kind: full (every Ingress translated) or endpoints (only the endpoints of Services whose EndpointSlices changed)."}, []string{"kind"}),
		routeUpdates: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricRouteUpdates,
			Help: "Route tables handed to skipper (each rebuilds its matcher); endpoint changes alone never cause one."}),
	}
	snapshotAge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricSnapshotAge,
		Help: "Age of the stored table being served; 0 when the table comes from the API server."}, func() float64 {
		st := c.Status()
		if st.Table.Source != SourceSnapshot {
			return 0
		}
		return time.Since(st.Table.SavedAt).Seconds()
	})
	if reg != nil {
		reg.MustRegister(m.routes, m.problems, m.rebuild, m.lastUpdate, m.convergence, m.events, m.synced,
			m.connected, m.lastSync, m.reconnects, m.relists, m.resumes, m.source, m.holding, m.holds, m.heldObjects, m.released, snapshotAge,
			m.endpointUpdates, m.routeUpdates, m.rebuilds)
	}
	return m
}

func (m *metrics) setSource(source string) {
	for _, s := range []string{SourceAPIServer, SourceSnapshot} {
		if s == source {
			m.source.WithLabelValues(s).Set(1)
		} else {
			m.source.WithLabelValues(s).Set(0)
		}
	}
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
