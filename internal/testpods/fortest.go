package testpods

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"

	"k8s.io/client-go/kubernetes"
)

// TB is the part of testing.TB that ForTest uses. It is spelled out so the
// package does not import testing into non-test programs such as the demo.
type TB interface {
	Helper()
	Context() context.Context
	Cleanup(func())
	Logf(format string, args ...any)
	Skipf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// InCI reports whether the project's CI rule applies: with CI=true a
// missing dependency fails a test instead of skipping it.
func InCI() bool { return os.Getenv("CI") == "true" }

// ForTest is New for tests: it closes the Cluster in t.Cleanup, fails the
// test on errors, and for a host that cannot run pods skips the test with
// the reason, or fails it when CI=true. Without opts.Logger the Cluster
// logs through t.Logf.
//
// Create the Cluster before whatever sends traffic to its pods: cleanups
// run last-registered first, so that traffic stops before the pods go.
func ForTest(t TB, client kubernetes.Interface, opts Options) *Cluster {
	t.Helper()
	if opts.Logger == nil {
		h := &testLogHandler{t: t}
		// Registered first, so it runs last: nothing logs after the
		// test is over, which testing forbids.
		t.Cleanup(func() { h.done.Store(true) })
		opts.Logger = slog.New(slog.NewTextHandler(testLogWriter{h}, nil))
	}
	c, err := New(t.Context(), client, opts)
	if err != nil {
		var missing *MissingPreconditionError
		if errors.As(err, &missing) && !InCI() {
			t.Skipf("%v", err)
		}
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close testpods cluster: %v", err)
		}
	})
	return c
}

type testLogHandler struct {
	t    TB
	done atomic.Bool
}

type testLogWriter struct{ h *testLogHandler }

func (w testLogWriter) Write(b []byte) (int, error) {
	if !w.h.done.Load() {
		w.h.t.Logf("%s", strings.TrimSuffix(string(b), "\n"))
	}
	return len(b), nil
}
