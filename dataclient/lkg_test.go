package dataclient

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/bulkhead-router/bulkhead/routing"
)

// memStore is an in-memory TableStore.
type memStore struct {
	mu      sync.Mutex
	table   *routing.Table
	savedAt time.Time
	offers  int
}

func (s *memStore) Load() (routing.Table, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.table == nil {
		return routing.Table{}, time.Time{}, errors.New("no snapshot")
	}
	return *s.table, s.savedAt, nil
}

func (s *memStore) Offer(t routing.Table) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.table, s.savedAt = &t, time.Now()
	s.offers++
}

func (s *memStore) offered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.offers
}

// outage makes cs fail every list and watch while down is true, as an
// unreachable API server would, and returns the matching probe.
func outage(cs *fake.Clientset, down *atomic.Bool) func(context.Context) error {
	refused := errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")
	cs.PrependReactor("list", "*", func(clienttesting.Action) (bool, runtime.Object, error) {
		if down.Load() {
			return true, nil, refused
		}
		return false, nil, nil
	})
	cs.PrependWatchReactor("*", func(clienttesting.Action) (bool, watch.Interface, error) {
		if down.Load() {
			return true, nil, refused
		}
		return false, nil, nil
	})
	return func(context.Context) error {
		if down.Load() {
			return refused
		}
		return nil
	}
}

// runClient runs a Client with the given options until the test ends.
func runClient(t *testing.T, o Options) *Client {
	t.Helper()
	if o.HoldOff == 0 {
		o.HoldOff, o.MaxDelay = time.Millisecond, 5*time.Millisecond
	}
	c := New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); c.Close(); <-done })
	return c
}

func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // the client works on its own goroutines
	}
}

func TestServesSnapshotWhenAPIServerIsDownAtStart(t *testing.T) {
	cs := fake.NewClientset(ingressClass(), service("a"), slice("a", "10.0.0.1"), ingress("a", "a.example", "a"))
	// The stored table is what a previous run served: Ingresses a and b.
	prev := fake.NewClientset(ingressClass(), service("a"), slice("a", "10.0.0.1"), ingress("a", "a.example", "a"),
		service("b"), slice("b", "10.0.0.2"), ingress("b", "b.example", "b"))
	store := &memStore{}
	snap := translateFrom(t, prev)
	store.table, store.savedAt = &snap, time.Now().Add(-time.Minute)

	var down atomic.Bool
	down.Store(true)
	c := runClient(t, Options{Connector: staticConnector{client: cs, probe: outage(cs, &down)}, Store: store})
	routes := awaitLoadAll(t, c)
	if got := ids(routes); len(got) != 2 {
		t.Fatalf("serving %v, want the stored table's two routes", got)
	}
	if st := c.Status(); st.Table.Source != SourceSnapshot || st.APIServer.Connected || st.Table.AgeSeconds < 59 {
		t.Fatalf("status while serving the snapshot: %+v", st)
	}
	if store.offered() != 0 {
		t.Fatal("a table from the snapshot was written back to the store")
	}

	// The API server comes back: the live table (only Ingress a) replaces
	// the snapshot (removing one of two Ingresses is no mass deletion).
	down.Store(false)
	await(t, "the live table", func() bool { return c.Status().Table.Source == SourceAPIServer })
	table, _ := c.Table()
	if len(table.Routes) != 1 || !strings.Contains(table.Routes[0].Eskip.Id, "__a__") {
		t.Fatalf("live table: %v", table.Routes)
	}
	if st := c.Status(); !st.APIServer.Connected || st.APIServer.LastSync.IsZero() {
		t.Fatalf("status after reconnecting: %+v", st.APIServer)
	}
	await(t, "the live table stored", func() bool { return store.offered() > 0 })
}

func TestNoSnapshotAndNoAPIServerStaysUnready(t *testing.T) {
	cs := fake.NewClientset()
	var down atomic.Bool
	down.Store(true)
	c := runClient(t, Options{Connector: staticConnector{client: cs, probe: outage(cs, &down)}, Store: &memStore{}})
	if routes, err := c.LoadAll(); err == nil {
		t.Fatalf("LoadAll with neither API server nor snapshot = %d routes, want an error", len(routes))
	}
	if st := c.Status(); st.Table.Loaded {
		t.Fatalf("status claims a table: %+v", st)
	}
}

func TestDeletionGuardHoldsMassRemovalThenAppliesAfterPeriod(t *testing.T) {
	cs := fake.NewClientset(ingressClass(),
		service("a"), slice("a", "10.0.0.1"), ingress("a", "a.example", "a"),
		service("b"), slice("b", "10.0.0.2"), ingress("b", "b.example", "b"),
		service("c"), slice("c", "10.0.0.3"), ingress("c", "c.example", "c"))
	c := runClient(t, Options{Client: cs, Guard: GuardOptions{HoldPeriod: 300 * time.Millisecond}})
	awaitLoadAll(t, c)

	for _, name := range []string{"a", "b", "c"} {
		if err := cs.NetworkingV1().Ingresses("ns").Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	await(t, "a hold", func() bool { return c.Status().Hold != nil })
	held := c.Status()
	if held.Table.Routes != 3 || held.Hold.Ingresses != 3 || testutil.ToFloat64(c.metrics.holding) != 1 {
		t.Fatalf("while holding: %+v %+v", held.Table, held.Hold)
	}
	await(t, "the hold period to pass and the update to apply", func() bool {
		st := c.Status()
		return st.Hold == nil && st.Table.Routes == 0
	})
	if time.Since(held.Hold.Since) < 300*time.Millisecond {
		t.Fatal("applied before the hold period")
	}
	if testutil.ToFloat64(c.metrics.holding) != 0 || testutil.ToFloat64(c.metrics.holds) != 1 {
		t.Fatal("guard metrics not updated")
	}
}

func TestDeletionGuardConfirmAppliesAtOnce(t *testing.T) {
	cs := fake.NewClientset(ingressClass(),
		service("a"), slice("a", "10.0.0.1"), ingress("a", "a.example", "a"),
		service("b"), slice("b", "10.0.0.2"), ingress("b", "b.example", "b"),
		service("c"), slice("c", "10.0.0.3"), ingress("c", "c.example", "c"))
	c := runClient(t, Options{Client: cs, Guard: GuardOptions{HoldPeriod: time.Hour}})
	awaitLoadAll(t, c)
	if c.ConfirmHold() {
		t.Fatal("ConfirmHold with nothing held reported a hold")
	}
	for _, name := range []string{"a", "b", "c"} {
		if err := cs.NetworkingV1().Ingresses("ns").Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	await(t, "a hold", func() bool { return c.Status().Hold != nil })
	if !c.ConfirmHold() {
		t.Fatal("ConfirmHold did not see the hold")
	}
	await(t, "the confirmed update", func() bool { st := c.Status(); return st.Hold == nil && st.Table.Routes == 0 })
}

func TestSingleIngressDeletionAppliesAtOnce(t *testing.T) {
	cs := fake.NewClientset(ingressClass(), service("a"), slice("a", "10.0.0.1"), ingress("a", "a.example", "a"))
	c := runClient(t, Options{Client: cs, Guard: GuardOptions{HoldPeriod: time.Hour}})
	awaitLoadAll(t, c)
	if err := cs.NetworkingV1().Ingresses("ns").Delete(context.Background(), "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	await(t, "the deletion", func() bool { return c.Status().Table.Routes == 0 })
	if c.Status().Hold != nil {
		t.Fatal("deleting the only Ingress was held")
	}
}

// translateFrom builds the table a client would build from cs.
func translateFrom(t *testing.T, cs *fake.Clientset) routing.Table {
	t.Helper()
	c := runClient(t, Options{Client: cs})
	awaitLoadAll(t, c)
	table, _ := c.Table()
	return table
}

// TestMassDeletionAfterAQuietSpellIsHeldWhole: the first change after a
// quiet spell is rebuilt at once (no hold-off), but a removal is not: the
// deletions of a mass deletion arriving one by one are held together, and
// no table without the first deleted Ingress is ever given to skipper
// (its routes would answer 404 until the guard brought them back).
func TestMassDeletionAfterAQuietSpellIsHeldWhole(t *testing.T) {
	cs := fake.NewClientset(ingressClass(),
		service("a"), slice("a", "10.0.0.1"), ingress("a", "a.example", "a"),
		service("b"), slice("b", "10.0.0.2"), ingress("b", "b.example", "b"),
		service("c"), slice("c", "10.0.0.3"), ingress("c", "c.example", "c"))
	const holdOff = 300 * time.Millisecond
	c := runClient(t, Options{Client: cs, HoldOff: holdOff, MaxDelay: 3 * time.Second, Guard: GuardOptions{HoldPeriod: time.Hour}})
	awaitLoadAll(t, c)
	// A quiet spell: the hold-off's leading edge applies to the next change.
	<-time.After(2 * holdOff)
	// Watch the served table's size meanwhile (every millisecond; a table
	// built between the deletions would be served for a sixth of the
	// hold-off).
	fewest := make(chan int)
	stop := make(chan struct{})
	go func() {
		least := c.Status().Table.Routes
		for {
			select {
			case <-stop:
				fewest <- least
				return
			case <-time.After(time.Millisecond):
				least = min(least, c.Status().Table.Routes)
			}
		}
	}()
	for _, name := range []string{"a", "b", "c"} {
		if err := cs.NetworkingV1().Ingresses("ns").Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// The pace of a script deleting one by one: well inside the
		// hold-off, long enough for a rebuild to run in between.
		<-time.After(holdOff / 6)
	}
	await(t, "a hold", func() bool { return c.Status().Hold != nil })
	close(stop)
	if st := c.Status(); st.Table.Routes != 3 || st.Hold.Ingresses != 3 {
		t.Fatalf("while holding: %+v %+v", st.Table, st.Hold)
	}
	if n := <-fewest; n != 3 {
		t.Fatalf("a table of %d routes was served before the hold: the first deletions were applied alone", n)
	}
}
