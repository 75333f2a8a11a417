package tracing

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/record"
)

// benchWriter is a ResponseWriter that keeps nothing.
type benchWriter struct{ h http.Header }

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *benchWriter) WriteHeader(int)             {}

// upstreamStandIn does what the upstream layer does for a traced request
// with one attempt: records it and tells the tracer.
func upstreamStandIn() http.Handler {
	out := &http.Request{Method: http.MethodGet, Header: http.Header{}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec := record.FromContext(r.Context()); rec != nil {
			rec.RouteID, rec.Backend = "kube_ns__web", "ns/web:80"
			a := rec.AddAttempt("10.0.0.1:8080", "closed", time.Now())
			if rec.Tracer != nil {
				rec.Tracer.StartAttempt(out, a)
			}
			a.Status, a.Duration = http.StatusOK, time.Millisecond
			if rec.Tracer != nil {
				rec.Tracer.EndAttempt(a)
			}
		}
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("hello, world\n"))
	})
}

// BenchmarkHandler is the tracer's cost per request with one attempt:
// off (not in the chain), on and not sampled (ids and a traceparent
// only), on and sampled (two spans, exported to a real receiver).
func BenchmarkHandler(b *testing.B) {
	req := httptest.NewRequest("GET", "http://a.example/some/path?q=1", nil)
	req.RemoteAddr = "192.0.2.1:5555"
	run := func(b *testing.B, h http.Handler) {
		w := &benchWriter{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(w, req)
		}
	}
	b.Run("off", func(b *testing.B) { run(b, upstreamStandIn()) })
	rcv := receiver(b)
	for _, c := range []struct {
		name  string
		ratio float64
	}{{"sample-0", 0}, {"sample-1", 1}} {
		b.Run(c.name, func(b *testing.B) {
			tr, _ := newTracer(b, rcv.Addr, Options{SampleRatio: c.ratio, BatchTimeout: time.Second})
			run(b, tr.Handler(upstreamStandIn()))
		})
	}
}
