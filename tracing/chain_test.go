package tracing

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/filters/builtin"
	"github.com/zalando/skipper/loadbalancer"
	skmetrics "github.com/zalando/skipper/metrics"
	skproxy "github.com/zalando/skipper/proxy"
	"github.com/zalando/skipper/routing"
	"github.com/zalando/skipper/routing/testdataclient"

	"github.com/bulkhead-router/bulkhead/internal/otlpreceiver"
	"github.com/bulkhead-router/bulkhead/upstream"
)

// The tests run the serving path as bulkhead does: skipper's routing and
// proxy, the upstream layer (a route naming a backend whose endpoints are
// real pods, httptest servers), the tracer's handler around them, served
// on a real socket; the spans go through a real OTLP exporter to a real
// receiver.

const backendKey = "default/web:80"

// pod is a test pod that notes the trace headers of what it is sent.
type pod struct {
	*httptest.Server
	status int
	mu     sync.Mutex
	seen   []http.Header
}

func newPod(t testing.TB, status int) *pod {
	p := &pod{status: status}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen = append(p.seen, http.Header{headerTraceparent: r.Header[headerTraceparent], headerTracestate: r.Header[headerTracestate]})
		p.mu.Unlock()
		w.WriteHeader(p.status)
		io.WriteString(w, "hello from a pod\n")
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *pod) addr() string { return p.Listener.Addr().String() }

func (p *pod) headers() []http.Header {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]http.Header(nil), p.seen...)
}

// deadAddr is an address nothing listens on: connections are refused.
func deadAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// chain is a serving path with endpoints for backendKey, wrapped by wrap
// (nil: no tracing), on a real listener.
func chain(t testing.TB, endpoints []string, wrap func(http.Handler) http.Handler) *httptest.Server {
	logrus.SetOutput(io.Discard)
	u, err := upstream.New(upstream.Config{RefuseUnrouted: true}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	u.SetEndpoints(map[string][]string{backendKey: endpoints})
	registry := routing.NewEndpointRegistry(routing.RegistryOptions{})
	filterRegistry := builtin.MakeRegistry()
	filterRegistry.Register(u.BackendSpec())
	route := &eskip.Route{Id: "web", Predicates: []*eskip.Predicate{{Name: "PathSubtree", Args: []any{"/"}}}, BackendType: eskip.DynamicBackend,
		Filters: []*eskip.Filter{{Name: upstream.BackendFilterName, Args: []any{backendKey, upstream.AlgorithmRoundRobin}}}}
	rt := routing.New(routing.Options{FilterRegistry: filterRegistry, DataClients: []routing.DataClient{testdataclient.New([]*eskip.Route{route})},
		PostProcessors: []routing.PostProcessor{loadbalancer.NewAlgorithmProvider(), registry, u.PostProcessor()}, SignalFirstLoad: true})
	t.Cleanup(rt.Close)
	<-rt.FirstLoad()
	px := skproxy.WithParams(skproxy.Params{Routing: rt, Metrics: skmetrics.Void, AccessLogDisabled: true, EndpointRegistry: registry,
		CustomHttpRoundTripperWrap: u.WrapRoundTripper})
	t.Cleanup(func() { px.Close() })
	h := u.Handler(px)
	if wrap != nil {
		h = wrap(h)
	}
	front := httptest.NewServer(h)
	t.Cleanup(front.Close)
	return front
}

// newTracer is a tracer exporting to rcv with short batches.
func newTracer(t testing.TB, rcv string, opts Options) (*Tracer, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	opts.Endpoint, opts.Insecure, opts.Registerer = rcv, true, reg
	if opts.BatchTimeout == 0 {
		opts.BatchTimeout = 20 * time.Millisecond
	}
	tr, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tr.Shutdown(ctx)
	})
	return tr, reg
}

func receiver(t testing.TB) *otlpreceiver.Receiver {
	r, err := otlpreceiver.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// get sends a GET with headers (name, value pairs) and returns the status.
func get(t testing.TB, url string, headers ...string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func waitSpans(t testing.TB, rcv *otlpreceiver.Receiver, done func([]otlpreceiver.Span) bool) []otlpreceiver.Span {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	spans, err := rcv.WaitFor(ctx, done)
	if err != nil {
		t.Fatalf("%v: %+v", err, spans)
	}
	return spans
}

func counter(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// syncBuffer is a log sink safe for the exporter's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func textLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
