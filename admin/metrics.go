package admin

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MetricsHandler serves the metrics listener (-metrics-address), the one
// Prometheus scrapes: GET /metrics and nothing else. It changes nothing and
// shows no routes, status or profiles, so it may listen on the pod network
// where the admin endpoint must not.
func MetricsHandler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics(g))
	return mux
}

func metrics(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{EnableOpenMetrics: true})
}
