package gatewaystatus

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8stesting "k8s.io/client-go/testing"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"

	"github.com/bulkhead-router/bulkhead/routing"
)

const ourController = routing.DefaultGatewayControllerName

var (
	t0    = metav1.NewTime(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	tNow  = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	mtNow = metav1.NewTime(tNow)
	bg    = context.Background()
)

func cond(typ string, ok bool, reason string, gen int64, at metav1.Time) metav1.Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: st, Reason: reason, Message: reason, ObservedGeneration: gen, LastTransitionTime: at}
}

// untimed is a condition as the translation gives it.
func untimed(typ string, ok bool, reason string, gen int64) metav1.Condition {
	return cond(typ, ok, reason, gen, metav1.Time{})
}

func parentRef(name string) gatewayv1.ParentReference {
	return gatewayv1.ParentReference{Group: new(gatewayv1.Group(gatewayv1.GroupName)), Kind: new(gatewayv1.Kind("Gateway")), Name: gatewayv1.ObjectName(name)}
}

func parent(gw, controller string, conds ...metav1.Condition) gatewayv1.RouteParentStatus {
	return gatewayv1.RouteParentStatus{ParentRef: parentRef(gw), ControllerName: gatewayv1.GatewayController(controller), Conditions: conds}
}

func route(name string, gen int64, parents ...gatewayv1.RouteParentStatus) *gatewayv1.HTTPRoute {
	r := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Generation: gen}}
	r.Status.Parents = parents
	return r
}

// fixture is a fake API holding objs, and a writer whose cache is objs.
type fixture struct {
	cs      *fake.Clientset
	w       *Writer
	log     *records
	classes []*gatewayv1.GatewayClass
	gws     []*gatewayv1.Gateway
	routes  []*gatewayv1.HTTPRoute
	grpc    []*gatewayv1.GRPCRoute
}

func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	// NewSimpleClientset: the field-managed NewClientset of gateway-api
	// v1.6.3 knows no Gateway type ("no matches for ... gateways").
	f := &fixture{cs: fake.NewSimpleClientset(), log: &records{}}
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *gatewayv1.GatewayClass:
			f.classes = append(f.classes, o)
			_, err = f.cs.GatewayV1().GatewayClasses().Create(bg, o, metav1.CreateOptions{})
		case *gatewayv1.Gateway:
			f.gws = append(f.gws, o)
			_, err = f.cs.GatewayV1().Gateways(o.Namespace).Create(bg, o, metav1.CreateOptions{})
		case *gatewayv1.HTTPRoute:
			f.routes = append(f.routes, o)
			_, err = f.cs.GatewayV1().HTTPRoutes(o.Namespace).Create(bg, o, metav1.CreateOptions{})
		case *gatewayv1.GRPCRoute:
			f.grpc = append(f.grpc, o)
			_, err = f.cs.GatewayV1().GRPCRoutes(o.Namespace).Create(bg, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	f.cs.ClearActions()
	f.w = New(Options{
		Gateway:        f.cs,
		GatewayClasses: func() []*gatewayv1.GatewayClass { return f.classes },
		Gateways:       func() []*gatewayv1.Gateway { return f.gws },
		HTTPRoutes:     func() []*gatewayv1.HTTPRoute { return f.routes },
		GRPCRoutes:     func() []*gatewayv1.GRPCRoute { return f.grpc },
		Log:            slog.New(f.log),
		Now:            func() time.Time { return tNow },
		RetryInterval:  10 * time.Millisecond,
	})
	return f
}

// refreshCache makes the writer's cache what the fake API server holds, as
// the informers would once they have seen the writes.
func (f *fixture) refreshCache(t *testing.T) {
	t.Helper()
	cl, err := f.cs.GatewayV1().GatewayClasses().List(bg, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gl, err := f.cs.GatewayV1().Gateways("").List(bg, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rl, err := f.cs.GatewayV1().HTTPRoutes("").List(bg, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.classes, f.gws, f.routes = nil, nil, nil
	for i := range cl.Items {
		f.classes = append(f.classes, &cl.Items[i])
	}
	for i := range gl.Items {
		f.gws = append(f.gws, &gl.Items[i])
	}
	for i := range rl.Items {
		f.routes = append(f.routes, &rl.Items[i])
	}
	f.cs.ClearActions()
}

func (f *fixture) count(verb, subresource string) int {
	n := 0
	for _, a := range f.cs.Actions() {
		if a.GetVerb() == verb && a.GetSubresource() == subresource {
			n++
		}
	}
	return n
}

func (f *fixture) route(t *testing.T, name string) *gatewayv1.HTTPRoute {
	t.Helper()
	r, err := f.cs.GatewayV1().HTTPRoutes("ns").Get(bg, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *fixture) gateway(t *testing.T, name string) *gatewayv1.Gateway {
	t.Helper()
	g, err := f.cs.GatewayV1().Gateways("ns").Get(bg, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func (f *fixture) writes(kind, result string) float64 {
	return testutil.ToFloat64(f.w.writes.WithLabelValues(kind, result))
}

// records is a slog.Handler keeping what is logged.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func (r *records) at(level slog.Level) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		if rec.Level == level {
			out = append(out, rec.Message)
		}
	}
	return out
}

func wantConditions(t *testing.T, what string, got, want []metav1.Condition) {
	t.Helper()
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("%s conditions:\n got  %+v\n want %+v", what, got, want)
	}
}

// TestConditionTimes: a condition keeps its lastTransitionTime while its
// status stays, gets now when it changes or is new; observedGeneration,
// reason and message are the translation's; another party's condition type
// stays where it is, a Gateway API type no longer reported goes.
func TestConditionTimes(t *testing.T) {
	gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "gw", Generation: 2}}
	audited := cond("example.com/Audited", true, "Audited", 1, t0)
	gw.Status.Conditions = []metav1.Condition{
		cond("Accepted", true, "Accepted", 1, t0),
		audited,
		cond("Programmed", false, "AddressNotAssigned", 1, t0),
		cond("Ready", true, "Ready", 1, t0), // an old implementation's: ours to remove
	}
	gw.Status.Listeners = []gatewayv1.ListenerStatus{{Name: "http", SupportedKinds: []gatewayv1.RouteGroupKind{}, Conditions: []metav1.Condition{
		cond("Accepted", true, "Accepted", 1, t0), cond("Programmed", true, "Programmed", 1, t0)}}}
	fresh := &gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "fresh", Generation: 1}}
	f := newFixture(t, gw, fresh)

	kinds := []gatewayv1.RouteGroupKind{{Group: new(gatewayv1.Group(gatewayv1.GroupName)), Kind: "HTTPRoute"}}
	ip := gatewayv1.IPAddressType
	want := gatewayv1.GatewayStatus{
		Addresses: []gatewayv1.GatewayStatusAddress{{Type: &ip, Value: "192.0.2.1"}},
		Conditions: []metav1.Condition{
			untimed("Accepted", true, "ListenersNotValid", 2), // same status, new reason: time kept
			untimed("Programmed", true, "Programmed", 2),      // False to True: now
		},
		Listeners: []gatewayv1.ListenerStatus{
			{Name: "http", AttachedRoutes: 3, SupportedKinds: kinds, Conditions: []metav1.Condition{
				untimed("Accepted", true, "Accepted", 2), untimed("Programmed", false, "Invalid", 2)}},
			{Name: "new", SupportedKinds: kinds, Conditions: []metav1.Condition{untimed("Accepted", false, "PortUnavailable", 2)}},
		},
	}
	f.w.SetStatus([]routing.GatewayClassStatus{{Name: "fresh", Status: gatewayv1.GatewayClassStatus{
		Conditions: []metav1.Condition{untimed("Accepted", true, "Accepted", 1)}}}},
		[]routing.GatewayStatus{{Gateway: types.NamespacedName{Namespace: "ns", Name: "gw"}, Status: want}}, nil, nil)
	if !f.w.reconcile(bg, <-f.w.in) {
		t.Fatal("reconcile failed")
	}
	if n := f.count("get", ""); n != 0 {
		t.Errorf("%d GETs without a conflict: the cached copy is written over", n)
	}

	got := f.gateway(t, "gw").Status
	wantConditions(t, "Gateway", got.Conditions, []metav1.Condition{
		cond("Accepted", true, "ListenersNotValid", 2, t0),
		audited,
		cond("Programmed", true, "Programmed", 2, mtNow),
	})
	if len(got.Listeners) != 2 {
		t.Fatalf("listeners %+v", got.Listeners)
	}
	wantConditions(t, "listener http", got.Listeners[0].Conditions, []metav1.Condition{
		cond("Accepted", true, "Accepted", 2, t0), cond("Programmed", false, "Invalid", 2, mtNow)})
	wantConditions(t, "listener new", got.Listeners[1].Conditions, []metav1.Condition{cond("Accepted", false, "PortUnavailable", 2, mtNow)})
	if got.Listeners[0].AttachedRoutes != 3 || !equality.Semantic.DeepEqual(got.Listeners[0].SupportedKinds, kinds) {
		t.Errorf("listener http: attachedRoutes %d, supportedKinds %+v", got.Listeners[0].AttachedRoutes, got.Listeners[0].SupportedKinds)
	}
	if !equality.Semantic.DeepEqual(got.Addresses, want.Addresses) {
		t.Errorf("addresses %+v", got.Addresses)
	}
	c, err := f.cs.GatewayV1().GatewayClasses().Get(bg, "fresh", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantConditions(t, "GatewayClass", c.Status.Conditions, []metav1.Condition{cond("Accepted", true, "Accepted", 1, mtNow)})
	if f.writes(KindGateway, "set") != 1 || f.writes(KindGatewayClass, "set") != 1 {
		t.Errorf("writes: Gateway %v, GatewayClass %v, want 1 each", f.writes(KindGateway, "set"), f.writes(KindGatewayClass, "set"))
	}
}

// TestHTTPRouteParents: our entries are replaced in place, other
// controllers' entries kept as and where they are, our entries for
// parents no longer ours removed, also from routes no longer listed; a
// route the cache no longer has is skipped.
func TestHTTPRouteParents(t *testing.T) {
	other := parent("gw-x", "example.com/other", cond("Accepted", true, "Accepted", 1, t0))
	objs := []runtime.Object{
		route("a", 2, other, parent("gw", ourController, cond("Accepted", true, "Accepted", 1, t0)),
			parent("gw-old", ourController, cond("Accepted", true, "Accepted", 1, t0))),
		route("b", 1, parent("gw", ourController, cond("Accepted", true, "Accepted", 1, t0)), other), // no longer ours
		route("c", 1, parent("gw", ourController, cond("Accepted", true, "Accepted", 1, t0))),        // no longer ours
		route("e", 1, other), // never ours
	}
	f := newFixture(t, objs...)
	f.w.SetStatus(nil, nil, []routing.HTTPRouteStatus{
		{Route: types.NamespacedName{Namespace: "ns", Name: "a"}, Parents: []gatewayv1.RouteParentStatus{
			parent("gw", ourController, untimed("Accepted", true, "Accepted", 2), untimed("ResolvedRefs", false, "BackendNotFound", 2)),
			parent("gw-new", ourController, untimed("Accepted", true, "Accepted", 2))}},
		{Route: types.NamespacedName{Namespace: "ns", Name: "deleted"}, Parents: []gatewayv1.RouteParentStatus{
			parent("gw", ourController, untimed("Accepted", true, "Accepted", 1))}},
	}, nil)
	if !f.w.reconcile(bg, <-f.w.in) {
		t.Fatal("reconcile failed: a route the cache no longer has must be skipped, not an error")
	}

	wantParents := func(name string, want ...gatewayv1.RouteParentStatus) {
		t.Helper()
		got := f.route(t, name).Status.Parents
		if !equality.Semantic.DeepEqual(got, want) {
			t.Errorf("route %s parents:\n got  %+v\n want %+v", name, got, want)
		}
	}
	wantParents("a", other,
		parent("gw", ourController, cond("Accepted", true, "Accepted", 2, t0), cond("ResolvedRefs", false, "BackendNotFound", 2, mtNow)),
		parent("gw-new", ourController, cond("Accepted", true, "Accepted", 2, mtNow)))
	wantParents("b", other)
	wantParents("c")
	wantParents("e", other)
	if n := f.count("update", "status"); n != 3 {
		t.Errorf("%d status updates, want 3 (a, b, c; none for e nor the deleted route)", n)
	}
	if got := f.writes(KindHTTPRoute, "set"); got != 3 {
		t.Errorf("HTTPRoute set = %v, want 3", got)
	}
}

// TestGRPCRouteParents: GRPCRoutes get their entries as HTTPRoutes do,
// through the GRPCRoute API, apart from an HTTPRoute of the same name; ours
// on a GRPCRoute the translation no longer lists are removed, other
// controllers' kept.
func TestGRPCRouteParents(t *testing.T) {
	other := parent("gw-x", "example.com/other", cond("Accepted", true, "Accepted", 1, t0))
	grpcRoute := func(name string, gen int64, parents ...gatewayv1.RouteParentStatus) *gatewayv1.GRPCRoute {
		r := &gatewayv1.GRPCRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Generation: gen}}
		r.Status.Parents = parents
		return r
	}
	f := newFixture(t,
		route("a", 1, other),
		grpcRoute("a", 3, other),
		grpcRoute("gone", 1, other, parent("gw", ourController, cond("Accepted", true, "Accepted", 1, t0))))
	f.w.SetStatus(nil, nil,
		[]routing.HTTPRouteStatus{{Route: types.NamespacedName{Namespace: "ns", Name: "a"}, Parents: []gatewayv1.RouteParentStatus{
			parent("gw", ourController, untimed("Accepted", true, "Accepted", 1))}}},
		[]routing.GRPCRouteStatus{{Route: types.NamespacedName{Namespace: "ns", Name: "a"}, Parents: []gatewayv1.RouteParentStatus{
			parent("gw", ourController, untimed("Accepted", false, "NotAllowedByListeners", 3))}}})
	if !f.w.reconcile(bg, <-f.w.in) {
		t.Fatal("reconcile failed")
	}
	grpcParents := func(name string) []gatewayv1.RouteParentStatus {
		t.Helper()
		r, err := f.cs.GatewayV1().GRPCRoutes("ns").Get(bg, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status.Parents
	}
	for _, c := range []struct {
		kind string
		got  []gatewayv1.RouteParentStatus
		want []gatewayv1.RouteParentStatus
	}{
		{"HTTPRoute a", f.route(t, "a").Status.Parents, []gatewayv1.RouteParentStatus{other, parent("gw", ourController, cond("Accepted", true, "Accepted", 1, mtNow))}},
		{"GRPCRoute a", grpcParents("a"), []gatewayv1.RouteParentStatus{other, parent("gw", ourController, cond("Accepted", false, "NotAllowedByListeners", 3, mtNow))}},
		{"GRPCRoute gone", grpcParents("gone"), []gatewayv1.RouteParentStatus{other}},
	} {
		if !equality.Semantic.DeepEqual(c.got, c.want) {
			t.Errorf("%s parents:\n got  %+v\n want %+v", c.kind, c.got, c.want)
		}
	}
	if got := f.writes(KindGRPCRoute, "set"); got != 2 {
		t.Errorf("GRPCRoute set = %v, want 2", got)
	}
	if got := f.writes(KindHTTPRoute, "set"); got != 1 {
		t.Errorf("HTTPRoute set = %v, want 1", got)
	}
}

// TestNoWriteWhenUnchanged: once the cache holds what was written, the same
// status (translated again, at a later time) makes no API call at all.
func TestNoWriteWhenUnchanged(t *testing.T) {
	gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "gw", Generation: 1}}
	class := &gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "bulkhead", Generation: 1}}
	f := newFixture(t, class, gw, route("a", 1, parent("gw-x", "example.com/other", cond("Accepted", true, "Accepted", 1, t0))))
	status := func() {
		f.w.SetStatus(
			[]routing.GatewayClassStatus{{Name: "bulkhead", Status: gatewayv1.GatewayClassStatus{
				Conditions: []metav1.Condition{untimed("Accepted", true, "Accepted", 1)}}}},
			[]routing.GatewayStatus{{Gateway: types.NamespacedName{Namespace: "ns", Name: "gw"}, Status: gatewayv1.GatewayStatus{
				Conditions: []metav1.Condition{untimed("Accepted", true, "Accepted", 1), untimed("Programmed", false, "AddressNotAssigned", 1)},
				Listeners: []gatewayv1.ListenerStatus{{Name: "http", SupportedKinds: []gatewayv1.RouteGroupKind{},
					Conditions: []metav1.Condition{untimed("Accepted", true, "Accepted", 1)}}}}}},
			[]routing.HTTPRouteStatus{{Route: types.NamespacedName{Namespace: "ns", Name: "a"}, Parents: []gatewayv1.RouteParentStatus{
				parent("gw", ourController, untimed("Accepted", true, "Accepted", 1))}}}, nil)
	}
	status()
	if !f.w.reconcile(bg, <-f.w.in) {
		t.Fatal("reconcile failed")
	}
	if n := f.count("update", "status"); n != 3 {
		t.Fatalf("first round: %d status updates, want 3", n)
	}
	f.refreshCache(t)
	f.w.o.Now = func() time.Time { return tNow.Add(time.Hour) }
	status()
	if !f.w.reconcile(bg, <-f.w.in) {
		t.Fatal("reconcile failed")
	}
	if n := len(f.cs.Actions()); n != 0 {
		t.Errorf("an unchanged status made %d API calls: %v", n, f.cs.Actions())
	}
	for _, k := range []string{KindGatewayClass, KindGateway, KindHTTPRoute} {
		if got := f.writes(k, "set"); got != 1 {
			t.Errorf("%s set = %v, want 1 (unchanged is not counted)", k, got)
		}
	}
}

// TestConflictRetry: a write over a stale cached copy conflicts; the writer
// reads the object afresh and merges with what it has now (here another
// controller's entry added meanwhile), never overwriting it.
func TestConflictRetry(t *testing.T) {
	f := newFixture(t, route("a", 1))
	other := parent("gw-x", "example.com/other", cond("Accepted", true, "Accepted", 1, t0))
	conflicts := 0
	f.cs.PrependReactor("update", "httproutes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "status" || conflicts > 0 {
			return false, nil, nil
		}
		conflicts++
		// Another controller writes first.
		r := route("a", 1, other)
		if err := f.cs.Tracker().Update(gatewayv1.SchemeGroupVersion.WithResource("httproutes"), r, "ns"); err != nil {
			t.Error(err)
		}
		return true, nil, apierrors.NewConflict(gatewayv1.Resource("httproutes"), "a", nil)
	})
	f.w.SetStatus(nil, nil, []routing.HTTPRouteStatus{{Route: types.NamespacedName{Namespace: "ns", Name: "a"},
		Parents: []gatewayv1.RouteParentStatus{parent("gw", ourController, untimed("Accepted", true, "Accepted", 1))}}}, nil)
	if !f.w.reconcile(bg, <-f.w.in) {
		t.Fatal("reconcile failed after a conflict")
	}
	gets, updates := f.count("get", ""), f.count("update", "status")
	got := f.route(t, "a").Status.Parents
	want := []gatewayv1.RouteParentStatus{other, parent("gw", ourController, cond("Accepted", true, "Accepted", 1, mtNow))}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("parents after the conflict:\n got  %+v\n want %+v", got, want)
	}
	if conflicts != 1 || gets != 1 || updates != 2 {
		t.Errorf("%d conflicts, %d GETs, %d updates; want 1, 1, 2", conflicts, gets, updates)
	}
	if f.writes(KindHTTPRoute, "set") != 1 || f.writes(KindHTTPRoute, "error") != 0 {
		t.Errorf("set %v, error %v; want 1, 0", f.writes(KindHTTPRoute, "set"), f.writes(KindHTTPRoute, "error"))
	}
}

// TestNewerGenerationLeftAlone: status written for a newer generation than
// the translation saw (by a replica whose cache was ahead) is not
// overwritten with the older one, as the spec requires.
func TestNewerGenerationLeftAlone(t *testing.T) {
	gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "gw", Generation: 3}}
	gw.Status.Conditions = []metav1.Condition{cond("Accepted", false, "ListenersNotValid", 3, t0)}
	ours := parent("gw", ourController, cond("Accepted", true, "Accepted", 3, t0))
	f := newFixture(t, gw, route("a", 3, ours), route("b", 2, ours))
	f.w.SetStatus(nil,
		[]routing.GatewayStatus{{Gateway: types.NamespacedName{Namespace: "ns", Name: "gw"}, Status: gatewayv1.GatewayStatus{
			Conditions: []metav1.Condition{untimed("Accepted", true, "Accepted", 2)}}}},
		[]routing.HTTPRouteStatus{{Route: types.NamespacedName{Namespace: "ns", Name: "a"}, Parents: []gatewayv1.RouteParentStatus{
			parent("gw", ourController, untimed("Accepted", false, "NotAllowedByListeners", 2))}}}, nil)
	// b is not listed, but its entry is of generation 3 and the cache has 2.
	if !f.w.reconcile(bg, <-f.w.in) {
		t.Fatal("reconcile failed")
	}
	if n := f.count("update", "status"); n != 0 {
		t.Errorf("%d status updates over newer status, want 0", n)
	}
}

// TestFailuresLoggedOncePerStreak: a write that keeps failing (the API
// server refusing, RBAC missing) is counted every time but logged when the
// streak starts and when it ends.
func TestFailuresLoggedOncePerStreak(t *testing.T) {
	gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "gw", Generation: 1}}
	f := newFixture(t, gw)
	failing := true
	f.cs.PrependReactor("update", "gateways", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failing {
			return true, nil, apierrors.NewServiceUnavailable("etcd is down")
		}
		return false, nil, nil
	})
	d := &desired{gateways: []routing.GatewayStatus{{Gateway: types.NamespacedName{Namespace: "ns", Name: "gw"},
		Status: gatewayv1.GatewayStatus{Conditions: []metav1.Condition{untimed("Accepted", true, "Accepted", 1)}}}}}
	for range 3 {
		if f.w.reconcile(bg, d) {
			t.Fatal("reconcile reported success while every write fails")
		}
	}
	if got := f.writes(KindGateway, "error"); got != 3 {
		t.Errorf("errors counted %v, want 3", got)
	}
	if warns := f.log.at(slog.LevelWarn); len(warns) != 1 {
		t.Errorf("%d warnings for one streak of failures, want 1: %q", len(warns), warns)
	}
	failing = false
	if !f.w.reconcile(bg, d) {
		t.Fatal("reconcile failed after the API server recovered")
	}
	if infos := f.log.at(slog.LevelInfo); len(infos) != 1 {
		t.Errorf("recovery logged %d times at info, want 1: %q", len(infos), infos)
	}
	failing = true
	f.w.reconcile(bg, &desired{gateways: []routing.GatewayStatus{{Gateway: types.NamespacedName{Namespace: "ns", Name: "gw"},
		Status: gatewayv1.GatewayStatus{Conditions: []metav1.Condition{untimed("Accepted", false, "Invalid", 1)}}}}})
	if warns := f.log.at(slog.LevelWarn); len(warns) != 2 {
		t.Errorf("a new streak after recovery: %d warnings in all, want 2", len(warns))
	}
}

// TestLeadRetriesAfterFailure: a failed write is tried again after
// RetryInterval without a new status, and a status set before the term
// began is written as soon as it begins.
func TestLeadRetriesAfterFailure(t *testing.T) {
	class := &gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "bulkhead", Generation: 1}}
	f := newFixture(t, class)
	var mu sync.Mutex
	failures := 0
	f.cs.PrependReactor("update", "gatewayclasses", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if failures < 2 {
			failures++
			return true, nil, apierrors.NewInternalError(context.DeadlineExceeded)
		}
		return false, nil, nil
	})
	f.w.SetStatus([]routing.GatewayClassStatus{{Name: "bulkhead", Status: gatewayv1.GatewayClassStatus{
		Conditions: []metav1.Condition{untimed("Accepted", true, "Accepted", 1)}}}}, nil, nil, nil)
	ctx, cancel := context.WithCancel(bg)
	done := make(chan struct{})
	go func() { defer close(done); f.w.lead(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := f.cs.GatewayV1().GatewayClasses().Get(bg, "bulkhead", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Status.Conditions) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("status not written after two failed writes")
		}
		select {
		case <-done:
			t.Fatal("lead returned")
		case <-time.After(5 * time.Millisecond): // poll
		}
	}
	if got := testutil.ToFloat64(f.w.leader); got != 1 {
		t.Errorf("leader gauge %v while leading", got)
	}
	cancel()
	<-done
	if got := testutil.ToFloat64(f.w.leader); got != 0 {
		t.Errorf("leader gauge %v after the term", got)
	}
	if warns := f.log.at(slog.LevelWarn); len(warns) != 1 {
		t.Errorf("%d warnings, want 1", len(warns))
	}
}

func TestMergeParentsNeverNil(t *testing.T) {
	got := mergeParents([]gatewayv1.RouteParentStatus{parent("gw", ourController, cond("Accepted", true, "Accepted", 1, t0))},
		nil, ourController, 1, mtNow)
	if got == nil || len(got) != 0 {
		t.Fatalf("parents %#v, want an empty list (status.parents is required: null is refused)", got)
	}
}

func TestSetStatusNeverBlocks(t *testing.T) {
	w := New(Options{})
	for i := range 100 { // nobody reads: the latest replaces the unread one
		w.SetStatus([]routing.GatewayClassStatus{{Name: string(rune('a' + i%26))}}, nil, nil, nil)
	}
	if got := <-w.in; got.classes[0].Name != string(rune('a'+99%26)) {
		t.Fatalf("latest status lost: %+v", got.classes)
	}
}

func TestRunNeedsOptions(t *testing.T) {
	if err := New(Options{}).Run(bg); err == nil {
		t.Fatal("Run without clients, lease or listers: no error")
	}
}
