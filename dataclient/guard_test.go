package dataclient

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/bulkhead-router/bulkhead/routing"
)

// cluster is a mutable set of objects, the API server's state in these
// tests; world.build runs one rebuild against it the way Client.rebuild
// does (translate, plan, overlay, keep routes).
type cluster struct {
	classes   map[string]*networkingv1.IngressClass
	ingresses map[string]*networkingv1.Ingress
	services  map[string]*routing.Service
	slices    map[string]*routing.EndpointSlice
	created   int
	// Gateway API objects, HTTPRoutes by "namespace/name".
	gwClasses  map[string]*gatewayv1.GatewayClass
	gateways   map[string]*gatewayv1.Gateway
	httpRoutes map[string]*gatewayv1.HTTPRoute
	grpcRoutes map[string]*gatewayv1.GRPCRoute
	grants     map[string]*gatewayv1.ReferenceGrant
}

func newCluster() *cluster {
	c := &cluster{
		classes:   map[string]*networkingv1.IngressClass{"bulkhead": ingressClass()},
		ingresses: map[string]*networkingv1.Ingress{},
		services:  map[string]*routing.Service{},
		slices:    map[string]*routing.EndpointSlice{},
		gwClasses: map[string]*gatewayv1.GatewayClass{"bulkhead": {
			ObjectMeta: metav1.ObjectMeta{Name: "bulkhead"},
			Spec:       gatewayv1.GatewayClassSpec{ControllerName: routing.DefaultGatewayControllerName}}},
		gateways:   map[string]*gatewayv1.Gateway{},
		httpRoutes: map[string]*gatewayv1.HTTPRoute{},
		grpcRoutes: map[string]*gatewayv1.GRPCRoute{},
		grants:     map[string]*gatewayv1.ReferenceGrant{},
	}
	return c
}

// app adds a Service with n endpoints (10.<i>.0.x).
func (c *cluster) app(name string, n int) {
	c.services[name] = routing.NewService(service(name))
	c.setEndpoints(name, n)
}

func (c *cluster) setEndpoints(name string, n int) {
	var ips []string
	for i := range n {
		ips = append(ips, fmt.Sprintf("10.%d.0.%d", len(name), i+1))
	}
	s := slice(name, ips...)
	c.slices[name] = routing.NewEndpointSlice(s)
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
	for _, o := range c.gwClasses {
		s.GatewayClasses = append(s.GatewayClasses, o)
	}
	for _, o := range c.gateways {
		s.Gateways = append(s.Gateways, o)
	}
	for _, o := range c.httpRoutes {
		s.HTTPRoutes = append(s.HTTPRoutes, o)
	}
	for _, o := range c.grpcRoutes {
		s.GRPCRoutes = append(s.GRPCRoutes, o)
	}
	for _, o := range c.grants {
		s.ReferenceGrants = append(s.ReferenceGrants, o)
	}
	return s
}

// gateway adds a Gateway in ns of the class bulkhead with one HTTP
// listener on port 80 that takes routes from every namespace.
func (c *cluster) gateway(name string) {
	all := gatewayv1.NamespacesFromAll
	c.gateways[name] = &gatewayv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Generation: 1},
		Spec: gatewayv1.GatewaySpec{GatewayClassName: "bulkhead", Listeners: []gatewayv1.Listener{{
			Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType,
			AllowedRoutes: &gatewayv1.AllowedRoutes{Namespaces: &gatewayv1.RouteNamespaces{From: &all}},
		}}},
	}
}

// route adds an HTTPRoute namespace/name for host attached to the Gateway
// ns/gw, with one rule sending to each Service of ns on port 80 (weights
// 1); a route outside ns gets a ReferenceGrant to reach them.
func (c *cluster) route(namespace, name, host, gw string, services ...string) {
	gwNS, svcNS, port := gatewayv1.Namespace("ns"), gatewayv1.Namespace("ns"), gatewayv1.PortNumber(80)
	var refs []gatewayv1.HTTPBackendRef
	for _, svc := range services {
		ref := gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
			Name: gatewayv1.ObjectName(svc), Port: &port}}}
		if namespace != "ns" {
			ref.Namespace = &svcNS
		}
		refs = append(refs, ref)
	}
	c.created++
	c.httpRoutes[namespace+"/"+name] = &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Generation: 1,
			CreationTimestamp: metav1.NewTime(time.Unix(int64(c.created), 0))},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: gatewayv1.ObjectName(gw), Namespace: &gwNS}}},
			Hostnames:       []gatewayv1.Hostname{gatewayv1.Hostname(host)},
			Rules:           []gatewayv1.HTTPRouteRule{{BackendRefs: refs}},
		},
	}
	if namespace != "ns" {
		c.grants[namespace] = &gatewayv1.ReferenceGrant{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "from-" + namespace},
			Spec: gatewayv1.ReferenceGrantSpec{
				From: []gatewayv1.ReferenceGrantFrom{{Group: gatewayv1.GroupName, Kind: "HTTPRoute", Namespace: gatewayv1.Namespace(namespace)}},
				To:   []gatewayv1.ReferenceGrantTo{{Group: "", Kind: "Service"}},
			},
		}
	}
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

// guardTranslate are the options the world translates with: Gateway
// listeners on port 80 are served.
var guardTranslate = routing.Options{GatewayPorts: []int32{80}}

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
	table := routing.Translate(live, guardTranslate)
	snap := live
	if w.started {
		w.last = w.g.plan(guardInput{now: w.now, served: w.served, servedSnap: w.snap, live: live, candidate: table,
			gone: w.gone, unannounced: w.stored})
		if w.g.holding() {
			snap = w.g.overlay(live)
			table = w.g.keepRoutes(routing.Translate(snap, guardTranslate), snap, guardTranslate)
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

// deleteRoute deletes HTTPRoutes of ns, announced by the watch or not.
func (w *world) deleteRoute(announced bool, names ...string) {
	for _, n := range names {
		delete(w.c.httpRoutes, "ns/"+n)
		w.gone.add(objectRef{Kind: kindHTTPRoute, Namespace: "ns", Name: n}, announced)
	}
}

// gatewayApps: n HTTPRoutes r0..r<n-1> of ns on the Gateway ns/web, each
// for host r<i>.example with its own Service of two endpoints.
func gatewayApps(t *testing.T, o GuardOptions, n int) *world {
	w := newWorld(t, o)
	w.c.gateway("web")
	for i := range n {
		name := fmt.Sprintf("r%d", i)
		w.c.app(name, 2)
		w.c.route("ns", name, name+".example", "web", name)
	}
	w.build()
	for i := range n {
		w.expect(fmt.Sprintf("r%d.example", i), 2)
	}
	return w
}

func TestGuardHTTPRouteMassDeletionIsHeld(t *testing.T) {
	w := gatewayApps(t, GuardOptions{}, 3)
	w.deleteRoute(true, "r0", "r1", "r2")
	w.after(time.Second).build()
	w.expectHeld("HTTPRoute ns/r0", "HTTPRoute ns/r1", "HTTPRoute ns/r2")
	for _, h := range []string{"r0.example", "r1.example", "r2.example"} {
		w.expect(h, 2)
	}
	if got := w.last.window[kindHTTPRoute]; got != "3 of 3" {
		t.Errorf("window HTTPRoutes %q, want 3 of 3", got)
	}
	if got := describe(w.last.held); !strings.HasPrefix(got, "0 Ingresses, 3 HTTPRoutes, 0 Services") {
		t.Errorf("describe: %q", got)
	}
	// A held HTTPRoute's routes follow their Service's live endpoints.
	w.c.setEndpoints("r0", 3)
	w.after(time.Second).build()
	w.expect("r0.example", 3)
	w.expectHeld("HTTPRoute ns/r0", "HTTPRoute ns/r1", "HTTPRoute ns/r2")
	// Applied HoldPeriod after they were held.
	w.after(2 * time.Minute).build()
	w.expectHeld()
	w.expect("r0.example", -1)
	if len(w.last.released) != 3 {
		t.Errorf("released %d, want 3", len(w.last.released))
	}
}

func TestGuardGatewayGoneDetachesAllItsRoutesAsABurst(t *testing.T) {
	for _, c := range []struct {
		what   string
		remove func(w *world)
	}{
		{"Gateway deleted", func(w *world) {
			delete(w.c.gateways, "web")
			w.gone.add(objectRef{Kind: kindGateway, Namespace: "ns", Name: "web"}, true)
		}},
		{"GatewayClass deleted", func(w *world) {
			delete(w.c.gwClasses, "bulkhead")
			w.gone.add(objectRef{Kind: kindGatewayClass, Name: "bulkhead"}, true)
		}},
		{"Gateway's class changed", func(w *world) {
			gw := *w.c.gateways["web"]
			gw.Spec.GatewayClassName = "other"
			w.c.gateways["web"] = &gw
		}},
	} {
		t.Run(c.what, func(t *testing.T) {
			w := gatewayApps(t, GuardOptions{}, 5)
			c.remove(w)
			w.after(time.Second).build()
			w.expectHeld("HTTPRoute ns/r0", "HTTPRoute ns/r1", "HTTPRoute ns/r2", "HTTPRoute ns/r3", "HTTPRoute ns/r4")
			for i := range 5 {
				w.expect(fmt.Sprintf("r%d.example", i), 2)
			}
			for _, h := range w.g.heldList() {
				if !h.announced {
					t.Errorf("%s held as unannounced", h.ref)
				}
			}
		})
	}
	t.Run("the only Gateway missing after a relist holds its only route", func(t *testing.T) {
		w := gatewayApps(t, GuardOptions{}, 1)
		delete(w.c.gateways, "web")
		w.gone.add(objectRef{Kind: kindGateway, Namespace: "ns", Name: "web"}, false)
		w.after(time.Second).build()
		w.expectHeld("HTTPRoute ns/r0")
		w.expect("r0.example", 2)
	})
	t.Run("the only Gateway deleted by the watch is applied", func(t *testing.T) {
		w := gatewayApps(t, GuardOptions{}, 1)
		delete(w.c.gateways, "web")
		w.gone.add(objectRef{Kind: kindGateway, Namespace: "ns", Name: "web"}, true)
		w.after(time.Second).build()
		w.expectHeld()
		w.expect("r0.example", -1)
	})
}

func TestGuardSingleHTTPRouteActsAreApplied(t *testing.T) {
	t.Run("one of three deleted", func(t *testing.T) {
		w := gatewayApps(t, GuardOptions{}, 3)
		w.deleteRoute(true, "r1")
		w.after(time.Second).build()
		w.expect("r1.example", -1)
		w.expect("r0.example", 2)
		w.expectHeld()
	})
	t.Run("the only HTTPRoute deleted", func(t *testing.T) {
		w := gatewayApps(t, GuardOptions{}, 1)
		w.deleteRoute(true, "r0")
		w.after(time.Second).build()
		w.expect("r0.example", -1)
		w.expectHeld()
	})
	t.Run("one detached by changing its parentRefs", func(t *testing.T) {
		w := gatewayApps(t, GuardOptions{}, 3)
		hr := w.c.httpRoutes["ns/r2"].DeepCopy()
		hr.Spec.ParentRefs[0].Name = "elsewhere"
		w.c.httpRoutes["ns/r2"] = hr
		w.after(time.Second).build()
		w.expect("r2.example", -1)
		w.expectHeld()
	})
	t.Run("one missing after a relist of three", func(t *testing.T) {
		w := gatewayApps(t, GuardOptions{}, 3)
		w.deleteRoute(false, "r0")
		w.after(time.Second).build()
		w.expect("r0.example", -1)
		w.expectHeld()
	})
	t.Run("two missing after a relist of three are held", func(t *testing.T) {
		w := gatewayApps(t, GuardOptions{}, 3)
		w.deleteRoute(false, "r0", "r1")
		w.after(time.Second).build()
		w.expectHeld("HTTPRoute ns/r0", "HTTPRoute ns/r1")
		w.expect("r1.example", 2)
	})
}

func TestGuardCountsHTTPRoutesApartFromIngresses(t *testing.T) {
	// Two of three Ingresses and two of three HTTPRoutes: together four
	// of six, a burst over the share; each kind alone, under the floor.
	w := threeApps(t, GuardOptions{})
	w.c.gateway("web")
	for _, n := range []string{"r0", "r1", "r2"} {
		w.c.app(n, 2)
		w.c.route("ns", n, n+".example", "web", n)
	}
	w.after(time.Second).build()
	w.deleteIngress(true, "a", "b")
	w.deleteRoute(true, "r0", "r1")
	w.after(time.Second).build()
	w.expectHeld()
	w.expect("a.example", -1)
	w.expect("r0.example", -1)
	// The third of each within the window: both kinds are bursts now.
	w.deleteIngress(true, "c")
	w.deleteRoute(true, "r2")
	w.after(time.Second).build()
	w.expectHeld("HTTPRoute ns/r0", "HTTPRoute ns/r1", "HTTPRoute ns/r2", "Ingress ns/a", "Ingress ns/b", "Ingress ns/c")
	w.expect("a.example", 2)
	w.expect("r0.example", 2)
	if w.last.window[kindIngress] != "3 of 3" || w.last.window[kindHTTPRoute] != "3 of 3" {
		t.Errorf("window %v", w.last.window)
	}
}

func TestGuardHeldHTTPRouteComesBackAndConfirm(t *testing.T) {
	w := gatewayApps(t, GuardOptions{}, 3)
	saved := w.c.httpRoutes["ns/r0"]
	w.deleteRoute(false, "r0", "r1")
	w.after(time.Second).build()
	w.expectHeld("HTTPRoute ns/r0", "HTTPRoute ns/r1")
	w.c.httpRoutes["ns/r0"] = saved
	w.after(time.Second).build()
	w.expectHeld("HTTPRoute ns/r1")
	if len(w.last.back) != 1 || w.last.back[0].ref.String() != "HTTPRoute ns/r0" {
		t.Errorf("back: %v, want HTTPRoute ns/r0", describe(w.last.back))
	}
	w.expect("r0.example", 2)
	w.expect("r1.example", 2)
	w.g.confirm = true
	w.after(time.Second).build()
	w.expectHeld()
	if !w.last.confirmed || len(w.last.released) != 1 {
		t.Errorf("confirmed %v, released %d; want true, 1", w.last.confirmed, len(w.last.released))
	}
	w.expect("r1.example", -1)
	w.expect("r0.example", 2)
	// Not held again by the next build.
	w.after(time.Second).build()
	w.expectHeld()
	w.expect("r1.example", -1)
}

func TestGuardCountsGatewayServicesInTheirNamespace(t *testing.T) {
	// HTTPRoutes in apps send to Services in ns (a ReferenceGrant allows it).
	build := func(t *testing.T) *world {
		w := newWorld(t, GuardOptions{})
		w.c.gateway("web")
		for _, n := range []string{"a", "b", "c"} {
			w.c.app(n, 2)
			w.c.route("apps", n, n+".example", "web", n)
		}
		w.build()
		w.expect("a.example", 2)
		return w
	}
	t.Run("scaled to zero", func(t *testing.T) {
		w := build(t)
		for _, n := range []string{"a", "b", "c"} {
			w.c.setEndpoints(n, 0)
		}
		w.after(time.Second).build()
		w.expectHeld("Service ns/a", "Service ns/b", "Service ns/c")
		w.expect("a.example", 2)
	})
	t.Run("deleted", func(t *testing.T) {
		// The routes' backends cannot be used now: only the HTTPRoute
		// says which namespace their Service was in.
		w := build(t)
		for _, n := range []string{"a", "b", "c"} {
			delete(w.c.services, n)
			w.gone.add(serviceRef("ns", n), false)
		}
		w.deleteSlices(false, "a", "b", "c")
		w.after(time.Second).build()
		w.expectHeld("Service ns/a", "Service ns/b", "Service ns/c")
		w.expect("b.example", 2)
	})
	t.Run("one deleted", func(t *testing.T) {
		w := build(t)
		delete(w.c.services, "a")
		w.gone.add(serviceRef("ns", "a"), true)
		w.deleteSlices(true, "a")
		w.after(time.Second).build()
		w.expectHeld()
	})
}

func TestServiceNamer(t *testing.T) {
	ns := gatewayv1.Namespace("data")
	snap := &routing.Snapshot{HTTPRoutes: []*gatewayv1.HTTPRoute{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "shop"},
		Spec: gatewayv1.HTTPRouteSpec{Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{
			{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web"}}},
			{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "db", Namespace: &ns}}},
		}}}},
	}}}
	gw := func(backendRef int) *routing.GatewayOrigin {
		return &routing.GatewayOrigin{HTTPRoute: types.NamespacedName{Namespace: "apps", Name: "shop"}, BackendRef: backendRef}
	}
	for _, c := range []struct {
		what string
		rt   routing.Route
		want string
	}{
		{"usable Ingress backend", routing.Route{Ingress: types.NamespacedName{Namespace: "ns", Name: "i"}, Service: "s",
			Backend: routing.BackendKey{Namespace: "ns", Service: "s", Port: 80}}, "Service ns/s"},
		{"unusable Ingress backend", routing.Route{Ingress: types.NamespacedName{Namespace: "ns", Name: "i"}, Service: "s"}, "Service ns/s"},
		{"usable Gateway backend elsewhere", routing.Route{Gateway: gw(1), Service: "db",
			Backend: routing.BackendKey{Namespace: "data", Service: "db", Port: 5432}}, "Service data/db"},
		{"unusable Gateway backend elsewhere", routing.Route{Gateway: gw(1), Service: "db"}, "Service data/db"},
		{"unusable Gateway backend of its namespace", routing.Route{Gateway: gw(0), Service: "web"}, "Service apps/web"},
		{"no backend", routing.Route{Gateway: gw(-1)}, ""},
	} {
		n := &serviceNamer{snaps: []*routing.Snapshot{nil, snap}}
		got := ""
		if ref, ok := n.ref(&c.rt); ok {
			got = ref.String()
		}
		if got != c.want {
			t.Errorf("%s: %q, want %q", c.what, got, c.want)
		}
	}
}

func TestGuardRestartFromStoredTableKeepsHTTPRoutesVerbatim(t *testing.T) {
	w := gatewayApps(t, GuardOptions{}, 3)
	stored := w.served
	w.snap, w.stored = nil, true
	w.served = stored
	w.c = newCluster()
	w.c.gateway("web")
	w.c.app("new", 1)
	w.c.route("ns", "new", "new.example", "web", "new")
	w.after(time.Second).build()
	w.expectHeld("HTTPRoute ns/r0", "HTTPRoute ns/r1", "HTTPRoute ns/r2", "Service ns/r0", "Service ns/r1", "Service ns/r2")
	for _, h := range []string{"r0.example", "r1.example", "r2.example"} {
		w.expect(h, 2)
	}
	w.expect("new.example", 1)
	w.after(time.Second).build()
	w.expect("r0.example", 2)
	for _, rt := range w.served.Routes {
		if rt.Host == "r0.example" && (rt.Gateway == nil || rt.Gateway.HTTPRoute.Name != "r0") {
			t.Errorf("kept route %s lost its origin", rt.Eskip.Id)
		}
	}
}

func TestGuardHeldHTTPRouteKeepsItsSplitAndGivesWayToALiveRoute(t *testing.T) {
	w := newWorld(t, GuardOptions{})
	w.c.gateway("web")
	for _, n := range []string{"a", "b", "c", "x"} {
		w.c.app(n, 2)
	}
	w.c.route("ns", "a", "a.example", "web", "a", "x") // two shares
	w.c.route("ns", "b", "b.example", "web", "b")
	w.c.route("ns", "c", "c.example", "web", "c")
	w.build()
	origins := func(host string) []string {
		var out []string
		for _, rt := range w.served.Routes {
			if rt.Host == host && rt.Gateway != nil {
				b, _ := w.served.Backend(rt.Backend)
				out = append(out, fmt.Sprintf("%s:%s:%d", rt.Gateway.HTTPRoute.Name, rt.Service, len(b.Endpoints)))
			}
		}
		slices.Sort(out)
		return out
	}
	if got := strings.Join(origins("a.example"), ","); got != "a:a:2,a:x:2" {
		t.Fatalf("a.example served by %s", got)
	}
	w.deleteRoute(true, "a", "b", "c")
	w.after(time.Second).build()
	w.expectHeld("HTTPRoute ns/a", "HTTPRoute ns/b", "HTTPRoute ns/c")
	if got := strings.Join(origins("a.example"), ","); got != "a:a:2,a:x:2" {
		t.Errorf("held: a.example served by %s, want both shares of a", got)
	}
	// A new HTTPRoute for the same host and path: the live one wins.
	w.c.app("d", 4)
	w.c.route("ns", "d", "a.example", "web", "d")
	w.after(time.Second).build()
	if got := strings.Join(origins("a.example"), ","); got != "d:d:4" {
		t.Errorf("a.example served by %s, want d's route alone", got)
	}
	w.expectHeld("HTTPRoute ns/a", "HTTPRoute ns/b", "HTTPRoute ns/c")
	w.expect("b.example", 2)
}

func TestNothingRemovedSeesHTTPRoutes(t *testing.T) {
	rt := func(name string) *routing.Route {
		return &routing.Route{Gateway: &routing.GatewayOrigin{HTTPRoute: types.NamespacedName{Namespace: "ns", Name: name}}}
	}
	served := routing.Table{Routes: []*routing.Route{rt("a"), rt("a"), rt("b")}}
	for _, c := range []struct {
		what      string
		candidate routing.Table
		want      bool
	}{
		{"the same", served, true},
		{"one route of a gone, a still served", routing.Table{Routes: []*routing.Route{rt("a"), rt("b")}}, true},
		{"b gone", routing.Table{Routes: []*routing.Route{rt("a"), rt("a")}}, false},
		{"an Ingress named b instead", routing.Table{Routes: []*routing.Route{rt("a"), {Ingress: types.NamespacedName{Namespace: "ns", Name: "b"}}}}, false},
	} {
		if got := nothingRemoved(served, c.candidate); got != c.want {
			t.Errorf("%s: nothingRemoved = %v, want %v", c.what, got, c.want)
		}
	}
}

// The merge of nothingRemoved must agree with the plain definition of its
// Services part (every Service with endpoints in served has a backend with
// endpoints in candidate) on lists where Services have several ports,
// lose and gain ports and endpoints.
func TestNothingRemovedBackendsAgreeWithSets(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	ep := []routing.Endpoint{{Address: "10.0.0.1:80", Ready: true, Serving: true}}
	list := func() []routing.Backend {
		var out []routing.Backend
		for _, ns := range []string{"a", "b"} {
			for _, svc := range []string{"x", "y", "z"} {
				for _, port := range []int32{80, 443, 8080} {
					if rnd.IntN(3) == 0 {
						continue
					}
					b := routing.Backend{Key: routing.BackendKey{Namespace: ns, Service: svc, Port: port}}
					if rnd.IntN(3) > 0 {
						b.Endpoints = ep
					}
					out = append(out, b)
				}
			}
		}
		return out
	}
	withEndpoints := func(bs []routing.Backend) map[[2]string]bool {
		m := map[[2]string]bool{}
		for _, b := range bs {
			if len(b.Endpoints) > 0 {
				m[[2]string{b.Key.Namespace, b.Key.Service}] = true
			}
		}
		return m
	}
	for range 2000 {
		served, candidate := routing.Table{Backends: list()}, routing.Table{Backends: list()}
		want := true
		live := withEndpoints(candidate.Backends)
		for svc := range withEndpoints(served.Backends) {
			want = want && live[svc]
		}
		if got := nothingRemoved(served, candidate); got != want {
			t.Fatalf("nothingRemoved = %v, want %v\nserved %v\ncandidate %v", got, want, served.Backends, candidate.Backends)
		}
	}
}
