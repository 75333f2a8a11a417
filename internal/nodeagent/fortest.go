package nodeagent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"

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
}

// ForTest is Start for tests: Close runs in t.Cleanup, errors fail the
// test, and a host that cannot run pods (not root, no ip command) skips the
// test, or fails it when CI=true. Without opts.Logger the agent logs
// through t.Logf. Start it before whatever sends traffic to its pods, so
// that cleanups stop the traffic first.
func ForTest(t TB, client kubernetes.Interface, opts Options) *Agent {
	t.Helper()
	if opts.Logger == nil {
		h := &testLog{t: t}
		t.Cleanup(func() { h.done.Store(true) }) // runs last: no logging after the test
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

type testLog struct {
	t    TB
	done atomic.Bool
}

func (w *testLog) Write(b []byte) (int, error) {
	if !w.done.Load() {
		w.t.Logf("%s", strings.TrimSuffix(string(b), "\n"))
	}
	return len(b), nil
}
