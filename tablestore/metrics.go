package tablestore

import "github.com/prometheus/client_golang/prometheus"

// Metric names.
const (
	MetricWrites     = "bulkhead_snapshot_writes_total"
	MetricLastWrite  = "bulkhead_snapshot_last_write_timestamp_seconds"
	MetricBytes      = "bulkhead_snapshot_bytes"
	MetricLoadErrors = "bulkhead_snapshot_load_errors_total"
)

type metrics struct {
	writes     *prometheus.CounterVec
	lastWrite  prometheus.Gauge
	bytes      prometheus.Gauge
	loadErrors *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricWrites,
			Help: "Route table snapshot writes, by result (ok, error)."}, []string{"result"}),
		lastWrite: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricLastWrite,
			Help: "Unix time of the last successful route table snapshot write."}),
		bytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricBytes,
			Help: "Size of the route table snapshot last written or loaded."}),
		loadErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricLoadErrors,
			Help: "Route table snapshots found unusable and ignored, by reason."}, []string{"reason"}),
	}
	// Every label value exists from the start, so rate() and alerts see 0.
	m.writes.WithLabelValues("ok")
	m.writes.WithLabelValues("error")
	for _, k := range loadErrorKinds {
		m.loadErrors.WithLabelValues(string(k))
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.writes, m.lastWrite, m.bytes, m.loadErrors} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
