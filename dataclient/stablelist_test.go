package dataclient

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/bulkhead-router/bulkhead/routing"
)

// A stable list holds what the store holds, keeps every object that did
// not change in its place (but the last one, which may fill a removed
// one's), and never modifies a list it handed out.
func TestStableListFollowsTheStoreInPlace(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	store := cache.NewStore(cache.MetaNamespaceKeyFunc)
	put := func(name string) {
		ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
		if err := store.Add(ing); err != nil { // Add replaces
			t.Fatal(err)
		}
	}
	for i := range 50 {
		put(fmt.Sprintf("i%d", i))
	}
	var l stableList[*networkingv1.Ingress]
	prev := l.update(store, nil)
	var handed [][]*networkingv1.Ingress
	var copies [][]*networkingv1.Ingress
	for step := range 300 {
		touched := map[types.NamespacedName]struct{}{}
		for range 1 + rng.IntN(4) {
			name := fmt.Sprintf("i%d", rng.IntN(70))
			touched[types.NamespacedName{Namespace: "ns", Name: name}] = struct{}{}
			if rng.IntN(3) == 0 {
				if obj, ok, _ := store.GetByKey("ns/" + name); ok {
					if err := store.Delete(obj); err != nil {
						t.Fatal(err)
					}
				}
				continue
			}
			put(name)
		}
		next := l.update(store, touched)

		// The store's objects, each once.
		want := map[*networkingv1.Ingress]bool{}
		for _, o := range store.List() {
			want[o.(*networkingv1.Ingress)] = true
		}
		got := map[*networkingv1.Ingress]bool{}
		for _, o := range next {
			got[o] = true
		}
		if len(next) != len(want) || len(got) != len(want) {
			t.Fatalf("step %d: %d listed (%d distinct), the store holds %d", step, len(next), len(got), len(want))
		}
		for o := range want {
			if !got[o] {
				t.Fatalf("step %d: %s/%s not listed", step, o.Namespace, o.Name)
			}
		}
		// In place: an object that was listed before and is untouched is
		// at its old position, unless it was the last one of a list
		// that lost an object (it then fills a hole).
		lastMoves := len(touched)
		for i, o := range prev {
			if _, ok := touched[nameOf(o)]; ok || !want[o] {
				continue
			}
			if i < len(next) && next[i] == o {
				continue
			}
			if i >= len(prev)-lastMoves {
				continue // among the last objects, moved into a removed one's place
			}
			t.Fatalf("step %d: untouched %s moved from %d", step, o.Name, i)
		}
		handed, copies = append(handed, next), append(copies, slices.Clone(next))
		prev = next
	}
	for i := range handed {
		if !slices.Equal(handed[i], copies[i]) {
			t.Fatalf("the list handed out at step %d was modified afterwards", i)
		}
	}
}

// Through the data client: Ingresses changed, added and removed and
// EndpointSlices changed in the cluster take the translator's incremental
// path, and the tables are those a full translation gives.
func TestIngressChangesTakeTheIncrementalPath(t *testing.T) {
	const n = 40
	objs := []any{ingressClass()}
	for i := range n {
		name := fmt.Sprintf("app%02d", i)
		objs = append(objs, service(name), slice(name, fmt.Sprintf("10.0.%d.1", i)), ingress(name, name+".example", name))
	}
	type applied struct {
		table       routing.Table
		incremental int
	}
	tables := make(chan applied, 64)
	var started atomic.Pointer[Client] // set once startedWith returns; the first tables may come before
	c, cs := startedWith(t, objs, func(o *Options) {
		o.OnTable = func(table routing.Table, _ bool) {
			// On the rebuild goroutine, the translator's only user.
			calls := 0
			if c := started.Load(); c != nil && c.translator != nil {
				calls = c.translator.IncrementalCalls()
			}
			tables <- applied{table, calls}
		}
	})
	started.Store(c)
	await := func(what string, ok func(routing.Table) bool) applied {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case a := <-tables:
				if ok(a.table) {
					return a
				}
			case <-timeout:
				t.Fatalf("no table with %s", what)
			}
		}
	}
	hasHost := func(host string) func(routing.Table) bool {
		return func(tab routing.Table) bool {
			return slices.ContainsFunc(tab.Routes, func(r *routing.Route) bool { return r.Host == host })
		}
	}
	first := await("every Ingress", func(tab routing.Table) bool { return len(tab.Routes) == n })
	ctx := context.Background()
	ingresses := cs.NetworkingV1().Ingresses("ns")
	checkIncremental := func(a applied, before int, what string) int {
		t.Helper()
		if a.incremental <= before {
			t.Errorf("%s: translated in full (incremental calls %d, before %d)", what, a.incremental, before)
		}
		live := c.currentWatcher().snapshot()
		if got, want := renderRoutes(a.table), renderRoutes(routing.Translate(live, c.translateOptions())); got != want {
			t.Errorf("%s: the table differs from a full translation:\n%s\nwant\n%s", what, got, want)
		}
		return a.incremental
	}

	// Changed: the host of app07.
	ing, err := ingresses.Get(ctx, "app07", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ing.Spec.Rules[0].Host = "renamed.example"
	ing.Generation++
	if _, err := ingresses.Update(ctx, ing, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	calls := checkIncremental(await("the changed host", hasHost("renamed.example")), first.incremental, "an Ingress changed")

	// Added.
	if _, err := ingresses.Create(ctx, ingress("added", "added.example", "app01"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	calls = checkIncremental(await("the added Ingress", hasHost("added.example")), calls, "an Ingress added")

	// Removed (one Ingress: the deletion guard lets it go).
	if err := ingresses.Delete(ctx, "app03", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	gone := hasHost("app03.example")
	calls = checkIncremental(await("app03 gone", func(tab routing.Table) bool { return !gone(tab) }), calls, "an Ingress removed")

	// An EndpointSlice changed (applied without translating), then an
	// Ingress: the translation finds both changed since its last call.
	es := slice("app05", "10.0.5.1", "10.0.5.2")
	if _, err := cs.DiscoveryV1().EndpointSlices("ns").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// An endpoint-only change calls no OnTable: wait for it in the
	// published table, so the Ingress change below is translated after
	// it (the informers may deliver the two events in either order).
	app05 := routing.BackendKey{Namespace: "ns", Service: "app05", Port: 80}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c.mu.Lock()
		cur := c.current
		c.mu.Unlock()
		if cur != nil {
			if be, ok := cur.fullTable().Backend(app05); ok && len(be.Endpoints) == 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("app05's second endpoint never published")
		}
		<-time.After(time.Millisecond) // polling the client's state: no event to wait on
	}
	ing, err = ingresses.Get(ctx, "app09", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ing.Spec.Rules[0].Host = "nine.example"
	ing.Generation++
	if _, err := ingresses.Update(ctx, ing, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	a := await("app09's new host and app05's two endpoints", func(tab routing.Table) bool {
		be, ok := tab.Backend(app05)
		return hasHost("nine.example")(tab) && ok && len(be.Endpoints) == 2
	})
	checkIncremental(a, calls, "an Ingress and an EndpointSlice changed")
}

// renderRoutes is a table's routes and backends as text, for comparison.
func renderRoutes(tab routing.Table) string {
	var b []byte
	for _, r := range tab.Routes {
		b = fmt.Appendf(b, "%s %s %s %s\n", r.Eskip.Id, r.Host, r.Path, r.Backend)
	}
	for _, be := range tab.Backends {
		b = fmt.Appendf(b, "%s %v\n", be.Key, be.Endpoints)
	}
	for _, name := range tab.Served {
		b = fmt.Appendf(b, "served %s\n", name)
	}
	for _, p := range tab.Problems {
		b = fmt.Appendf(b, "problem %+v\n", p)
	}
	return string(b)
}

// startedWith is startedWithSink with options of the test's own.
func startedWith(t *testing.T, objs []any, set func(*Options)) (*Client, *fake.Clientset) {
	t.Helper()
	cs := fake.NewClientset()
	ctx := context.Background()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *networkingv1.IngressClass:
			_, err = cs.NetworkingV1().IngressClasses().Create(ctx, o, metav1.CreateOptions{})
		case *networkingv1.Ingress:
			_, err = cs.NetworkingV1().Ingresses(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.Service:
			_, err = cs.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *discoveryv1.EndpointSlice:
			_, err = cs.DiscoveryV1().EndpointSlices(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	o := Options{Client: cs, Registerer: prometheus.NewRegistry(), HoldOff: time.Millisecond, MaxDelay: 5 * time.Millisecond, Endpoints: &sink{}}
	set(&o)
	c := New(o)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { c.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); c.Close(); <-done })
	return c, cs
}
