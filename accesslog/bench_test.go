package accesslog

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/zalando/skipper/eskip"
	"k8s.io/apimachinery/pkg/types"

	"github.com/bulkhead-router/bulkhead/record"
	"github.com/bulkhead-router/bulkhead/routing"
)

// benchWriter is a ResponseWriter that costs nothing, so the benchmark
// shows the access log's own cost.
type benchWriter struct{ h http.Header }

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *benchWriter) WriteHeader(int)             {}

// BenchmarkHandler is the cost per request of the access log around a
// handler that records what the upstream layer would (a route, a backend,
// one attempt), against the same handler without it. The sink discards.
func BenchmarkHandler(b *testing.B) {
	routes := make([]*routing.Route, 10000)
	for i := range routes {
		routes[i] = &routing.Route{Eskip: &eskip.Route{Id: "kube_ns__web_" + string(rune('a'+i/1000%26)) + string(rune('a'+i/100%10)) + string(rune('a'+i%100/10)) + string(rune('a'+i%10))},
			Ingress: types.NamespacedName{Namespace: "ns", Name: "web"}}
	}
	routeID := routes[5000].Eskip.Id
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec := record.FromContext(r.Context()); rec != nil {
			rec.RouteID, rec.Backend = routeID, "ns/web:80"
			a := rec.AddAttempt("10.0.0.1:8080", "closed", time.Now())
			a.Status, a.Duration = 200, time.Millisecond
		}
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("hello, world\n"))
	})
	req := httptest.NewRequest("GET", "http://a.example/some/path?q=1", nil)
	req.RemoteAddr = "192.0.2.1:5555"
	req.Header.Set("X-Request-Id", "0123456789abcdef0123456789abcdef")
	req.Header.Set("User-Agent", "bench")
	run := func(b *testing.B, h http.Handler) {
		w := &benchWriter{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(w, req)
		}
	}
	b.Run("off", func(b *testing.B) { run(b, inner) })
	for _, c := range []struct {
		name   string
		format Format
		sample float64
		file   bool
	}{{"json", JSON, 1, false}, {"text", Text, 1, false}, {"json-sampled-out", JSON, 1e-300, false}, {"json-file", JSON, 1, true}} {
		b.Run(c.name, func(b *testing.B) {
			o := Options{Out: io.Discard, Format: c.format, Sample: c.sample, Registerer: prometheus.NewRegistry()}
			if c.file {
				// A real file: the writer's system calls are part of the
				// cost (with -cpu 1, on the requests' own CPU, as a
				// router with GOMAXPROCS=1).
				o.File = filepath.Join(b.TempDir(), "access.log")
			}
			l, err := New(o)
			if err != nil {
				b.Fatal(err)
			}
			l.SetTable(routing.Table{Routes: routes})
			run(b, l.Handler(inner))
			b.StopTimer()
			// The writer keeps up, or the figure would flatter the log.
			b.ReportMetric(testutil.ToFloat64(l.droppedFull)/float64(b.N), "dropped/op")
			if err := l.Close(context.Background()); err != nil {
				b.Fatal(err)
			}
		})
	}
}
