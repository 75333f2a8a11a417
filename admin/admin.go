package admin

import (
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options are the things the admin endpoint shows.
type Options struct {
	// Gatherer is the registry whose metrics /metrics exposes.
	Gatherer prometheus.Gatherer
	// Routes renders the live route table at /routes.
	Routes http.Handler
}

// Handler returns the admin endpoint's routes.
func Handler(o Options) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	if o.Routes != nil {
		mux.Handle("GET /routes", o.Routes)
	}
	// The profiler is for finding hot-path costs under load; it is safe here
	// because the admin listener is loopback-only unless an operator says so.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("bulkhead admin\n/metrics  Prometheus metrics\n/routes   live route table (eskip; JSON with Accept: application/json)\n/debug/pprof/  profiler\n"))
	})
	return mux
}
