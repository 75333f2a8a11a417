package tracing

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/bulkhead-router/bulkhead/internal/otlpreceiver"
	"github.com/bulkhead-router/bulkhead/record"
)

// clientTraceparent is a client's sampled traceparent, and its tracestate.
const (
	clientTraceID     = "0af7651916cd43dd8448eb211c80319c"
	clientSpanID      = "b7ad6b7169203331"
	clientTraceparent = "00-" + clientTraceID + "-" + clientSpanID + "-01"
	clientTracestate  = "vendor=secret"
)

// traceIDs notes the record's TraceID of each request, as the access log
// outside the tracer would print it; noted as the answer's headers go
// out, so before the client has the answer.
type traceIDs struct {
	mu  sync.Mutex
	ids []string
}

func (l *traceIDs) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec, r := record.Ensure(r, time.Now())
		h.ServeHTTP(&idWriter{ResponseWriter: w, rec: rec, l: l}, r)
	})
}

type idWriter struct {
	http.ResponseWriter
	rec   *record.Request
	l     *traceIDs
	noted bool
}

func (w *idWriter) WriteHeader(code int) {
	if !w.noted {
		w.noted = true
		w.l.mu.Lock()
		w.l.ids = append(w.l.ids, w.rec.TraceID)
		w.l.mu.Unlock()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *idWriter) Write(b []byte) (int, error) {
	if !w.noted {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (l *traceIDs) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.ids...)
}

// parsed splits a traceparent the pod received, failing on one that is
// not well formed.
func parsed(t *testing.T, tp []string) (traceID, parentID string, sampled bool) {
	t.Helper()
	in := parseTraceparent(tp)
	if !in.ok || len(tp[0]) != traceparentLen {
		t.Fatalf("pod received traceparent %q", tp)
	}
	return in.traceID.String(), in.spanID.String(), in.sampled
}

func spansNamed(spans []otlpreceiver.Span, name string) []otlpreceiver.Span {
	var out []otlpreceiver.Span
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func flush(t *testing.T, tr *Tracer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

func TestServerAndAttemptSpans(t *testing.T) {
	rcv := receiver(t)
	tr, reg := newTracer(t, rcv.Addr, Options{SampleRatio: 1, ServiceName: "edge", Resource: map[string]string{"k8s.node.name": "node-a"}})
	p := newPod(t, http.StatusOK)
	ids := &traceIDs{}
	front := chain(t, []string{p.addr()}, func(h http.Handler) http.Handler { return ids.wrap(tr.Handler(h)) })

	if code := get(t, front.URL+"/shop/cart?x=1"); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	traceID, parentID, sampled := parsed(t, p.headers()[0][headerTraceparent])
	if !sampled {
		t.Error("sampled request propagated as unsampled")
	}
	if got := ids.get(); len(got) != 1 || got[0] != traceID {
		t.Errorf("record's trace id %q, pod's %s", got, traceID)
	}
	spans := waitSpans(t, rcv, func(s []otlpreceiver.Span) bool { return len(s) >= 2 })
	if len(spans) != 2 {
		t.Fatalf("%d spans: %+v", len(spans), spans)
	}
	server, attempt := spansNamed(spans, "GET"), spansNamed(spans, attemptSpanName)
	if len(server) != 1 || len(attempt) != 1 {
		t.Fatalf("spans %+v", spans)
	}
	s, a := server[0], attempt[0]
	if s.Kind != tracepb.Span_SPAN_KIND_SERVER || a.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("kinds %v, %v", s.Kind, a.Kind)
	}
	if s.ParentSpanID != "" || s.TraceID != traceID || a.TraceID != traceID || a.ParentSpanID != s.SpanID {
		t.Errorf("server %s/%s parent %q, attempt %s/%s parent %s", s.TraceID, s.SpanID, s.ParentSpanID, a.TraceID, a.SpanID, a.ParentSpanID)
	}
	if parentID != a.SpanID {
		t.Errorf("pod's parent span %s, attempt span %s", parentID, a.SpanID)
	}
	host, port := splitHostPort(p.addr())
	frontHost, _ := splitHostPort(strings.TrimPrefix(front.URL, "http://"))
	for k, want := range map[string]any{"http.request.method": "GET", "url.path": "/shop/cart", "server.address": frontHost,
		"http.response.status_code": int64(200), "bulkhead.route": "web", "bulkhead.backend": backendKey,
		"bulkhead.retries": int64(0), "bulkhead.breaker_skips": int64(0)} {
		if s.Attributes[k] != want {
			t.Errorf("server span %s = %v (%T), want %v", k, s.Attributes[k], s.Attributes[k], want)
		}
	}
	if _, ok := s.Attributes["bulkhead.retry_stop"]; ok {
		t.Errorf("a request that needed no retry has a stop reason: %v", s.Attributes)
	}
	for k, want := range map[string]any{"server.address": host, "server.port": int64(port), "bulkhead.attempt": int64(1),
		"bulkhead.breaker": "closed", "http.response.status_code": int64(200)} {
		if a.Attributes[k] != want {
			t.Errorf("attempt span %s = %v (%T), want %v", k, a.Attributes[k], a.Attributes[k], want)
		}
	}
	if !a.Start.Before(a.End) || a.Start.Before(s.Start) || a.End.After(s.End) {
		t.Errorf("attempt %v-%v outside server %v-%v", a.Start, a.End, s.Start, s.End)
	}
	if s.Resource["service.name"] != "edge" || s.Resource["k8s.node.name"] != "node-a" {
		t.Errorf("resource %v", s.Resource)
	}
	if got := counter(t, reg, MetricRequests, "sampled", "true"); got != 1 {
		t.Errorf("%s sampled=true %v", MetricRequests, got)
	}
	flush(t, tr)
	if got := counter(t, reg, MetricSpansExported, "result", "ok"); got != 2 {
		t.Errorf("%s ok %v", MetricSpansExported, got)
	}
	if ended, dropped := counter(t, reg, MetricSpansEnded), counter(t, reg, MetricSpansDropped); ended != 2 || dropped != 0 {
		t.Errorf("ended %v, dropped %v", ended, dropped)
	}
}

// A dead endpoint and a live one: the request that went first to the dead
// one has two attempt spans, the failed one with its error class, and the
// pod sees the second as its parent.
func TestRetryGivesTwoAttemptSpans(t *testing.T) {
	rcv := receiver(t)
	tr, _ := newTracer(t, rcv.Addr, Options{SampleRatio: 1})
	p := newPod(t, http.StatusOK)
	dead := deadAddr(t)
	front := chain(t, []string{dead, p.addr()}, tr.Handler)

	// Round robin starts anywhere: of two requests one goes first to the
	// dead endpoint.
	for range 2 {
		if code := get(t, front.URL+"/"); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
	}
	spans := waitSpans(t, rcv, func(s []otlpreceiver.Span) bool { return len(s) >= 5 })
	var retried *otlpreceiver.Span
	for _, s := range spansNamed(spans, "GET") {
		if s.Attributes["bulkhead.retries"] == int64(1) {
			retried = &s
		}
	}
	if retried == nil {
		t.Fatalf("no server span with a retry: %+v", spans)
	}
	var attempts []otlpreceiver.Span
	for _, s := range spansNamed(spans, attemptSpanName) {
		if s.ParentSpanID == retried.SpanID {
			attempts = append(attempts, s)
		}
	}
	if len(attempts) != 2 {
		t.Fatalf("%d attempt spans under the retried request: %+v", len(attempts), attempts)
	}
	if attempts[0].Attributes["bulkhead.attempt"] == int64(2) {
		attempts[0], attempts[1] = attempts[1], attempts[0]
	}
	failed, ok := attempts[0], attempts[1]
	deadHost, deadPort := splitHostPort(dead)
	if failed.Attributes["server.address"] != deadHost || failed.Attributes["server.port"] != int64(deadPort) ||
		failed.Attributes["error.type"] != string(record.ErrConnect) || failed.StatusCode != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("failed attempt %+v", failed)
	}
	if _, has := failed.Attributes["http.response.status_code"]; has {
		t.Errorf("failed attempt has a status: %v", failed.Attributes)
	}
	if ok.Attributes["bulkhead.attempt"] != int64(2) || ok.Attributes["http.response.status_code"] != int64(200) || ok.StatusCode == tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("second attempt %+v", ok)
	}
	var podParents []string
	for _, h := range p.headers() {
		_, parent, _ := parsed(t, h[headerTraceparent])
		podParents = append(podParents, parent)
	}
	found := false
	for _, parent := range podParents {
		found = found || parent == ok.SpanID
	}
	if !found {
		t.Errorf("pod saw parents %v, not the second attempt %s", podParents, ok.SpanID)
	}
}

// Sampling 0: nothing exported, yet every pod gets a valid traceparent of
// ours, one span id per attempt, and the record a trace id.
func TestSampleZeroPropagatesOnly(t *testing.T) {
	rcv := receiver(t)
	tr, reg := newTracer(t, rcv.Addr, Options{SampleRatio: 0})
	p := newPod(t, http.StatusOK)
	ids := &traceIDs{}
	front := chain(t, []string{p.addr()}, func(h http.Handler) http.Handler { return ids.wrap(tr.Handler(h)) })
	for range 3 {
		if code := get(t, front.URL+"/"); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
	}
	flush(t, tr)
	if n := rcv.Exports(); n != 0 {
		t.Errorf("sample 0: %d exports: %+v", n, rcv.Spans())
	}
	seen := map[string]bool{}
	got := ids.get()
	for i, h := range p.headers() {
		traceID, parent, sampled := parsed(t, h[headerTraceparent])
		if sampled {
			t.Errorf("request %d propagated as sampled", i)
		}
		if seen[traceID] || seen[parent] {
			t.Errorf("request %d: ids %s/%s repeat", i, traceID, parent)
		}
		seen[traceID], seen[parent] = true, true
		if got[i] != traceID {
			t.Errorf("request %d: record's trace id %q, pod's %s", i, got[i], traceID)
		}
	}
	if n := counter(t, reg, MetricRequests, "sampled", "false"); n != 3 {
		t.Errorf("%s sampled=false %v", MetricRequests, n)
	}
}

// A client's sampled traceparent from a peer that is not a trusted proxy
// forces nothing and reaches the pod as nothing of the client's.
func TestUntrustedTraceparentIgnored(t *testing.T) {
	rcv := receiver(t)
	// The test's client is 127.0.0.1: trusted proxies elsewhere.
	tr, _ := newTracer(t, rcv.Addr, Options{SampleRatio: 0, TrustParent: true, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	p := newPod(t, http.StatusOK)
	// What the layers below the tracer see (the upstream layer's mirror
	// sends a copy of the request's headers as they are).
	var below http.Header
	spy := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			below = r.Header.Clone()
			h.ServeHTTP(w, r)
		})
	}
	front := chain(t, []string{p.addr()}, func(h http.Handler) http.Handler { return tr.Handler(spy(h)) })
	if code := get(t, front.URL+"/", "Traceparent", clientTraceparent, "Tracestate", clientTracestate); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	flush(t, tr)
	if n := rcv.Exports(); n != 0 {
		t.Errorf("a client's sampled flag made the tracer export: %+v", rcv.Spans())
	}
	if traceID, _, _ := parsed(t, below[headerTraceparent]); traceID == clientTraceID || len(below[headerTracestate]) != 0 {
		t.Errorf("below the tracer the request carries the client's %q, tracestate %q", below[headerTraceparent], below[headerTracestate])
	}
	h := p.headers()[0]
	traceID, parent, sampled := parsed(t, h[headerTraceparent])
	if traceID == clientTraceID || parent == clientSpanID || sampled {
		t.Errorf("pod received %q: the client's", h[headerTraceparent])
	}
	if len(h[headerTracestate]) != 0 {
		t.Errorf("pod received the client's tracestate %q", h[headerTracestate])
	}

	// Sampled by the ratio, the untrusted client's trace is not
	// continued either: a root span of a trace of ours.
	rcv2 := receiver(t)
	tr2, _ := newTracer(t, rcv2.Addr, Options{SampleRatio: 1, TrustParent: true, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	front2 := chain(t, []string{p.addr()}, tr2.Handler)
	get(t, front2.URL+"/", "Traceparent", clientTraceparent)
	spans := waitSpans(t, rcv2, func(s []otlpreceiver.Span) bool { return len(spansNamed(s, "GET")) == 1 })
	if s := spansNamed(spans, "GET")[0]; s.TraceID == clientTraceID || s.ParentSpanID != "" {
		t.Errorf("server span %s parent %q continues the untrusted client's trace", s.TraceID, s.ParentSpanID)
	}
}

// From a trusted proxy, with TrustParent, the trace goes on and its
// sampled flag decides, both ways.
func TestTrustedTraceparentContinued(t *testing.T) {
	rcv := receiver(t)
	tr, _ := newTracer(t, rcv.Addr, Options{SampleRatio: 0, TrustParent: true, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	p := newPod(t, http.StatusOK)
	front := chain(t, []string{p.addr()}, tr.Handler)
	if code := get(t, front.URL+"/", "Traceparent", clientTraceparent, "Tracestate", clientTracestate); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	spans := waitSpans(t, rcv, func(s []otlpreceiver.Span) bool { return len(s) >= 2 })
	s, a := spansNamed(spans, "GET"), spansNamed(spans, attemptSpanName)
	if len(s) != 1 || len(a) != 1 {
		t.Fatalf("spans %+v", spans)
	}
	if s[0].TraceID != clientTraceID || s[0].ParentSpanID != clientSpanID || a[0].ParentSpanID != s[0].SpanID {
		t.Errorf("server span %s parent %s, attempt parent %s", s[0].TraceID, s[0].ParentSpanID, a[0].ParentSpanID)
	}
	h := p.headers()[0]
	traceID, parent, sampled := parsed(t, h[headerTraceparent])
	if traceID != clientTraceID || parent != a[0].SpanID || !sampled {
		t.Errorf("pod received %q, attempt span %s", h[headerTraceparent], a[0].SpanID)
	}
	if got := h[headerTracestate]; len(got) != 1 || got[0] != clientTracestate {
		t.Errorf("pod received tracestate %q", got)
	}

	// Unsampled by the trusted parent, at ratio 1: not exported, the
	// trace still continued to the pod.
	rcv2 := receiver(t)
	tr2, _ := newTracer(t, rcv2.Addr, Options{SampleRatio: 1, TrustParent: true, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	p2 := newPod(t, http.StatusOK)
	front2 := chain(t, []string{p2.addr()}, tr2.Handler)
	get(t, front2.URL+"/", "Traceparent", strings.TrimSuffix(clientTraceparent, "01")+"00")
	flush(t, tr2)
	if n := rcv2.Exports(); n != 0 {
		t.Errorf("unsampled parent exported: %+v", rcv2.Spans())
	}
	traceID, parent, sampled = parsed(t, p2.headers()[0][headerTraceparent])
	if traceID != clientTraceID || parent == clientSpanID || sampled {
		t.Errorf("pod received %q", p2.headers()[0][headerTraceparent])
	}

	// Without TrustParent, even a trusted proxy's traceparent is ignored.
	rcv3 := receiver(t)
	tr3, _ := newTracer(t, rcv3.Addr, Options{SampleRatio: 0, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	p3 := newPod(t, http.StatusOK)
	front3 := chain(t, []string{p3.addr()}, tr3.Handler)
	get(t, front3.URL+"/", "Traceparent", clientTraceparent)
	flush(t, tr3)
	if traceID, _, _ := parsed(t, p3.headers()[0][headerTraceparent]); traceID == clientTraceID || rcv3.Exports() != 0 {
		t.Errorf("without TrustParent: pod received %q, %d exports", p3.headers()[0][headerTraceparent], rcv3.Exports())
	}
}

// A collector that is down costs the requests nothing: they are answered,
// the failed exports are counted, the loss is logged once and the return
// once.
func TestCollectorDown(t *testing.T) {
	addr := deadAddr(t)
	logs := &syncBuffer{}
	tr, reg := newTracer(t, addr, Options{SampleRatio: 1, ExportTimeout: 300 * time.Millisecond, Log: textLogger(logs)})
	p := newPod(t, http.StatusOK)
	front := chain(t, []string{p.addr()}, tr.Handler)
	for i := range 20 {
		start := time.Now()
		if code := get(t, front.URL+"/"); code != http.StatusOK {
			t.Fatalf("request %d: status %d", i, code)
		}
		// Far below the export timeout: an export that waited on the
		// collector would show.
		if d := time.Since(start); d > 250*time.Millisecond {
			t.Errorf("request %d took %v with the collector down", i, d)
		}
		if i%5 == 4 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			tr.flush(ctx) // fails: the batch is counted
			cancel()
		}
	}
	if n := counter(t, reg, MetricExportErrors); n < 1 {
		t.Errorf("%s = %v", MetricExportErrors, n)
	}
	if n := counter(t, reg, MetricSpansExported, "result", "error"); n < 2 {
		t.Errorf("%s error = %v", MetricSpansExported, n)
	}
	if n := counter(t, reg, MetricSpansExported, "result", "ok"); n != 0 {
		t.Errorf("%s ok = %v with no collector", MetricSpansExported, n)
	}

	// The collector comes back on its address.
	rcv, err := otlpreceiver.Start(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rcv.Close)
	get(t, front.URL+"/")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// gRPC redials after its backoff; each flush exports what is queued.
	for counter(t, reg, MetricSpansExported, "result", "ok") == 0 {
		get(t, front.URL+"/")
		tr.flush(ctx)
		if ctx.Err() != nil {
			t.Fatalf("no export after the collector came back; log:\n%s", logs)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "level=WARN"); n != 1 || !strings.Contains(out, "exporting spans to the OTLP collector failed") {
		t.Errorf("%d warnings for one loss:\n%s", n, out)
	}
	if n := strings.Count(out, "exporting spans to the OTLP collector works again"); n != 1 {
		t.Errorf("%d recovery lines:\n%s", n, out)
	}
}

// A collector that accepts connections and never answers (hung, or a
// black hole on the way) holds each export for the export timeout: the
// requests do not wait, the spans beyond the queue are dropped and
// counted, and nothing else is lost or counted twice.
func TestCollectorHung(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { // reads nothing, says nothing
				<-hold
				c.Close()
			}()
		}
	}()
	const queue = 4
	tr, reg := newTracer(t, l.Addr().String(), Options{SampleRatio: 1, MaxQueueSize: queue, BatchTimeout: time.Millisecond,
		ExportTimeout: 3 * time.Second})
	p := newPod(t, http.StatusOK)
	front := chain(t, []string{p.addr()}, tr.Handler)
	const requests = 20
	for i := range requests {
		start := time.Now()
		if code := get(t, front.URL+"/"); code != http.StatusOK {
			t.Fatalf("request %d: status %d", i, code)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("request %d took %v with the collector hung", i, d)
		}
	}
	// The client may have its answer before the handler has ended the
	// server span: await the last one.
	var ended, dropped float64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if ended, dropped = counter(t, reg, MetricSpansEnded), counter(t, reg, MetricSpansDropped); ended+dropped == 2*requests {
			break
		}
	}
	if ended+dropped != 2*requests || ended > queue || dropped < 2*requests-queue {
		t.Errorf("%d spans: %v queued, %v dropped (queue %d)", 2*requests, ended, dropped, queue)
	}
	if n := counter(t, reg, MetricSpansExported, "result", "ok"); n != 0 {
		t.Errorf("%v spans exported to a hung collector", n)
	}
}

func TestParseEndpoint(t *testing.T) {
	for _, c := range []struct {
		in       string
		insecure bool
		want     Endpoint
	}{
		{"collector:4317", false, Endpoint{"collector:4317", false}},
		{"collector:4317", true, Endpoint{"collector:4317", true}},
		{"http://collector", false, Endpoint{"collector:4317", true}},
		{"https://collector:443", false, Endpoint{"collector:443", false}},
		{"http://[::1]:4317/", false, Endpoint{"[::1]:4317", true}},
	} {
		got, err := ParseEndpoint(c.in, c.insecure)
		if err != nil || got != c.want {
			t.Errorf("%q: %+v, %v", c.in, got, err)
		}
	}
	for _, in := range []string{"collector", ":4317", "collector:0", "collector:http", "grpc://c:4317", "http://c:4317/v1/traces", "https://"} {
		if _, err := ParseEndpoint(in, false); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	if _, err := ParseEndpoint("https://c:4317", true); err == nil {
		t.Error("https with insecure accepted")
	}
}

func (w *idWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

// A gRPC answer's status (in its trailers, as the upstream layer passes
// them on, or trailers-only in its headers) is on the server span; the
// codes that are the server's fault make it an error.
func TestGRPCStatusOnServerSpan(t *testing.T) {
	rcv := receiver(t)
	tr, _ := newTracer(t, rcv.Addr, Options{SampleRatio: 1})
	grpcAnswer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		if r.URL.Path == "/trailers-only" {
			w.Header().Set("Grpc-Status", "5") // NOT_FOUND: the client's
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusOK)
		w.Write([]byte{0, 0, 0, 0, 0})
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "14") // UNAVAILABLE
	})
	srv := httptest.NewServer(tr.Handler(grpcAnswer))
	t.Cleanup(srv.Close)
	get(t, srv.URL+"/svc/Method")
	get(t, srv.URL+"/trailers-only")
	spans := waitSpans(t, rcv, func(s []otlpreceiver.Span) bool { return len(s) >= 2 })
	for _, s := range spans {
		want, wantErr := int64(14), true
		if s.Attributes["url.path"] == "/trailers-only" {
			want, wantErr = 5, false
		}
		if s.Attributes["rpc.grpc.status_code"] != want || (s.StatusCode == tracepb.Status_STATUS_CODE_ERROR) != wantErr {
			t.Errorf("%v: attributes %v, status %v", s.Attributes["url.path"], s.Attributes, s.StatusCode)
		}
	}
}

// Without the tracer (no endpoint configured) the router does what it
// always did with a client's trace headers: passes them to the pod as
// they are.
func TestOffPassesClientHeadersUnchanged(t *testing.T) {
	p := newPod(t, http.StatusOK)
	front := chain(t, []string{p.addr()}, nil)
	get(t, front.URL+"/", "Traceparent", clientTraceparent, "Tracestate", clientTracestate)
	h := p.headers()[0]
	if tp, ts := h[headerTraceparent], h[headerTracestate]; len(tp) != 1 || tp[0] != clientTraceparent || len(ts) != 1 || ts[0] != clientTracestate {
		t.Errorf("pod received %q, %q", tp, ts)
	}
}
