package controlplane

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// ForTest starts a control plane for one test and stops it when the test
// ends. On failure the tails of the etcd, kube-apiserver and (if started)
// controller logs are added to the test output, which is usually what explains an integration failure.
//
// A control plane that cannot be built or started fails the test; it is
// never skipped, because the tests that need it prove the product works.
// Only -short (make unit) leaves them out, on purpose.
func ForTest(t testing.TB) *ControlPlane {
	t.Helper()
	return ForTestWith(t, Options{})
}

// ForTestWith is ForTest with options (Progress is set here).
func ForTestWith(t testing.TB, o Options) *ControlPlane {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real control plane; not run with -short (make unit)")
	}
	o.Progress = testWriter{t}
	cp, err := Start(context.Background(), o)
	if err != nil {
		t.Fatalf("starting the control plane: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range []string{"etcd.log", "kube-apiserver.log", "kube-controller-manager.log", "kube-scheduler.log"} {
				if _, err := os.Stat(filepath.Join(cp.Dir(), "logs", name)); err != nil {
					continue // no controllers
				}
				t.Logf("--- tail of %s:\n%s", name, tail(filepath.Join(cp.Dir(), "logs", name), 15))
			}
		}
		cp.Stop()
	})
	return cp
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	if os.Getenv("BULKHEAD_TEST_VERBOSE") != "" {
		w.t.Logf("%s", p)
	}
	return len(p), nil
}
