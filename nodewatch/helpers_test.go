package nodewatch_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"github.com/bulkhead-router/bulkhead/nodewatch"
)

// awaitTimeout is generous: a loaded 2-core machine running a real API
// server, and client-go's reflector backoff after an error (up to a few
// seconds early on), both count against it.
const awaitTimeout = 30 * time.Second

// await polls cond until it holds; the watcher works on its own goroutines.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(awaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", awaitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// harness is a running Watcher with its registry, log and change record.
type harness struct {
	w   *nodewatch.Watcher
	reg *prometheus.Registry
	log *syncBuffer

	mu      sync.Mutex
	changes []string // "true cordoned", "false ", ...
	addrs   []string // each OnAddresses call, as fmt.Sprint prints it
}

// start runs a Watcher for node until the test ends.
func start(t *testing.T, client kubernetes.Interface, node string) *harness {
	t.Helper()
	h := &harness{reg: prometheus.NewRegistry(), log: &syncBuffer{}}
	w, err := nodewatch.New(client, node, nodewatch.Options{
		Log:        slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: h.reg,
		OnChange: func(draining bool, reason string) {
			h.mu.Lock()
			h.changes = append(h.changes, fmt.Sprint(draining, " ", reason))
			h.mu.Unlock()
		},
		OnAddresses: func(addrs []netip.Addr) {
			h.mu.Lock()
			h.addrs = append(h.addrs, fmt.Sprint(addrs))
			h.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

// awaitDecision waits until Draining reports the wanted decision.
func (h *harness) awaitDecision(t *testing.T, draining bool, reason string) {
	t.Helper()
	await(t, fmt.Sprintf("Draining() = (%v, %q)", draining, reason), func() bool {
		d, r := h.w.Draining()
		return d == draining && r == reason
	})
}

func (h *harness) addressLog() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.addrs...)
}

func (h *harness) changeLog() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.changes...)
}

// metric returns the value of the named metric whose labels include the
// given name=value pairs; it fails the test if there is none.
func (h *harness) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	v, ok := gathered(t, h.reg, name, labels...)
	if !ok {
		t.Fatalf("no metric %s%v", name, labels)
	}
	return v
}

func gathered(t *testing.T, g prometheus.Gatherer, name string, labels ...string) (float64, bool) {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			}
		}
	}
	return 0, false
}

// syncBuffer is a bytes.Buffer safe for the watcher's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lines returns the log lines containing every one of the fragments.
func (s *syncBuffer) lines(fragments ...string) []string {
	var out []string
	for _, l := range strings.Split(s.String(), "\n") {
		ok := l != ""
		for _, f := range fragments {
			ok = ok && strings.Contains(l, f)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}
