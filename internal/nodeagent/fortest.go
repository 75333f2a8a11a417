package nodeagent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/bulkhead-router/bulkhead/internal/podnet"
	"k8s.io/client-go/kubernetes"
)

// TB is the part of testing.TB that ForTest uses, spelled out so that the
// package does not import testing into programs.
type TB interface {
	Helper()
	Context() context.Context
	Cleanup(func())
	Logf(format string, args ...any)
	Skipf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
}

// ForTest is Start for tests: Close runs in t.Cleanup, errors fail the
// test, and a host that cannot run pods (not root, no ip command) skips the
// test, or fails it when CI=true. Without opts.Logger the agent's log (its
// last testLogLines lines) goes through t.Logf when the test has failed,
// after everything else the test printed: a pod's every event, printed as
// it came, buried the test's own failure under hundreds of lines where CI
// shows only the head of a failing test's output. Start it before
// whatever sends traffic to its pods, so that cleanups stop the traffic
// first.
func ForTest(t TB, client kubernetes.Interface, opts Options) *Agent {
	t.Helper()
	if opts.Logger == nil {
		h := &testLog{}
		t.Cleanup(func() { // runs last: after the agent is closed
			if lines, dropped := h.take(); t.Failed() && len(lines) > 0 {
				t.Logf("node agent log (%d earlier lines left out):\n%s", dropped, strings.Join(lines, "\n"))
			}
		})
		opts.Logger = slog.New(slog.NewTextHandler(h, nil))
	}
	a, err := Start(t.Context(), client, opts)
	if err != nil {
		var missing *podnet.MissingPreconditionError
		if errors.As(err, &missing) && os.Getenv("CI") != "true" {
			t.Skipf("%v", err)
		}
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("close node agent: %v", err)
		}
	})
	return a
}

// testLogLines is how many of the agent's last log lines a failed test
// prints.
const testLogLines = 2000

// testLog keeps the agent's last testLogLines log lines.
type testLog struct {
	mu      sync.Mutex
	lines   []string
	dropped int
	done    bool
}

func (w *testLog) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		if len(w.lines) == testLogLines {
			w.lines = w.lines[1:]
			w.dropped++
		}
		w.lines = append(w.lines, strings.TrimSuffix(string(b), "\n"))
	}
	return len(b), nil
}

// take returns the lines kept and how many were dropped before them, and
// keeps no more.
func (w *testLog) take() ([]string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	return w.lines, w.dropped
}
