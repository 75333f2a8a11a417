package dataclient

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/bulkhead-router/bulkhead/routing"
)

// cluster is a mutable set of objects, the API server's state in these
// tests; world.build runs one rebuild against it the way Client.rebuild
// does (translate, plan, overlay, keep routes).
type cluster struct {
	classes   map[string]*networkingv1.IngressClass
	ingresses map[string]*networkingv1.Ingress
	services  map[string]*corev1.Service
	slices    map[string]*discoveryv1.EndpointSlice
	created   int
}

func newCluster() *cluster {
	c := &cluster{
		classes:   map[string]*networkingv1.IngressClass{"bulkhead": ingressClass()},
		ingresses: map[string]*networkingv1.Ingress{},
		services:  map[string]*corev1.Service{},
		slices:    map[string]*discoveryv1.EndpointSlice{},
	}
	return c
}

// app adds a Service with n endpoints (10.<i>.0.x).
func (c *cluster) app(name string, n int) {
	c.services[name] = service(name)
	c.setEndpoints(name, n)
}

func (c *cluster) setEndpoints(name string, n int) {
	var ips []string
	for i := range n {
		ips = append(ips, fmt.Sprintf("10.%d.0.%d", len(name), i+1))
	}
	s := slice(name, ips...)
	c.slices[name] = s
}

// ing adds an Ingress for host with one path per Service.
func (c *cluster) ing(name, host string, services ...string) {
	ing := ingress(name, host, services[0])
	paths := ing.Spec.Rules[0].HTTP.Paths
	for i, svc := range services[1:] {
		p := paths[0]
		p.Path = fmt.Sprintf("/%d", i+1)
		p.Backend.Service = &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}}
		paths = append(paths, p)
	}
	ing.Spec.Rules[0].HTTP.Paths = paths
	c.created++
	ing.CreationTimestamp = metav1.NewTime(time.Unix(int64(c.created), 0))
	c.ingresses[name] = ing
}

func (c *cluster) snapshot() *routing.Snapshot {
	s := &routing.Snapshot{}
	for _, o := range c.classes {
		s.IngressClasses = append(s.IngressClasses, o)
	}
	for _, o := range c.ingresses {
		s.Ingresses = append(s.Ingresses, o)
	}
	for _, o := range c.services {
		s.Services = append(s.Services, o)
	}
	for _, o := range c.slices {
		s.EndpointSlices = append(s.EndpointSlices, o)
	}
	return s
}

type world struct {
	t       *testing.T
	c       *cluster
	g       *guard
	now     time.Time
	served  routing.Table
	snap    *routing.Snapshot
	stored  bool // the served table came from disk
	gone    goneSet
	last    guardDecision
	started bool
}

func newWorld(t *testing.T, o GuardOptions) *world {
	return &world{t: t, c: newCluster(), g: newGuard(o), now: time.Unix(1000, 0), gone: goneSet{}}
}

// deleteIngress deletes Ingresses, announced by the watch or not.
func (w *world) deleteIngress(announced bool, names ...string) {
	for _, n := range names {
		delete(w.c.ingresses, n)
		w.gone.add(objectRef{Kind: kindIngress, Namespace: "ns", Name: n}, announced)
	}
}

// deleteSlices deletes Services' EndpointSlices.
func (w *world) deleteSlices(announced bool, names ...string) {
	for _, n := range names {
		delete(w.c.slices, n)
		w.gone.add(serviceRef("ns", n), announced)
	}
}

func (w *world) build() {
	w.t.Helper()
	live := w.c.snapshot()
	table := routing.Translate(live, routing.Options{})
	snap := live
	if w.started {
		w.last = w.g.plan(guardInput{now: w.now, served: w.served, servedSnap: w.snap, live: live, candidate: table,
			gone: w.gone, unannounced: w.stored})
		if w.g.holding() {
			snap = w.g.overlay(live)
			table = w.g.keepRoutes(routing.Translate(snap, routing.Options{}))
		}
	}
	w.served, w.snap, w.gone, w.started, w.stored = table, snap, goneSet{}, true, false
}

func (w *world) after(d time.Duration) *world { w.now = w.now.Add(d); return w }

// endpoints is how many endpoints the served route of host has; -1 when
// no route serves host.
func (w *world) endpoints(host string) int {
	for _, rt := range w.served.Routes {
		if rt.Host == host && rt.Path == "/" {
			b, _ := w.served.Backend(rt.Backend)
			return len(b.Endpoints)
		}
	}
	return -1
}

func (w *world) expect(host string, endpoints int) {
	w.t.Helper()
	if got := w.endpoints(host); got != endpoints {
		w.t.Errorf("%s: %d endpoints served, want %d (-1: no route); held: %s", host, got, endpoints, describe(w.g.heldList()))
	}
}

func (w *world) expectHeld(refs ...string) {
	w.t.Helper()
	var got []string
	for _, h := range w.g.heldList() {
		got = append(got, h.ref.String())
	}
	slices.Sort(refs)
	if strings.Join(got, ",") != strings.Join(refs, ",") {
		w.t.Errorf("held %v, want %v", got, refs)
	}
}

// threeApps: a.example, b.example, c.example, each with its own Service of
// two endpoints.
func threeApps(t *testing.T, o GuardOptions) *world {
	w := newWorld(t, o)
	for _, n := range []string{"a", "b", "c"} {
		w.c.app(n, 2)
		w.c.ing(n, n+".example", n)
	}
	w.build()
	return w
}

func TestGuardDeletingOneIngressWithManyServicesIsApplied(t *testing.T) {
	// The reported case: the only Ingress, six Services; deleted, then
	// another app's Ingress created a moment later.
	w := newWorld(t, GuardOptions{})
	var svcs []string
	for i := range 6 {
		name := fmt.Sprintf("s%d", i)
		w.c.app(name, 1)
		svcs = append(svcs, name)
	}
	w.c.ing("shop", "shop.example", svcs...)
	w.build()
	w.expect("shop.example", 1)
	w.deleteIngress(true, "shop")
	w.after(time.Second).build()
	w.expect("shop.example", -1)
	w.expectHeld()
	w.c.app("blog", 2)
	w.c.ing("blog", "blog.example", "blog")
	w.after(time.Second).build()
	w.expect("blog.example", 2)
	w.expectHeld()
}

func TestGuardSingleActsAreApplied(t *testing.T) {
	t.Run("one of three Ingresses deleted", func(t *testing.T) {
		w := threeApps(t, GuardOptions{})
		w.deleteIngress(true, "a")
		w.after(time.Second).build()
		w.expect("a.example", -1)
		w.expectHeld()
	})
	t.Run("one Service deleted", func(t *testing.T) {
		w := threeApps(t, GuardOptions{})
		delete(w.c.services, "b")
		w.gone.add(serviceRef("ns", "b"), true)
		w.deleteSlices(true, "b")
		w.after(time.Second).build()
		w.expect("b.example", 0) // the route stays and answers 503
		w.expectHeld()
	})
	t.Run("one Service scaled to zero", func(t *testing.T) {
		w := threeApps(t, GuardOptions{})
		w.c.setEndpoints("c", 0)
		w.after(time.Second).build()
		w.expect("c.example", 0)
		w.expectHeld()
	})
	t.Run("the only Ingress deleted", func(t *testing.T) {
		w := newWorld(t, GuardOptions{})
		w.c.app("a", 1)
		w.c.ing("a", "a.example", "a")
		w.build()
		w.deleteIngress(true, "a")
		w.after(time.Second).build()
		w.expect("a.example", -1)
		w.expectHeld()
	})
	t.Run("two of three Ingresses deleted by the watch (under the floor)", func(t *testing.T) {
		w := threeApps(t, GuardOptions{})
		w.deleteIngress(true, "a", "b")
		w.after(time.Second).build()
		w.expect("a.example", -1)
		w.expect("b.example", -1)
		w.expectHeld()
	})
	t.Run("an app removed whole: Ingress, Services, endpoints", func(t *testing.T) {
		w := newWorld(t, GuardOptions{})
		var svcs []string
		for i := range 4 {
			name := fmt.Sprintf("s%d", i)
			w.c.app(name, 1)
			svcs = append(svcs, name)
		}
		w.c.ing("shop", "shop.example", svcs...)
		w.build()
		w.deleteIngress(true, "shop")
		for _, s := range svcs {
			delete(w.c.services, s)
			w.gone.add(serviceRef("ns", s), true)
		}
		w.deleteSlices(true, svcs...)
		w.after(time.Second).build()
		w.expect("shop.example", -1)
		w.expectHeld()
	})
}

func TestGuardLifecycleWalkNeverHolds(t *testing.T) {
	// Create, use, delete, create the next: many deletions within one
	// window, but never of what was there when the window opened beyond
	// the first, so they never add up.
	w := newWorld(t, GuardOptions{})
	w.c.app("keep", 1)
	w.c.ing("keep", "keep.example", "keep")
	w.build()
	for i := range 12 {
		name := fmt.Sprintf("app%d", i)
		w.c.app(name, 2)
		w.c.ing(name, name+".example", name, "keep")
		w.after(50 * time.Millisecond).build()
		w.expect(name+".example", 2)
		w.deleteIngress(true, name)
		delete(w.c.services, name)
		w.deleteSlices(true, name)
		w.after(50 * time.Millisecond).build()
		w.expect(name+".example", -1)
		w.expectHeld()
	}
	w.expect("keep.example", 1)
}

func TestGuardBurstOfAnnouncedDeletionsIsHeld(t *testing.T) {
	w := threeApps(t, GuardOptions{})
	w.deleteIngress(true, "a", "b", "c")
	w.after(time.Second).build()
	w.expectHeld("Ingress ns/a", "Ingress ns/b", "Ingress ns/c")
	for _, h := range []string{"a.example", "b.example", "c.example"} {
		w.expect(h, 2)
	}
	// Held Ingresses follow their Services' live endpoints.
	w.c.setEndpoints("a", 3)
	w.after(time.Second).build()
	w.expect("a.example", 3)
}

func TestGuardBurstSplitAcrossBuildsBringsTheFirstBack(t *testing.T) {
	w := threeApps(t, GuardOptions{})
	w.deleteIngress(true, "a")
	w.after(time.Second).build()
	w.expect("a.example", -1) // alone, it is one user's act
	w.deleteIngress(true, "b")
	w.after(time.Second).build()
	w.expect("b.example", -1) // two: under the floor of three
	w.deleteIngress(true, "c")
	w.after(time.Second).build()
	// The third within the window makes it a burst of all three.
	w.expectHeld("Ingress ns/a", "Ingress ns/b", "Ingress ns/c")
	for _, h := range []string{"a.example", "b.example", "c.example"} {
		w.expect(h, 2)
	}
}

func TestGuardAnnouncedDeletionsOutsideTheWindowDoNotAddUp(t *testing.T) {
	w := threeApps(t, GuardOptions{Window: 5 * time.Second})
	for _, n := range []string{"a", "b", "c"} {
		w.deleteIngress(true, n)
		w.after(6 * time.Second).build()
		w.expect(n+".example", -1)
	}
	w.expectHeld()
}

func TestGuardAdditionsAndChangesFlowWhileHolding(t *testing.T) {
	w := threeApps(t, GuardOptions{})
	w.deleteIngress(true, "a", "b", "c")
	w.after(time.Second).build()
	w.expectHeld("Ingress ns/a", "Ingress ns/b", "Ingress ns/c")
	// A new app, and a new Ingress taking over a held one's host and path.
	w.c.app("d", 4)
	w.c.ing("d", "d.example", "d")
	w.c.ing("a2", "a.example", "d")
	w.after(100 * time.Millisecond).build()
	w.expect("d.example", 4)
	w.expect("a.example", 4) // the live Ingress wins over the held one
	// A changed backend of a live Ingress.
	w.c.app("e", 5)
	w.c.ing("d", "d.example", "e")
	w.after(100 * time.Millisecond).build()
	w.expect("d.example", 5)
	w.expectHeld("Ingress ns/a", "Ingress ns/b", "Ingress ns/c")
}

func TestGuardEmptyListsHoldEndpointsAndIngressesWhicheverComesFirst(t *testing.T) {
	// An API server answering empty lists: the EndpointSlice relist lands
	// first (each Service "scales to zero"), the Ingresses after.
	w := threeApps(t, GuardOptions{})
	w.deleteSlices(false, "a", "b", "c")
	w.after(time.Second).build()
	w.expectHeld("Service ns/a", "Service ns/b", "Service ns/c")
	for _, h := range []string{"a.example", "b.example", "c.example"} {
		w.expect(h, 2) // the old pods keep serving
	}
	w.deleteIngress(false, "a", "b", "c")
	for _, n := range []string{"a", "b", "c"} {
		delete(w.c.services, n)
		w.gone.add(serviceRef("ns", n), false)
	}
	w.after(3 * time.Second).build()
	w.expectHeld("Ingress ns/a", "Ingress ns/b", "Ingress ns/c", "Service ns/a", "Service ns/b", "Service ns/c")
	for _, h := range []string{"a.example", "b.example", "c.example"} {
		w.expect(h, 2)
	}
}

func TestGuardUnannouncedRemovals(t *testing.T) {
	t.Run("one of three missing after a relist is applied", func(t *testing.T) {
		w := threeApps(t, GuardOptions{})
		w.deleteIngress(false, "a")
		w.after(time.Second).build()
		w.expect("a.example", -1)
		w.expectHeld()
	})
	t.Run("two of three missing after a relist are held", func(t *testing.T) {
		w := threeApps(t, GuardOptions{})
		w.deleteIngress(false, "a", "b")
		w.after(time.Second).build()
		w.expectHeld("Ingress ns/a", "Ingress ns/b")
		w.expect("a.example", 2)
	})
	t.Run("the only Ingress missing after a relist is held", func(t *testing.T) {
		w := newWorld(t, GuardOptions{})
		w.c.app("a", 1)
		w.c.ing("a", "a.example", "a")
		w.build()
		w.deleteIngress(false, "a")
		w.after(time.Second).build()
		w.expectHeld("Ingress ns/a")
		w.expect("a.example", 1)
	})
	t.Run("the IngressClass missing after a relist holds its Ingresses", func(t *testing.T) {
		w := threeApps(t, GuardOptions{})
		delete(w.c.classes, "bulkhead")
		w.gone.add(objectRef{Kind: kindIngressClass, Name: "bulkhead"}, false)
		w.after(time.Second).build()
		w.expectHeld("Ingress ns/a", "Ingress ns/b", "Ingress ns/c")
		w.expect("b.example", 2)
	})
}

func TestGuardRestartFromStoredTableKeepsRoutesVerbatim(t *testing.T) {
	w := threeApps(t, GuardOptions{})
	stored := w.served
	// A restart: the stored table is served (no objects), then the first
	// sync finds an empty cluster.
	w.snap, w.stored = nil, true
	w.served = stored
	w.c = newCluster()
	w.c.app("new", 1)
	w.c.ing("new", "new.example", "new")
	w.after(time.Second).build()
	w.expectHeld("Ingress ns/a", "Ingress ns/b", "Ingress ns/c", "Service ns/a", "Service ns/b", "Service ns/c")
	for _, h := range []string{"a.example", "b.example", "c.example"} {
		w.expect(h, 2)
	}
	w.expect("new.example", 1)
	// Still held at the next build, from the kept routes.
	w.after(time.Second).build()
	w.expect("a.example", 2)
}

func TestGuardHoldIsBoundedAndNotRestartedByChanges(t *testing.T) {
	w := threeApps(t, GuardOptions{HoldPeriod: time.Minute})
	w.c.app("x", 1)
	w.c.ing("x", "x.example", "x")
	w.build()
	w.deleteIngress(true, "a", "b", "c")
	w.after(time.Second).build()
	heldAt := w.now
	for range 11 { // changes every 5 s: each would restart a hold that waits for a stable state
		w.c.setEndpoints("x", 1+int(w.now.Unix()%3))
		w.after(5 * time.Second).build()
		if !w.now.Before(heldAt.Add(time.Minute)) {
			break
		}
		w.expect("a.example", 2)
	}
	if next := w.g.nextRelease(); !next.Equal(heldAt.Add(time.Minute)) {
		t.Errorf("release at %s, want %s", next, heldAt.Add(time.Minute))
	}
	w.now = heldAt.Add(time.Minute)
	w.build()
	w.expectHeld()
	w.expect("a.example", -1)
	if len(w.last.released) != 3 {
		t.Errorf("released %d, want 3", len(w.last.released))
	}
	// Applied for good: the next builds do not hold them again.
	w.after(time.Second).build()
	w.expectHeld()
}

func TestGuardConfirmAppliesEverything(t *testing.T) {
	w := threeApps(t, GuardOptions{})
	w.deleteIngress(false, "a", "b")
	w.after(time.Second).build()
	w.expectHeld("Ingress ns/a", "Ingress ns/b")
	w.g.confirm = true
	w.after(time.Second).build()
	w.expectHeld()
	w.expect("a.example", -1)
	if !w.last.confirmed {
		t.Error("the decision does not say confirmed")
	}
	// A later removal in the same window does not bring them back.
	w.deleteIngress(false, "c")
	w.after(time.Second).build()
	w.expectHeld("Ingress ns/c")
	w.expect("a.example", -1)
}

func TestGuardHeldObjectThatComesBackIsNoLongerHeld(t *testing.T) {
	w := threeApps(t, GuardOptions{})
	saved := w.c.ingresses["a"]
	w.deleteIngress(false, "a", "b")
	w.after(time.Second).build()
	w.expectHeld("Ingress ns/a", "Ingress ns/b")
	w.c.ingresses["a"] = saved
	w.after(time.Second).build()
	w.expectHeld("Ingress ns/b")
	if len(w.last.back) != 1 {
		t.Errorf("back: %d, want 1", len(w.last.back))
	}
}

func TestGuardDisabledAtShareOne(t *testing.T) {
	w := threeApps(t, GuardOptions{MaxRemovalShare: 1})
	w.deleteIngress(false, "a", "b", "c")
	w.after(time.Second).build()
	w.expectHeld()
	w.expect("a.example", -1)
}

func TestGuardManyServicesScaledToZeroAtOnceAreHeld(t *testing.T) {
	w := threeApps(t, GuardOptions{})
	for _, n := range []string{"a", "b", "c"} {
		w.c.setEndpoints(n, 0)
	}
	w.after(time.Second).build()
	w.expectHeld("Service ns/a", "Service ns/b", "Service ns/c")
	w.expect("a.example", 2)
	// One of them scales back up: no longer held, live endpoints.
	w.c.setEndpoints("a", 1)
	w.after(time.Second).build()
	w.expectHeld("Service ns/b", "Service ns/c")
	w.expect("a.example", 1)
}

// nothingRemoved is the guard's shortcut for the ordinary rebuild; it must
// see every removal plan would judge.
func TestNothingRemoved(t *testing.T) {
	key := func(svc string, port int32) routing.BackendKey {
		return routing.BackendKey{Namespace: "ns", Service: svc, Port: port}
	}
	ep := []routing.Endpoint{{Address: "10.0.0.1:80", Ready: true, Serving: true}}
	served := routing.Table{
		Served: []types.NamespacedName{{Namespace: "ns", Name: "a"}, {Namespace: "ns", Name: "b"}},
		Backends: []routing.Backend{{Key: key("x", 80), Endpoints: ep}, {Key: key("y", 80), Endpoints: ep},
			{Key: key("z", 80), Endpoints: []routing.Endpoint{}}},
	}
	for _, c := range []struct {
		what      string
		candidate routing.Table
		want      bool
	}{
		{"the same", served, true},
		{"an Ingress added, a backend added", routing.Table{
			Served:   append(slices.Clone(served.Served), types.NamespacedName{Namespace: "ns", Name: "c"}),
			Backends: append(slices.Clone(served.Backends), routing.Backend{Key: key("zz", 80)})}, true},
		{"an Ingress gone", routing.Table{Served: served.Served[:1], Backends: served.Backends}, false},
		{"a Service without endpoints now", routing.Table{Served: served.Served,
			Backends: []routing.Backend{{Key: key("x", 80), Endpoints: ep}, {Key: key("y", 80)}}}, false},
		{"a Service no route names now", routing.Table{Served: served.Served,
			Backends: []routing.Backend{{Key: key("x", 80), Endpoints: ep}}}, false},
		{"a Service on another port now", routing.Table{Served: served.Served,
			Backends: []routing.Backend{{Key: key("x", 80), Endpoints: ep}, {Key: key("y", 8080), Endpoints: ep}}}, true},
		{"a Service that had none still has none", routing.Table{Served: served.Served, Backends: served.Backends[:2]}, true},
	} {
		if got := nothingRemoved(served, c.candidate); got != c.want {
			t.Errorf("%s: nothingRemoved = %v, want %v", c.what, got, c.want)
		}
	}
}
