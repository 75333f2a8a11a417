package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Metric names.
const (
	MetricRequests      = "bulkhead_tracing_requests_total"
	MetricSpansEnded    = "bulkhead_tracing_spans_ended_total"
	MetricSpansExported = "bulkhead_tracing_spans_exported_total"
	MetricExportErrors  = "bulkhead_tracing_export_errors_total"
	MetricSpansDropped  = "bulkhead_tracing_spans_dropped_total"
)

// Defaults of Options.
const (
	DefaultSampleRatio   = 0.01
	DefaultServiceName   = "bulkhead"
	DefaultMaxQueueSize  = 2048
	DefaultBatchTimeout  = 5 * time.Second
	DefaultExportTimeout = 10 * time.Second
)

// Options configure a Tracer.
type Options struct {
	// Endpoint is the OTLP/gRPC collector, host:port or a URL
	// (http://host:port is plaintext, https://host:port TLS); see
	// ParseEndpoint.
	Endpoint string
	// Insecure sends to a host:port Endpoint in plaintext (default TLS,
	// with the system's roots).
	Insecure bool
	// SampleRatio is the share of requests traced, 0 to 1.
	SampleRatio float64
	// TrustParent makes the sampled flag of an incoming traceparent
	// decide, when the peer is one of TrustedProxies (see doc.go).
	TrustParent    bool
	TrustedProxies []netip.Prefix
	// ServiceName is the resource's service.name; Resource adds more
	// resource attributes (k8s.node.name, ...). OTEL_RESOURCE_ATTRIBUTES
	// adds to them; these win.
	ServiceName string
	Resource    map[string]string
	// MaxQueueSize bounds the spans waiting for export (more are
	// dropped); BatchTimeout is the longest a span waits for its batch;
	// ExportTimeout bounds one export, its retries included.
	MaxQueueSize  int
	BatchTimeout  time.Duration
	ExportTimeout time.Duration

	Log        *slog.Logger
	Registerer prometheus.Registerer
}

// Endpoint is a parsed collector address.
type Endpoint struct {
	HostPort string
	Insecure bool
}

// ParseEndpoint checks a collector address: host:port, or a URL with
// scheme http (plaintext) or https (TLS), a host and an optional port
// (4317, OTLP/gRPC's, when absent) and no path. insecure asks for
// plaintext, which an https URL contradicts.
func ParseEndpoint(s string, insecure bool) (Endpoint, error) {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return Endpoint{}, fmt.Errorf("%q: %w", s, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return Endpoint{}, fmt.Errorf("%q: scheme must be http (plaintext) or https (TLS)", s)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
			return Endpoint{}, fmt.Errorf("%q: OTLP over gRPC takes no path, query or user: want scheme://host:port", s)
		}
		if u.Scheme == "https" && insecure {
			return Endpoint{}, fmt.Errorf("%q: an https URL asks for TLS, plaintext was asked for too", s)
		}
		if u.Hostname() == "" {
			return Endpoint{}, fmt.Errorf("%q: no host", s)
		}
		port := u.Port()
		if port == "" {
			port = "4317"
		}
		if err := checkPort(port); err != nil {
			return Endpoint{}, fmt.Errorf("%q: %w", s, err)
		}
		return Endpoint{HostPort: net.JoinHostPort(u.Hostname(), port), Insecure: u.Scheme == "http"}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return Endpoint{}, fmt.Errorf("%q: want host:port or http(s)://host:port", s)
	}
	if err := checkPort(port); err != nil {
		return Endpoint{}, fmt.Errorf("%q: %w", s, err)
	}
	return Endpoint{HostPort: s, Insecure: insecure}, nil
}

func checkPort(p string) error {
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", p)
	}
	return nil
}

// Tracer makes the spans of the requests it handles (Handler) and exports
// them.
type Tracer struct {
	provider    *sdktrace.TracerProvider
	tracer      trace.Tracer
	sampleAll   bool
	sampleBelow uint64 // a request is sampled when a random uint64 is below
	trustParent bool
	proxies     []netip.Prefix
	requests    [2]prometheus.Counter // unsampled, sampled
	pool        sync.Pool
}

// New returns a Tracer exporting to opts.Endpoint. It connects lazily: a
// collector that is down costs failed exports (counted, logged once per
// streak), never a request.
func New(opts Options) (*Tracer, error) {
	ep, err := ParseEndpoint(opts.Endpoint, opts.Insecure)
	if err != nil {
		return nil, err
	}
	if math.IsNaN(opts.SampleRatio) || opts.SampleRatio < 0 || opts.SampleRatio > 1 {
		return nil, fmt.Errorf("sample ratio %v: want 0 to 1", opts.SampleRatio)
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts.MaxQueueSize = cmpOr(opts.MaxQueueSize, DefaultMaxQueueSize)
	opts.BatchTimeout = cmpOr(opts.BatchTimeout, DefaultBatchTimeout)
	opts.ExportTimeout = cmpOr(opts.ExportTimeout, DefaultExportTimeout)
	m := newMetrics(opts.Registerer)

	grpcOpts := []otlptracegrpc.Option{
		otlptracegrpc.WithEndpoint(ep.HostPort),
		otlptracegrpc.WithTimeout(opts.ExportTimeout),
		// The exporter retries a failed batch within the export
		// timeout; after that the batch is dropped (counted) rather than
		// held while newer spans queue up behind it.
		otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: true, InitialInterval: time.Second,
			MaxInterval: 5 * time.Second, MaxElapsedTime: opts.ExportTimeout}),
	}
	if ep.Insecure {
		grpcOpts = append(grpcOpts, otlptracegrpc.WithInsecure())
	}
	exp, err := otlptracegrpc.New(context.Background(), grpcOpts...)
	if err != nil {
		return nil, fmt.Errorf("OTLP exporter: %w", err)
	}
	res, err := newResource(opts)
	if err != nil {
		return nil, err
	}
	pending := new(atomic.Int64)
	bsp := sdktrace.NewBatchSpanProcessor(&quietExporter{SpanExporter: exp, m: m, pending: pending, endpoint: ep.HostPort, log: log},
		sdktrace.WithMaxQueueSize(opts.MaxQueueSize),
		sdktrace.WithMaxExportBatchSize(min(sdktrace.DefaultMaxExportBatchSize, opts.MaxQueueSize)),
		sdktrace.WithBatchTimeout(opts.BatchTimeout),
		sdktrace.WithExportTimeout(opts.ExportTimeout))
	provider := sdktrace.NewTracerProvider(
		// The sampling decision is the handler's, made before the SDK
		// is asked for a span: it sees only requests to record.
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(&gate{SpanProcessor: bsp, m: m, pending: pending, limit: int64(opts.MaxQueueSize)}),
		sdktrace.WithResource(res),
	)
	// The SDK reports failed exports to the process's error handler,
	// which by default prints each one. quietExporter has logged them
	// already (once per streak): the rest is debug. One tracer per
	// process, so the global is ours.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Debug("OpenTelemetry SDK error", "error", err)
	}))
	t := &Tracer{
		provider:    provider,
		tracer:      provider.Tracer("github.com/bulkhead-router/bulkhead/tracing"),
		sampleAll:   opts.SampleRatio == 1,
		sampleBelow: uint64(opts.SampleRatio * (1 << 63) * 2),
		trustParent: opts.TrustParent && len(opts.TrustedProxies) > 0,
		proxies:     opts.TrustedProxies,
		requests:    [2]prometheus.Counter{m.requests.WithLabelValues("false"), m.requests.WithLabelValues("true")},
	}
	t.pool.New = func() any { return &request{t: t} }
	return t, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func newResource(opts Options) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{attribute.String("service.name", cmpOr(opts.ServiceName, DefaultServiceName))}
	keys := make([]string, 0, len(opts.Resource))
	for k := range opts.Resource {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if opts.Resource[k] != "" {
			attrs = append(attrs, attribute.String(k, opts.Resource[k]))
		}
	}
	res, err := resource.Merge(resource.Environment(), resource.NewSchemaless(attrs...))
	if err != nil {
		return nil, fmt.Errorf("OpenTelemetry resource (OTEL_RESOURCE_ATTRIBUTES?): %w", err)
	}
	return res, nil
}

// Shutdown exports the spans still queued, within ctx, and stops.
func (t *Tracer) Shutdown(ctx context.Context) error {
	return t.provider.Shutdown(ctx)
}

// trustedPeer reports whether the request came from a trusted proxy.
func (t *Tracer) trustedPeer(remoteAddr string) bool {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range t.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

type metrics struct {
	requests         *prometheus.CounterVec
	ended, dropped   prometheus.Counter
	exported, failed prometheus.Counter
	exportErrors     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	exported := prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricSpansExported,
		Help: "Spans handed to the OTLP collector, by result (ok, error after the exporter's retries)."},
		[]string{"result"})
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRequests,
			Help: "Requests seen by the tracer, by whether they were sampled (traced and exported) or only propagated."}, []string{"sampled"}),
		ended: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricSpansEnded,
			Help: "Sampled spans ended and queued for export."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricSpansDropped,
			Help: "Sampled spans ended and dropped, never exported: the export queue was full (a collector slow, hung or down)."}),
		exported: exported.WithLabelValues("ok"),
		failed:   exported.WithLabelValues("error"),
		exportErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricExportErrors,
			Help: "Failed exports of a batch of spans to the OTLP collector (after the exporter's retries)."}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.ended, m.dropped, exported, m.exportErrors)
	}
	return m
}

// gate admits a span to the batch processor only while the spans queued
// or being exported number fewer than its queue holds, and counts the
// others as dropped. The batch processor would drop them itself, but
// keeps its count to itself (or to an OpenTelemetry meter,
// experimentally); gated earlier by the spans in flight too, it never
// drops one, so the counts are exact: ended = exported (ok or error) +
// still queued.
type gate struct {
	sdktrace.SpanProcessor
	m       *metrics
	pending *atomic.Int64 // queued or being exported; quietExporter subtracts what it exported
	limit   int64
}

func (g *gate) OnEnd(s sdktrace.ReadOnlySpan) {
	if g.pending.Add(1) > g.limit {
		g.pending.Add(-1)
		g.m.dropped.Inc()
		return
	}
	g.m.ended.Inc()
	g.SpanProcessor.OnEnd(s)
}

// quietExporter counts exports and logs a collector's failure once per
// streak: a collector that is down fails every batch, every few seconds,
// on every node.
type quietExporter struct {
	sdktrace.SpanExporter
	m        *metrics
	pending  *atomic.Int64
	endpoint string
	log      *slog.Logger

	mu       sync.Mutex
	since    time.Time // the first failure of the streak; zero: none
	failures int
}

func (e *quietExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	e.pending.Add(-int64(len(spans)))
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.m.exportErrors.Inc()
		e.m.failed.Add(float64(len(spans)))
		if e.failures == 0 {
			e.since = time.Now()
			e.log.Warn("exporting spans to the OTLP collector failed; further failures are counted in "+MetricExportErrors+" until it works again",
				"endpoint", e.endpoint, "spans", len(spans), "error", err)
		}
		e.failures++
		return err
	}
	e.m.exported.Add(float64(len(spans)))
	if e.failures > 0 {
		e.log.Info("exporting spans to the OTLP collector works again", "endpoint", e.endpoint,
			"failed_exports", e.failures, "after", time.Since(e.since).Round(time.Millisecond))
		e.failures, e.since = 0, time.Time{}
	}
	return nil
}

// flush exports the spans queued now, within ctx (tests).
func (t *Tracer) flush(ctx context.Context) error {
	return t.provider.ForceFlush(ctx)
}
