package chaos

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// commandT is a testing.TB for a scenario run by a command instead of by
// go test. The test helpers this package reuses (testrouter, toxiproxy)
// take a testing.TB, and rewriting them for a second caller would fork
// them; this gives them what they need with the same semantics: Fatal and
// Skip end the scenario's goroutine (runtime.Goexit), Cleanup functions
// run last-registered first when it ends, TempDir is a fresh directory,
// Context is cancelled before the cleanups run.
//
// testing.TB has an unexported method so that only the testing package
// implements it; the embedded nil TB supplies that method and nothing
// else: every exported method is defined below, so the nil is never used.
type commandT struct {
	testing.TB

	name string
	dir  string
	out  io.Writer

	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	failed   bool
	skipped  bool
	fatals   []string
	cleanups []func()
	temps    int
}

var _ testing.TB = (*commandT)(nil)

// runCommandT runs f as a scenario named name in a goroutine of its own,
// with a TB whose log goes to out and whose temporary directories are made
// under dir. It returns when f and every cleanup have finished, or when
// ctx ends (the scenario is then abandoned: its processes die with this
// one through their parent-death signal).
func runCommandT(ctx context.Context, name, dir string, out io.Writer, timeout time.Duration, f func(testing.TB)) *commandT {
	t := &commandT{name: name, dir: dir, out: out}
	t.ctx, t.cancel = context.WithTimeout(ctx, timeout)
	defer t.cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer t.runCleanups()
		f(t)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		t.Errorf("interrupted")
		// Give the cleanups (which kill the processes) a moment; the
		// context is cancelled, so waits inside the scenario end.
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
	}
	return t
}

func (t *commandT) runCleanups() {
	t.cancel()
	for {
		t.mu.Lock()
		n := len(t.cleanups)
		if n == 0 {
			t.mu.Unlock()
			return
		}
		f := t.cleanups[n-1]
		t.cleanups = t.cleanups[:n-1]
		t.mu.Unlock()
		// Each in its own goroutine: a cleanup that calls Fatal ends only
		// itself, the others still run.
		done := make(chan struct{})
		go func() {
			defer close(done)
			f()
		}()
		<-done
	}
}

func (t *commandT) logf(prefix, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(t.out, "%s %s: %s%s\n", time.Now().Format("15:04:05.000"), t.name, prefix,
		strings.ReplaceAll(strings.TrimRight(msg, "\n"), "\n", "\n    "))
}

func (t *commandT) Name() string                    { return t.name }
func (t *commandT) Helper()                         {}
func (t *commandT) Context() context.Context        { return t.ctx }
func (t *commandT) Output() io.Writer               { return t.out }
func (t *commandT) Attr(key, value string)          { t.logf("", "attr %s=%s", key, value) }
func (t *commandT) Log(args ...any)                 { t.logf("", "%s", fmt.Sprintln(args...)) }
func (t *commandT) Logf(format string, args ...any) { t.logf("", format, args...) }

func (t *commandT) Error(args ...any) { t.Errorf("%s", fmt.Sprintln(args...)) }
func (t *commandT) Errorf(format string, args ...any) {
	t.logf("ERROR: ", format, args...)
	t.Fail()
}

func (t *commandT) Fatal(args ...any) { t.Fatalf("%s", fmt.Sprintln(args...)) }
func (t *commandT) Fatalf(format string, args ...any) {
	t.logf("FATAL: ", format, args...)
	t.mu.Lock()
	t.fatals = append(t.fatals, strings.TrimSpace(fmt.Sprintf(format, args...)))
	t.mu.Unlock()
	t.FailNow()
}

func (t *commandT) Fail() {
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
}

func (t *commandT) FailNow() {
	t.Fail()
	runtime.Goexit()
}

func (t *commandT) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

func (t *commandT) Skip(args ...any) { t.Skipf("%s", fmt.Sprintln(args...)) }
func (t *commandT) Skipf(format string, args ...any) {
	t.logf("SKIP: ", format, args...)
	t.SkipNow()
}

func (t *commandT) SkipNow() {
	t.mu.Lock()
	t.skipped = true
	t.mu.Unlock()
	runtime.Goexit()
}

func (t *commandT) Skipped() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.skipped
}

func (t *commandT) Cleanup(f func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, f)
	t.mu.Unlock()
}

func (t *commandT) TempDir() string {
	t.mu.Lock()
	t.temps++
	n := t.temps
	t.mu.Unlock()
	dir := filepath.Join(t.dir, strconv.Itoa(n))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatalf("TempDir: %v", err)
	}
	return dir
}

func (t *commandT) ArtifactDir() string { return t.TempDir() }

func (t *commandT) Setenv(key, value string) {
	old, had := os.LookupEnv(key)
	os.Setenv(key, value)
	t.Cleanup(func() {
		if had {
			os.Setenv(key, old)
		} else {
			os.Unsetenv(key)
		}
	})
}

func (t *commandT) Chdir(string) {
	t.Fatalf("Chdir is not supported outside go test: the process runs several scenarios")
}
