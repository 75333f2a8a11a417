package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-router/bulkhead/internal/otlpreceiver"
	"github.com/bulkhead-router/bulkhead/record"
	"github.com/bulkhead-router/bulkhead/tracing"
)

func TestTracingFlags(t *testing.T) {
	c, err := parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if tc := c.Tracing; tc.Endpoint != "" || tc.Insecure || tc.Sample != tracing.DefaultSampleRatio || tc.ServiceName != "bulkhead" ||
		tc.TrustParent || tc.Queue != tracing.DefaultMaxQueueSize {
		t.Errorf("defaults: %+v", tc)
	}
	c, err = parseConfig([]string{"-tracing-insecure", "-tracing-endpoint", "otel-collector.monitoring:4317", "-tracing-sample", "0.5",
		"-tracing-service-name", "edge", "-tracing-trust-parent", "-tracing-queue", "100"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if tc := c.Tracing; tc.Endpoint != "otel-collector.monitoring:4317" || !tc.Insecure || tc.Sample != 0.5 || tc.ServiceName != "edge" ||
		!tc.TrustParent || tc.Queue != 100 {
		t.Errorf("set: %+v", tc)
	}
	for _, args := range [][]string{
		{"-tracing-endpoint", "collector"}, {"-tracing-endpoint", "grpc://collector:4317"}, {"-tracing-endpoint", "http://c:4318/v1/traces"},
		{"-tracing-endpoint", "https://c:4317", "-tracing-insecure"}, {"-tracing-insecure", "-tracing-endpoint", "https://c:4317"},
		{"-tracing-sample", "1.5"}, {"-tracing-sample", "-0.1"}, {"-tracing-sample", "NaN"}, {"-tracing-sample", "all"},
		{"-tracing-service-name", " "}, {"-tracing-queue", "0"},
	} {
		var errOut bytes.Buffer
		if code := run(args, io.Discard, &errOut); code != 2 || strings.Count(errOut.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, %q", args, code, errOut.String())
		}
	}
	var out bytes.Buffer
	run([]string{"-help"}, &out, io.Discard)
	for _, want := range []string{"-tracing-endpoint", "(default empty)", "-tracing-sample", "(default 0.01)", "-tracing-trust-parent", "-tracing-service-name"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-help lacks %q", want)
		}
	}
}

// handlerPtr is a handler comparable by identity.
type handlerPtr struct{ n int }

func (h *handlerPtr) ServeHTTP(http.ResponseWriter, *http.Request) { h.n++ }

// Off by default, and off means not in the chain: the proxy's handler is
// served as it is.
func TestTracingOffNotInChain(t *testing.T) {
	c, err := parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	off, err := startTracing(c.Tracing, nil, "", reg, slog.New(slog.DiscardHandler))
	if err != nil || off != nil {
		t.Fatalf("off: %v %v", off, err)
	}
	h := &handlerPtr{}
	if got := off.wrap(h); got != http.Handler(h) {
		t.Fatalf("off: the handler was wrapped: %T", got)
	}
	off.close()
	if mfs, _ := reg.Gather(); len(mfs) != 0 {
		t.Errorf("off registered metrics: %v", mfs)
	}
}

// On, inside the access log: one record, whose trace id the access log
// prints, is the one of the traceparent the attempt carries and of the
// spans the collector receives.
func TestTracingWithAccessLog(t *testing.T) {
	rcv, err := otlpreceiver.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rcv.Close)
	file := filepath.Join(t.TempDir(), "access.log")
	c, err := parseConfig([]string{"-access-log-file", file, "-tracing-endpoint", "http://" + rcv.Addr, "-tracing-sample", "1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.DiscardHandler)
	al, err := startAccessLog(c.AccessLog, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := startTracing(c.Tracing, nil, "node-a", reg, log)
	if err != nil || tr == nil {
		t.Fatalf("on: %v %v", tr, err)
	}
	out := &http.Request{Method: "GET", Header: http.Header{}}
	upstreamStandIn := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := record.FromContext(r.Context())
		a := rec.AddAttempt("10.0.0.1:8080", "closed", time.Now())
		rec.Tracer.StartAttempt(out, a)
		a.Status, a.Duration = 200, time.Millisecond
		rec.Tracer.EndAttempt(a)
		w.WriteHeader(200)
	})
	al.wrap(tr.wrap(upstreamStandIn)).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
	tr.close() // exports what is queued
	al.close()

	tp := out.Header.Get("Traceparent")
	if len(tp) != 55 {
		t.Fatalf("attempt's traceparent %q", tp)
	}
	traceID := tp[3:35]
	b, _ := os.ReadFile(file)
	if !strings.Contains(string(b), `"trace_id":"`+traceID+`"`) {
		t.Errorf("access log line lacks trace id %s: %s", traceID, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	spans, err := rcv.WaitFor(ctx, func(s []otlpreceiver.Span) bool { return len(s) == 2 })
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range spans {
		if s.TraceID != traceID || s.Resource["k8s.node.name"] != "node-a" {
			t.Errorf("span %+v", s)
		}
	}
}
