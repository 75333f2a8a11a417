package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-router/bulkhead/accesslog"
	"github.com/bulkhead-router/bulkhead/internal/logging"
	"github.com/bulkhead-router/bulkhead/routing"
)

// accessLogConfig is the access log's part of the configuration.
type accessLogConfig struct {
	Enabled bool
	Format  accesslog.Format
	File    string
	Sample  float64
	Fields  accesslog.Fields
	Query   bool
	Queue   int
}

// register defines the access log flags on fs, each checked as it is
// parsed.
//
// On by default, as nginx, HAProxy (with its log line configured),
// skipper and Traefik's users expect: the first question after a 502 is
// "which pod, and why", and a log turned on after the fact cannot answer
// it. It costs 2 allocations and a few microseconds of one core per
// request (docs/BENCHMARKS.md); -access-log-sample or -access-log=false
// trade it away.
func (a *accessLogConfig) register(fs *flag.FlagSet) {
	a.Enabled, a.Sample, a.Fields, a.Format = true, 1, accesslog.DefaultFields, accesslog.JSON
	fs.BoolVar(&a.Enabled, "access-log", true, "write one line per proxied request (see -access-log-*); never blocks a request: lines the sink cannot take are dropped and counted in "+accesslog.MetricDropped)
	fs.Func("access-log-format", "access log format: json (one object per line) or text (logfmt) (default json)", func(s string) error {
		f, err := accesslog.ParseFormat(s)
		a.Format = f
		return err
	})
	fs.StringVar(&a.File, "access-log-file", "", "append access log lines to this file (reopened on SIGHUP, for logrotate); empty: standard output (the router's own log is on standard error)")
	fs.Func("access-log-sample", "share of successful requests logged, 0 to 1; failures (status >= 500, a failed attempt, a retry, a breaker skip, a stop reason) are always logged (default 1)", func(s string) error {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v < 0 || v > 1 {
			return fmt.Errorf("want a share from 0 to 1, not %q", s)
		}
		a.Sample = v
		return nil
	})
	fs.Func("access-log-fields", "comma-separated access log fields: default, all, or names among time, client, forwarded_for, method, host, path, query, proto, status, bytes_in, bytes_out, duration, header_time, route, object, backend, attempts, retries, breaker_skips, stop, request_id, trace_id, grpc_status (default: all but query)", func(s string) error {
		f, err := accesslog.ParseFields(s)
		a.Fields = f
		return err
	})
	fs.BoolVar(&a.Query, "access-log-query", false, "log query strings too (they may carry tokens and other secrets)")
	fs.IntVar(&a.Queue, "access-log-queue", accesslog.DefaultQueue, "access log lines that may wait for a slow sink before further lines are dropped")
}

// accessLog is the running access log; nil when it is off.
type accessLog struct {
	l    *accesslog.Logger
	stop func()
	log  *slog.Logger
}

// startAccessLog opens the access log's sink and starts its writer.
func startAccessLog(c accessLogConfig, reg prometheus.Registerer, log *slog.Logger) (*accessLog, error) {
	if !c.Enabled {
		return nil, nil
	}
	fields := c.Fields
	if c.Query {
		fields |= accesslog.FieldQuery
	}
	log = log.With(logging.KeyComponent, "accesslog")
	l, err := accesslog.New(accesslog.Options{Format: c.Format, Fields: fields, Sample: c.Sample, File: c.File,
		Queue: c.Queue, Registerer: reg, Log: log})
	if err != nil {
		return nil, err
	}
	a := &accessLog{l: l, stop: func() {}, log: log}
	if c.File != "" {
		// logrotate moves the file and sends SIGHUP (or use its
		// copytruncate, which needs nothing from the router).
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		done := make(chan struct{})
		go func() {
			for {
				select {
				case <-hup:
					l.Reopen()
				case <-done:
					return
				}
			}
		}()
		a.stop = func() { signal.Stop(hup); close(done) }
	}
	return a, nil
}

// wrap puts the access log around h, the proxy listeners' handler.
func (a *accessLog) wrap(h http.Handler) http.Handler {
	if a == nil {
		return h
	}
	return a.l.Handler(h)
}

// tables follows the applied route tables (for the routes' objects).
func (a *accessLog) tables() func(routing.Table, bool) {
	if a == nil {
		return nil
	}
	return func(t routing.Table, _ bool) { a.l.SetTable(t) }
}

// close writes the lines still queued, once the proxy servers have
// stopped; a sink that does not take them is given up after 5 s.
func (a *accessLog) close() {
	if a == nil {
		return
	}
	a.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.l.Close(ctx); err != nil {
		a.log.Warn("access log not flushed at shutdown", logging.KeyError, err)
	}
}
