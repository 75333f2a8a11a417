package tablestore

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/routing"
)

// fakeTimer replaces the writer's timers: the test sees each wait asked
// for and decides when it is over.
type fakeTimer struct {
	asked chan time.Duration
	fire  chan time.Time
}

func newFakeTimer(s *Store) *fakeTimer {
	ft := &fakeTimer{asked: make(chan time.Duration, 100), fire: make(chan time.Time)}
	s.after = func(d time.Duration) (<-chan time.Time, func()) {
		ft.asked <- d
		return ft.fire, func() {}
	}
	return ft
}

// waitAsked returns the next wait the writer asks for, failing after 10 s.
func (ft *fakeTimer) waitAsked(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-ft.asked:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("the writer does not wait for the interval")
		return 0
	}
}

// startWriter runs the writer; the returned func cancels it and waits for
// it to return.
func startWriter(s *Store, interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.RunWriter(ctx, interval) })
	return func() { cancel(); wg.Wait() }
}

func (h *harness) requireServed(t *testing.T, want int) {
	t.Helper()
	got, _, err := h.Load()
	if err != nil {
		t.Fatal(err)
	}
	requireSameTable(t, smallTable(want), got)
}

func TestWriterCoalesces(t *testing.T) {
	h := newHarness(t, Options{})
	ft := newFakeTimer(h.Store)
	stop := startWriter(h.Store, time.Hour)
	defer stop()

	// The first table after a quiet time is written at once.
	h.Offer(smallTable(1))
	waitFor(t, "the first write", func() bool { return h.writes("ok") == 1 })
	h.requireServed(t, 1)

	// Within the interval, offers pile up; the newest is written when the
	// interval is over, once.
	for i := 2; i <= 100; i++ {
		h.Offer(smallTable(i))
	}
	if d := ft.waitAsked(t); d <= 0 || d > time.Hour {
		t.Errorf("writer waits %v, want up to the interval", d)
	}
	if v := h.writes("ok"); v != 1 {
		t.Fatalf("%v writes before the interval ended", v)
	}
	ft.fire <- time.Now()
	waitFor(t, "the second write", func() bool { return h.writes("ok") == 2 })
	h.requireServed(t, 100)

	stop()
	if v := h.writes("ok") + h.writes("error"); v != 2 {
		t.Errorf("%v writes in all, want 2", v)
	}
}

func TestWriterFlushesOnShutdown(t *testing.T) {
	h := newHarness(t, Options{})
	ft := newFakeTimer(h.Store)
	stop := startWriter(h.Store, time.Hour)

	h.Offer(smallTable(1))
	waitFor(t, "the first write", func() bool { return h.writes("ok") == 1 })
	h.Offer(smallTable(2))
	h.Offer(smallTable(3))
	ft.waitAsked(t) // the writer waits for the interval
	stop()          // ... which never ends: shutdown writes the pending table
	if v := h.writes("ok"); v != 2 {
		t.Fatalf("%v writes, want 2", v)
	}
	h.requireServed(t, 3)
}

// With real timers and a short interval, offers keep being written.
func TestWriterRealTimer(t *testing.T) {
	h := newHarness(t, Options{})
	stop := startWriter(h.Store, 5*time.Millisecond)
	defer stop()
	for i := 1; i <= 3; i++ {
		h.Offer(smallTable(i))
		waitFor(t, "a write", func() bool {
			got, _, err := h.Load()
			return err == nil && got.Served[0].Name == smallTable(i).Served[0].Name
		})
	}
	stop()
	if v := h.writes("ok"); v != 3 {
		t.Errorf("%v writes, want 3", v)
	}
}

func TestOfferNeverBlocks(t *testing.T) {
	h := newHarness(t, Options{})
	done := make(chan struct{})
	go func() { // no writer running
		for i := range 1000 {
			h.Offer(smallTable(i))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Offer blocked")
	}
}

// A failing write is retried with the newest table, backing off; the
// failure is logged once and the recovery once.
func TestWriterRetriesFailedWrites(t *testing.T) {
	h := newHarness(t, Options{})
	ft := newFakeTimer(h.Store)
	mustDo(t, os.Mkdir(h.Path(), 0o700)) // makes the rename fail
	stop := startWriter(h.Store, time.Second)
	defer stop()

	h.Offer(smallTable(1))
	waitFor(t, "a failed write", func() bool { return h.writes("error") == 1 })
	d1 := ft.waitAsked(t)
	ft.fire <- time.Now()
	waitFor(t, "a second failed write", func() bool { return h.writes("error") == 2 })
	d2 := ft.waitAsked(t)
	if d1 <= 0 || d1 > time.Second || d2 <= time.Second || d2 > 2*time.Second {
		t.Errorf("retry waits %v then %v, want about 1 s then 2 s", d1, d2)
	}

	h.Offer(smallTable(2)) // the newest is what the retry writes
	mustDo(t, os.Remove(h.Path()))
	ft.fire <- time.Now()
	waitFor(t, "a write", func() bool { return h.writes("ok") == 1 })
	h.requireServed(t, 2)

	lines := h.logs.lines()
	if len(lines) != 2 || !strings.Contains(lines[0], "level=ERROR") || !strings.Contains(lines[1], "written again") {
		t.Errorf("logs:\n%s", strings.Join(lines, "\n"))
	}
}

// A table that cannot be encoded is not retried: the next offer is
// written after the interval.
func TestWriterDropsUnencodableTable(t *testing.T) {
	h := newHarness(t, Options{})
	ft := newFakeTimer(h.Store)
	stop := startWriter(h.Store, time.Hour)
	defer stop()

	h.Offer(routing.Table{Routes: []*routing.Route{{}}}) // no eskip route
	waitFor(t, "a failed write", func() bool { return h.writes("error") == 1 })
	h.Offer(smallTable(1))
	ft.waitAsked(t)
	ft.fire <- time.Now()
	waitFor(t, "a write", func() bool { return h.writes("ok") == 1 })
	h.requireServed(t, 1)
	if v := h.writes("error"); v != 1 {
		t.Errorf("%v failed writes, want 1", v)
	}
}

func TestFailureLogIsRateLimited(t *testing.T) {
	now := fixedNow
	h := newHarness(t, Options{Now: func() time.Time { return now }})
	mustDo(t, os.Mkdir(h.Path(), 0o700))
	fail := func(n int) {
		t.Helper()
		for range n {
			if err := h.Save(smallTable(1)); err == nil {
				t.Fatal("Save succeeded")
			}
		}
	}
	fail(5)
	if n := h.logs.count(); n != 1 {
		t.Fatalf("%d log lines after the first failures, want 1", n)
	}
	now = now.Add(59 * time.Second)
	fail(3)
	if n := h.logs.count(); n != 1 {
		t.Fatalf("%d log lines within a minute, want 1", n)
	}
	now = now.Add(time.Second)
	fail(1)
	if n := h.logs.count(); n != 2 || !strings.Contains(h.logs.lines()[1], "unlogged_failures=7") {
		t.Fatalf("after a minute: %q", h.logs.lines())
	}
	mustDo(t, os.Remove(h.Path()))
	for range 3 {
		mustDo(t, h.Save(smallTable(1)))
	}
	lines := h.logs.lines()
	if len(lines) != 3 || !strings.Contains(lines[2], "level=INFO") || !strings.Contains(lines[2], "written again") {
		t.Fatalf("after recovering: %q", lines)
	}
	if h.writes("error") != 9 || h.writes("ok") != 3 {
		t.Errorf("writes error=%v ok=%v", h.writes("error"), h.writes("ok"))
	}
	// A new run of failures is logged at once.
	mustDo(t, os.Remove(h.Path()))
	mustDo(t, os.Mkdir(h.Path(), 0o700))
	fail(1)
	if n := h.logs.count(); n != 4 {
		t.Fatalf("a new failure is not logged: %q", h.logs.lines())
	}
}

// A table offered before a writer that is already told to stop still gets
// written. (The writer may see the stop or the offer first; both ways
// must write it, so try a few times.)
func TestWriterFlushesWhenStoppedAtOnce(t *testing.T) {
	h := newHarness(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 1; i <= 20; i++ {
		h.Offer(smallTable(i))
		h.RunWriter(ctx, time.Hour)
		if v := h.writes("ok"); v != float64(i) {
			t.Fatalf("round %d: %v writes", i, v)
		}
		h.requireServed(t, i)
	}
}
