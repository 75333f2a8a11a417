package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-router/bulkhead/internal/logging"
	"github.com/bulkhead-router/bulkhead/tracing"
)

// tracingConfig is the tracer's part of the configuration.
type tracingConfig struct {
	Endpoint    string
	Insecure    bool
	Sample      float64
	ServiceName string
	TrustParent bool
	Queue       int
}

// register defines the tracing flags on fs, each checked as it is parsed
// (-tracing-endpoint and -tracing-insecure against each other, in
// whichever order they come).
//
// Off by default: without -tracing-endpoint the tracer is not in the
// chain at all, and pods receive the client's traceparent as they always
// did. The default ratio, 1%, is what a fleet of routers at tens of
// thousands of requests a second can export without a collector sized
// for it; a collector doing tail sampling wants 1.
func (c *tracingConfig) register(fs *flag.FlagSet) {
	c.Sample, c.ServiceName, c.Queue = tracing.DefaultSampleRatio, tracing.DefaultServiceName, tracing.DefaultMaxQueueSize
	fs.Func("tracing-endpoint", "OTLP/gRPC collector to export OpenTelemetry spans to: HOST:PORT (TLS unless -tracing-insecure), http://HOST[:PORT] (plaintext) or https://HOST[:PORT]; empty: no tracing, no cost (default empty)", func(s string) error {
		if s == "" {
			c.Endpoint = ""
			return nil
		}
		if _, err := tracing.ParseEndpoint(s, c.Insecure); err != nil {
			return err
		}
		c.Endpoint = s
		return nil
	})
	fs.BoolFunc("tracing-insecure", "send spans to a HOST:PORT -tracing-endpoint in plaintext (default TLS with the system's roots)", func(s string) error {
		v, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("want true or false")
		}
		if v && strings.HasPrefix(c.Endpoint, "https://") {
			return fmt.Errorf("%q is an https URL: it asks for TLS", c.Endpoint)
		}
		c.Insecure = v
		return nil
	})
	fs.Func("tracing-sample", "share of requests traced and exported, 0 to 1, drawn at random per request; every request's pod still gets a traceparent of ours (default 0.01)", func(s string) error {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || !(v >= 0 && v <= 1) {
			return fmt.Errorf("want a share from 0 to 1, not %q", s)
		}
		c.Sample = v
		return nil
	})
	fs.Func("tracing-service-name", "service.name of the router's spans (OTEL_RESOURCE_ATTRIBUTES adds more) (default "+tracing.DefaultServiceName+")", func(s string) error {
		if strings.TrimSpace(s) == "" {
			return errors.New("must not be empty")
		}
		c.ServiceName = s
		return nil
	})
	fs.BoolVar(&c.TrustParent, "tracing-trust-parent", false, "continue the trace of an incoming traceparent, and let its sampled flag decide, when the peer is one of -trusted-proxies; from any other peer it is always ignored. Leave off behind an AWS ALB, which passes the client's traceparent through: trusting it would let clients choose what is traced")
	fs.Func("tracing-queue", "spans that may wait for the collector before further spans are dropped (default "+strconv.Itoa(tracing.DefaultMaxQueueSize)+")", func(s string) error {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			return fmt.Errorf("want a positive number, not %q", s)
		}
		c.Queue = v
		return nil
	})
}

// tracer is the running tracer; nil when tracing is off.
type tracer struct {
	t   *tracing.Tracer
	log *slog.Logger
}

// startTracing starts the exporter when an endpoint is configured. The
// collector is dialled lazily: one that is down costs failed exports,
// never the start.
func startTracing(c tracingConfig, trustedProxies []netip.Prefix, nodeName string, reg prometheus.Registerer, log *slog.Logger) (*tracer, error) {
	if c.Endpoint == "" {
		return nil, nil
	}
	log = log.With(logging.KeyComponent, "tracing")
	if c.TrustParent && len(trustedProxies) == 0 {
		log.Warn("-tracing-trust-parent without -trusted-proxies: no incoming traceparent is trusted")
	}
	t, err := tracing.New(tracing.Options{Endpoint: c.Endpoint, Insecure: c.Insecure, SampleRatio: c.Sample,
		TrustParent: c.TrustParent, TrustedProxies: trustedProxies, ServiceName: c.ServiceName,
		Resource: map[string]string{"k8s.node.name": nodeName}, MaxQueueSize: c.Queue, Log: log, Registerer: reg})
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	log.Info("tracing requests", "endpoint", c.Endpoint, "sample", c.Sample, "trust_parent", c.TrustParent && len(trustedProxies) > 0)
	return &tracer{t: t, log: log}, nil
}

// wrap puts the tracer around h, inside the access log (which shares its
// record and prints its trace id).
func (t *tracer) wrap(h http.Handler) http.Handler {
	if t == nil {
		return h
	}
	return t.t.Handler(h)
}

// close exports the spans still queued, once the proxy servers have
// stopped; a collector that does not take them is given up after 5 s.
func (t *tracer) close() {
	if t == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.t.Shutdown(ctx); err != nil {
		t.log.Warn("spans not exported at shutdown", logging.KeyError, err)
	}
}
