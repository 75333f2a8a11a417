package logging

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"
)

// MetricSuppressedErrors counts the error lines a Streak logger kept out
// of the log while a failure went on, by component.
const MetricSuppressedErrors = "bulkhead_log_errors_suppressed_total"

// Streak is a logr logger for client-go code that retries forever and
// logs every failed attempt, such as leader election, which logs "Error
// retrieving lease lock" every two seconds while the API server is down.
// It logs the first error of a failure streak (a warning), counts the
// repeats in MetricSuppressedErrors instead of logging them, and logs the
// streak's end once (info) when the code reports a success. Pass it in the
// context: klog.NewContext(ctx, s.Logger()).
type Streak struct {
	log        *slog.Logger
	suppressed prometheus.Counter
	succeeded  func(msg string) bool

	mu       sync.Mutex
	since    time.Time // the streak's first error; zero when there is none
	repeats  int
	firstMsg string
}

// NewStreak returns a Streak that logs to l (which names the component
// already) and counts for component. succeeded tells
// the info messages that mean the operation works again. The counter is
// registered on reg, which several Streaks may share.
func NewStreak(l *slog.Logger, reg prometheus.Registerer, component string, succeeded func(msg string) bool) *Streak {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricSuppressedErrors,
		Help: "Error lines of a component that retries forever (leader election) kept out of the log while a failure went on: the first and the recovery are logged."},
		[]string{"component"})
	if reg != nil {
		if err := reg.Register(vec); err != nil {
			if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
				vec = are.ExistingCollector.(*prometheus.CounterVec)
			}
		}
	}
	return &Streak{log: l, suppressed: vec.WithLabelValues(component), succeeded: succeeded}
}

// LeaderElectionSucceeded reports whether a client-go leader election
// message means it reached its lease: acquired, renewed, or read and
// found held by another replica (a follower's success).
func LeaderElectionSucceeded(msg string) bool {
	return strings.HasPrefix(msg, "Successfully acquired lease") || strings.HasPrefix(msg, "Successfully renewed lease") ||
		strings.HasPrefix(msg, "Lease is held")
}

// Logger is s as a logr logger.
func (s *Streak) Logger() logr.Logger { return logr.New(streakSink{s: s}) }

// Context is ctx carrying s for code that takes its logger from the
// context (klog.FromContext).
func (s *Streak) Context(ctx context.Context) context.Context {
	return klog.NewContext(ctx, s.Logger())
}

func (s *Streak) failed(err error, msg string, kv []any) {
	s.mu.Lock()
	first := s.since.IsZero()
	if first {
		s.since, s.repeats, s.firstMsg = time.Now(), 0, msg
	} else {
		s.repeats++
	}
	s.mu.Unlock()
	if !first {
		s.suppressed.Inc()
		s.log.Debug(msg, append(kv, KeyError, err)...)
		return
	}
	s.log.Warn(msg+"; retried until it works, repeats are counted in "+MetricSuppressedErrors+", not logged",
		append(kv, KeyError, err)...)
}

func (s *Streak) ok(msg string, kv []any) {
	s.mu.Lock()
	since, repeats, first := s.since, s.repeats, s.firstMsg
	s.since = time.Time{}
	s.mu.Unlock()
	if since.IsZero() {
		return
	}
	s.log.Info("working again: "+msg, append(kv, "failing_for", time.Since(since).Round(time.Millisecond),
		"errors_not_logged", repeats, "first_error", first)...)
}

// streakSink is the logr.LogSink of a Streak. Info lines keep the
// demotion of routeKlog (klog's info is our debug); they are all enabled
// because success is told by an info line at a high verbosity.
type streakSink struct {
	s     *Streak
	attrs []any
}

func (k streakSink) Init(logr.RuntimeInfo) {}
func (k streakSink) Enabled(int) bool      { return true }

func (k streakSink) Info(v int, msg string, kv ...any) {
	kv = append(slicesClip(k.attrs), kv...)
	if k.s.succeeded != nil && k.s.succeeded(msg) {
		k.s.ok(msg, kv)
	}
	if k.s.log.Enabled(context.Background(), slog.LevelDebug-slog.Level(v)) {
		k.s.log.Log(context.Background(), slog.LevelDebug-slog.Level(v), msg, kv...)
	}
}

func (k streakSink) Error(err error, msg string, kv ...any) {
	if err == nil {
		err = fmt.Errorf("%s", msg)
	}
	k.s.failed(err, msg, append(slicesClip(k.attrs), kv...))
}

func (k streakSink) WithValues(kv ...any) logr.LogSink {
	k.attrs = append(slicesClip(k.attrs), kv...)
	return k
}

func (k streakSink) WithName(string) logr.LogSink { return k }

func slicesClip(a []any) []any { return a[:len(a):len(a)] }
