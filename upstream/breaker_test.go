package upstream

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sony/gobreaker/v2"
)

func TestBreakerLifecycle(t *testing.T) {
	u, reg := newUpstream(t, Config{Breaker: BreakerConfig{OpenFor: 50 * time.Millisecond}})
	b := u.Breakers()
	const ep = "10.0.0.1:8080"

	for i := 0; i < 4; i++ {
		b.Record(ep, Failure)
	}
	if s := b.State(ep); s != gobreaker.StateClosed || !b.Available(ep) {
		t.Fatalf("after 4 failures: %v", s)
	}
	b.Record(ep, Success) // resets the consecutive count
	for i := 0; i < 4; i++ {
		b.Record(ep, Failure)
	}
	if b.State(ep) != gobreaker.StateClosed {
		t.Fatal("success must reset the consecutive failure count")
	}
	b.Record(ep, Failure)
	if s := b.State(ep); s != gobreaker.StateOpen || b.Available(ep) {
		t.Fatalf("after 5 consecutive failures: %v", s)
	}
	if _, ok := b.Allow(ep); ok {
		t.Fatal("open breaker admitted a request")
	}
	if g := testutil.ToFloat64(u.metrics.open); g != 1 {
		t.Fatalf("open gauge %v", g)
	}

	// cool-down over: exactly one probe.
	eventually(t, "half-open", func() bool { return b.Available(ep) })
	if s := b.State(ep); s != gobreaker.StateHalfOpen {
		t.Fatalf("state %v", s)
	}
	done, ok := b.Allow(ep)
	if !ok {
		t.Fatal("probe refused")
	}
	if _, ok2 := b.Allow(ep); ok2 || b.Available(ep) {
		t.Fatal("second request admitted while the probe is in flight")
	}
	done(Failure) // failed probe: open again
	if b.State(ep) != gobreaker.StateOpen {
		t.Fatal("failed probe must reopen")
	}
	eventually(t, "half-open again", func() bool { return b.Available(ep) })
	done, ok = b.Allow(ep)
	if !ok {
		t.Fatal("probe refused")
	}
	done(Success)
	if s := b.State(ep); s != gobreaker.StateClosed || !b.Available(ep) {
		t.Fatalf("after successful probe: %v", s)
	}
	if g := testutil.ToFloat64(u.metrics.open); g != 0 {
		t.Fatalf("open gauge %v", g)
	}
	if n := testutil.ToFloat64(u.metrics.stateChanges.WithLabelValues(ep, "open")); n != 2 {
		t.Fatalf("changes to open: %v", n)
	}

	// An endpoint that left every backend is dropped one update later,
	// with its share of the open gauge; the others keep their state.
	const other = "10.0.0.2:8080"
	u.SetEndpoints(map[string][]string{"k": {ep, other}})
	for i := 0; i < 5; i++ {
		b.Record(other, Failure)
	}
	if g := testutil.ToFloat64(u.metrics.open); g != 1 {
		t.Fatalf("open gauge %v", g)
	}
	u.SetEndpoints(map[string][]string{"k": {ep}})
	u.SetEndpoints(map[string][]string{"k": {ep}})
	if b.Len() != 1 || b.State(other) != gobreaker.StateClosed || !b.Available(other) {
		t.Fatal("dropped breaker still present")
	}
	if g := testutil.ToFloat64(u.metrics.open); g != 0 {
		t.Fatalf("open gauge after the drop %v", g)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == labelEndpoint && l.GetValue() == other {
					t.Fatalf("%s still has a series of the dropped endpoint", mf.GetName())
				}
			}
		}
	}
	if b.State(ep) != gobreaker.StateClosed || b.Len() != 1 {
		t.Fatal("active breaker dropped")
	}
}

func TestBudget(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBudget(BudgetConfig{Ratio: 0.2, MinPerSecond: 1, Window: 2 * time.Second}, func() time.Time { return now })
	for i := 0; i < 10; i++ {
		b.request()
	}
	n := 0
	for b.withdraw() {
		n++
	}
	if n != 4 { // 0.2*10 + 1*2
		t.Fatalf("withdrew %d, want 4", n)
	}
	now = now.Add(2 * time.Second) // window slid past everything
	if !b.withdraw() || !b.withdraw() || b.withdraw() {
		t.Fatal("floor after the window slid")
	}
}

// A client cancellation says nothing about the endpoint: it neither resets
// the consecutive-failure count (a pod that hangs longer than most
// clients wait still trips once the others time out) nor counts as a
// failure, and a cancelled half-open probe frees the slot for the next
// probe without closing or reopening the breaker.
func TestCancellationCountsNeitherWay(t *testing.T) {
	u, _ := newUpstream(t, Config{Breaker: BreakerConfig{OpenFor: 50 * time.Millisecond}})
	b := u.Breakers()
	const ep = "10.0.0.1:8080"
	for i := 0; i < 20; i++ {
		b.Record(ep, Ignored)
	}
	if s := b.State(ep); s != gobreaker.StateClosed {
		t.Fatalf("cancellations alone: %v", s)
	}
	for i := 0; i < 5; i++ {
		b.Record(ep, Failure)
		b.Record(ep, Ignored) // between every two failures
	}
	if s := b.State(ep); s != gobreaker.StateOpen {
		t.Fatalf("5 failures interleaved with cancellations: %v, want open (%+v)", s, b.Snapshot(ep))
	}

	eventually(t, "half-open", func() bool { return b.Available(ep) })
	done, ok := b.Allow(ep)
	if !ok {
		t.Fatal("probe refused")
	}
	done(Ignored)
	if s := b.State(ep); s != gobreaker.StateHalfOpen || !b.Available(ep) {
		t.Fatalf("after a cancelled probe: %v, available %v; want half-open with the probe slot free", s, b.Available(ep))
	}
	done, ok = b.Allow(ep)
	if !ok {
		t.Fatal("the next probe was refused: the cancelled one leaked its slot")
	}
	done(Success)
	if s := b.State(ep); s != gobreaker.StateClosed {
		t.Fatalf("after a successful probe: %v", s)
	}
}
