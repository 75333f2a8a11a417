package logging

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestStreakLogsAFailureOnceAndItsEndOnce plays what client-go's leader
// election logs through an API server outage: an error every retry, then
// a renewal.
func TestStreakLogsAFailureOnceAndItsEndOnce(t *testing.T) {
	var out bytes.Buffer
	l := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	reg := prometheus.NewRegistry()
	s := NewStreak(l.With(KeyComponent, "ingressstatus"), reg, "ingressstatus", LeaderElectionSucceeded)
	log := s.Logger().WithValues("lock", "kube-system/bulkhead")
	refused := errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")

	log.V(5).Info("Successfully renewed lease") // no streak: nothing to report
	for range 30 {
		log.Error(refused, "Error retrieving lease lock")
		log.Info("Failed to renew lease")
	}
	log.V(5).Info("Successfully renewed lease")
	log.V(5).Info("Successfully renewed lease")
	for range 3 {
		log.Error(refused, "Failed to update lease")
	}

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("logged %d lines, want 3 (the first error, the recovery, the next streak's first error):\n%s", len(lines), out.String())
	}
	for i, want := range []string{"level=WARN msg=\"Error retrieving lease lock;", "level=INFO msg=\"working again: Successfully renewed lease\"", "level=WARN msg=\"Failed to update lease;"} {
		if !strings.Contains(lines[i], want) || !strings.Contains(lines[i], "component=ingressstatus") || !strings.Contains(lines[i], "lock=kube-system/bulkhead") {
			t.Errorf("line %d = %s\nwant it to contain %q, the component and the lock", i, lines[i], want)
		}
	}
	if !strings.Contains(lines[1], "errors_not_logged=29") {
		t.Errorf("the recovery line does not count the 29 errors it kept out: %s", lines[1])
	}
	if got := testutil.ToFloat64(s.suppressed); got != 29+2 {
		t.Errorf("%s = %v, want 31", MetricSuppressedErrors, got)
	}
	// A second Streak on the same registry shares the metric.
	other := NewStreak(l, reg, "gatewaystatus", LeaderElectionSucceeded)
	other.Logger().Error(refused, "Error retrieving lease lock")
	other.Logger().Error(refused, "Error retrieving lease lock")
	if n, err := testutil.GatherAndCount(reg, MetricSuppressedErrors); err != nil || n != 2 {
		t.Errorf("%s series: %d (%v), want 2, one per component", MetricSuppressedErrors, n, err)
	}
}
