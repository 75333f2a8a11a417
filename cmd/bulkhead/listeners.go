package main

import (
	"io"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-router/bulkhead/admin"
	"github.com/bulkhead-router/bulkhead/health"
)

// Timeouts of the listeners that are not traffic (admin, metrics): a client
// that trickles headers, or keeps a connection idle, cannot hold it for long.
// The idle timeout outlasts a Prometheus scrape interval (15 s to 60 s), so
// scrapes reuse their connection.
const (
	operatorReadHeaderTimeout = 5 * time.Second
	operatorIdleTimeout       = 90 * time.Second
	operatorMaxHeaderBytes    = 16 << 10
)

// adminServer serves the operator endpoint. It has neither a write nor a
// read timeout: a CPU profile or trace runs for as long as the operator
// asks (/debug/pprof/profile?seconds=30); net/http's pprof refuses durations
// beyond a write timeout, and a read timeout would cancel the request's
// context midway (the connection's background read hits the deadline). Its
// handlers read no request body.
func adminServer(o admin.Options, errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           admin.Handler(o),
		ReadHeaderTimeout: operatorReadHeaderTimeout,
		IdleTimeout:       operatorIdleTimeout,
		MaxHeaderBytes:    operatorMaxHeaderBytes,
		ErrorLog:          errorLog,
	}
}

// metricsServer serves the read-only metrics listener Prometheus scrapes.
// The write timeout bounds a whole exchange and is above any scrape timeout
// (which is at most the scrape interval).
func metricsServer(g prometheus.Gatherer, errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           admin.MetricsHandler(g),
		ReadHeaderTimeout: operatorReadHeaderTimeout,
		WriteTimeout:      time.Minute,
		IdleTimeout:       operatorIdleTimeout,
		MaxHeaderBytes:    operatorMaxHeaderBytes,
		ErrorLog:          errorLog,
	}
}

// healthServer serves /healthz and /readyz on the health listener, over
// HTTP/1.1 (the kubelet; an ALB target group of protocol version HTTP1)
// and HTTP/2 with prior knowledge: an ALB target group of protocol
// version HTTP2 or GRPC checks its targets' health over HTTP/2 as it sends
// their traffic, and GRPC's checks are gRPC calls (grpcReadiness).
func healthServer(ready *health.State, idle time.Duration, errorLog *log.Logger) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	plain := health.Handler(ready)
	return &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
				grpcReadiness(w, r, ready)
				return
			}
			plain.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: operatorReadHeaderTimeout,
		IdleTimeout:       idle,
		MaxHeaderBytes:    operatorMaxHeaderBytes,
		ErrorLog:          errorLog,
		Protocols:         &protocols,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: 16}, // health checkers ask one at a time
	}
}

// gRPC status codes the health listener answers with.
const (
	grpcOK            = "0"
	grpcUnimplemented = "12"
	grpcUnavailable   = "14"
)

// grpcHealthCheck is the standard health checking method
// (grpc.health.v1.Health/Check); grpcServing is its answer
// HealthCheckResponse{status: SERVING} as a gRPC message: uncompressed,
// 2 bytes long, field 1 (varint) = 1.
const grpcHealthCheck = "/grpc.health.v1.Health/Check"

var grpcServing = []byte{0, 0, 0, 0, 2, 0x08, 0x01}

// grpcReadiness answers a gRPC health check (an ALB target group of
// protocol version GRPC) with the router's readiness: not ready (draining,
// no route table, node going away) is UNAVAILABLE, whatever the method.
// When ready, grpc.health.v1.Health/Check answers OK and SERVING (matcher
// 0), and any other method UNIMPLEMENTED: the ALB's default check calls
// /AWS.ALB/healthcheck and counts 12 (UNIMPLEMENTED) as healthy, so its
// defaults follow readiness too. An ALB reads only the status; a gRPC
// client (grpc_health_probe, the kubelet's grpc probe) reads the message.
func grpcReadiness(w http.ResponseWriter, r *http.Request, ready *health.State) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<10)) // the request message, unused
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Cache-Control", "no-store")
	ok, why := ready.Ready()
	switch {
	case !ok:
		// Trailers-only: the status in the one HEADERS frame.
		h.Set("Grpc-Status", grpcUnavailable)
		h.Set("Grpc-Message", "not ready: "+strings.ReplaceAll(why, "\n", "; "))
		w.WriteHeader(http.StatusOK)
	case r.URL.Path == grpcHealthCheck:
		h.Set("Trailer", "Grpc-Status")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(grpcServing)
		h.Set("Grpc-Status", grpcOK)
	default:
		h.Set("Grpc-Status", grpcUnimplemented)
		w.WriteHeader(http.StatusOK)
	}
}
