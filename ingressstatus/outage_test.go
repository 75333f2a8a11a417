package ingressstatus

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	"github.com/bulkhead-router/bulkhead/internal/logging"
)

// syncBuffer is a log sink the writer's goroutines and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestOutageLogsTheLeaseLossOnceAndTheReturnOnce runs the writer against a
// real API server that goes away for a while: leader election retries its
// lease every RetryPeriod and logs each failure, and the writer's log must
// say so once, count the rest, and say once that it works again.
func TestOutageLogsTheLeaseLossOnceAndTheReturnOnce(t *testing.T) {
	cp := controlplane.ForTest(t)
	client := cp.Client()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bulkhead"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	reg := prometheus.NewRegistry()
	w := New(Options{Client: client, Addresses: []string{"192.0.2.1"}, LeaseNamespace: "bulkhead", LeaseName: "status",
		Identity: "router-a", Log: slog.New(slog.NewTextHandler(&out, nil)).With(logging.KeyComponent, "ingressstatus"),
		Registerer:    reg,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 100 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	await := func(what string, timeout time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s; log:\n%s", what, timeout, out.String())
			}
			<-time.After(20 * time.Millisecond) // polling a metric and a log; nothing to await
		}
	}
	await("leading", 30*time.Second, func() bool { return testutil.ToFloat64(w.leader) == 1 })

	if err := cp.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	suppressed := func() float64 {
		n, _ := testutil.GatherAndCount(reg, logging.MetricSuppressedErrors)
		if n == 0 {
			return 0
		}
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == logging.MetricSuppressedErrors {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return 0
	}
	// Ten retries at 100 ms are a second of outage at least.
	await("lease errors counted instead of logged", 30*time.Second, func() bool { return suppressed() >= 10 })
	if err := cp.RestartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	await("the return logged", 60*time.Second, func() bool { return strings.Contains(out.String(), "working again") })

	var warnings, recoveries int
	for _, line := range strings.Split(out.String(), "\n") {
		switch {
		case strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR"):
			if strings.Contains(line, "lease") {
				warnings++
			}
		case strings.Contains(line, "working again"):
			recoveries++
		}
	}
	if warnings != 1 || recoveries != 1 {
		t.Errorf("the outage was logged as %d lease warnings and %d recoveries, want 1 and 1 (%v more errors counted); log:\n%s",
			warnings, recoveries, suppressed(), out.String())
	}
	stop()
	<-done
}
