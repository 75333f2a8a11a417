package nodewatch

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names. All are registered on Options.Registerer.
const (
	MetricDraining    = "bulkhead_node_draining"
	MetricDrainReason = "bulkhead_node_drain_reason"
	MetricNodeKnown   = "bulkhead_node_known"
	MetricWatchErrors = "bulkhead_node_watch_errors_total"
)

type metrics struct {
	draining    prometheus.Gauge
	reason      *prometheus.GaugeVec
	known       prometheus.Gauge
	watchErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		draining: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricDraining,
			Help: "1 while this router's own Node is being taken out of service (cordoned, tainted for deletion, excluded from load balancers, deleted), so readiness fails on purpose."}),
		reason: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricDrainReason,
			Help: "1 for the reason the router is draining for its Node, 0 for every other reason."}, []string{"reason"}),
		known: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricNodeKnown,
			Help: "1 while the router's own Node is known from the API server; 0 before the first answer, when it does not exist or cannot be read (wrong node name, missing RBAC), and after it was deleted."}),
		watchErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricWatchErrors,
			Help: "Failed lists or watches of the router's own Node as client-go reports them (it retries a refused watch connection silently; bulkhead_apiserver_connected tracks the connection). The last decision stays in force meanwhile."}),
	}
	// Every reason exists from the start, so alerts and rate() see 0.
	for _, r := range reasons {
		m.reason.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.draining, m.reason, m.known, m.watchErrors} {
		if err := reg.Register(c); err != nil {
			return nil, errors.Join(errors.New("nodewatch: registering metrics"), err)
		}
	}
	return m, nil
}

func (m *metrics) set(draining bool, reason string) {
	m.draining.Set(b2f(draining))
	for _, r := range reasons {
		m.reason.WithLabelValues(r).Set(b2f(draining && r == reason))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
