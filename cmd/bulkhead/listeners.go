package main

import (
	"log"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-router/bulkhead/admin"
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
