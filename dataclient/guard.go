package dataclient

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/bulkhead-router/bulkhead/routing"
)

// GuardOptions configure the deletion guard.
//
// The guard counts source objects that left, never routes or endpoints that
// follow from them: an Ingress that stopped being served (deleted, or no
// longer of our class); an HTTPRoute that stopped being served, that is,
// has no route in the table any more (deleted, or detached: its Gateway or
// GatewayClass deleted or changed, its parentRefs changed); and a Service
// that served routes use losing its last usable endpoint (Service deleted,
// EndpointSlices deleted or emptied), counted in its own namespace, which
// for an HTTPRoute's backend may be another than the route's. Deleting one
// Ingress that references six Services is one Ingress; the six Services
// keep their endpoints and count nothing. Deleting a Gateway detaches
// every HTTPRoute attached to it: each counts as an HTTPRoute that left.
//
// Removals are judged per kind (Ingress, HTTPRoute, Service) within a
// window that opens with the first removal, against what was served when
// it opened (objects added during the window and removed again do not
// count, so create-use-delete cycles never add up):
//
//   - a removal the watch announced (a DELETE event; an update that emptied
//     a Service, changed an Ingress's class or an HTTPRoute's parentRefs,
//     or changed or deleted its Gateway or GatewayClass) is held only as
//     part of a burst: at least MinObjects objects of its kind in the
//     window, and more than MaxRemovalShare of them;
//   - a removal nobody announced (what a relist after a reconnect no longer
//     lists, informers restarted on a new connection, the first sync after
//     serving the stored table; Ingresses of an IngressClass, HTTPRoutes of
//     a Gateway or GatewayClass, that a relist no longer lists) is held
//     when more than MaxRemovalShare of its kind left in the window,
//     however few that is. (Restarted informers: the watcher compares the
//     Ingress, Service and EndpointSlice caches, not yet the Gateway API
//     ones, so an HTTPRoute a restart no longer finds is announced.)
//
// Only what would be removed is held; every addition and change is applied
// at once. A held object is served as before: an Ingress with its old spec
// (losing conflicts to live Ingresses), an HTTPRoute as the routes it had
// (giving way to a live route that matches the same requests; their
// Services' endpoints are the live ones, as a held Ingress's), a Service
// with its old endpoints. Each is applied HoldPeriod after it was first
// held, whatever happens in the meantime, at once when an operator
// confirms, and dropped from the hold if it comes back (an HTTPRoute: is
// served again).
type GuardOptions struct {
	// MaxRemovalShare: more than this share of a kind removed within the
	// window is mass removal. Zero: 0.5. 1 disables the guard.
	MaxRemovalShare float64
	// MinObjects: announced deletions of fewer objects of one kind within
	// the window are never held. Zero: 3.
	MinObjects int
	// Window is how long after the first removal later ones count as the
	// same burst. Zero: 10 s.
	Window time.Duration
	// HoldPeriod is how long a held removal waits before it is applied,
	// counted from when it was first held. Zero: 2 minutes.
	HoldPeriod time.Duration
}

func (o GuardOptions) withDefaults() GuardOptions {
	if o.MaxRemovalShare == 0 {
		o.MaxRemovalShare = 0.5
	}
	if o.MinObjects == 0 {
		o.MinObjects = 3
	}
	if o.Window == 0 {
		o.Window = 10 * time.Second
	}
	if o.HoldPeriod == 0 {
		o.HoldPeriod = 2 * time.Minute
	}
	return o
}

// Kinds of objects the guard counts (and kindHTTPRoute and kindGRPCRoute,
// gatewaywatch.go: a GRPCRoute is judged as an HTTPRoute is, as a kind of
// its own).
// How an IngressClass, a Gateway (kindGateway) or a GatewayClass
// (kindGatewayClass) left tells it how the Ingresses and HTTPRoutes that
// went with it did.
const (
	kindIngress      = "Ingress"
	kindService      = "Service"
	kindIngressClass = "IngressClass"
)

// guardKinds are the kinds the guard judges, in the order it reports them.
var guardKinds = []string{kindIngress, kindHTTPRoute, kindGRPCRoute, kindService}

// gatewayRoute reports whether kind is a Gateway API route kind.
func gatewayRoute(kind string) bool { return kind == kindHTTPRoute || kind == kindGRPCRoute }

// objectRef names a source object. EndpointSlices are counted under their
// Service: what matters is whether the Service still has endpoints.
type objectRef struct {
	Kind, Namespace, Name string
}

func (r objectRef) String() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

func compareRefs(a, b objectRef) int {
	return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

func ingressRef(n types.NamespacedName) objectRef {
	return objectRef{Kind: kindIngress, Namespace: n.Namespace, Name: n.Name}
}

func httpRouteRef(n types.NamespacedName) objectRef {
	return objectRef{Kind: kindHTTPRoute, Namespace: n.Namespace, Name: n.Name}
}

func serviceRef(namespace, name string) objectRef {
	return objectRef{Kind: kindService, Namespace: namespace, Name: name}
}

// gatewayRouteRef is the HTTPRoute or GRPCRoute a route came from.
func gatewayRouteRef(o *routing.GatewayOrigin) objectRef {
	if o.Kind == kindGRPCRoute {
		return objectRef{Kind: kindGRPCRoute, Namespace: o.HTTPRoute.Namespace, Name: o.HTTPRoute.Name}
	}
	return httpRouteRef(o.HTTPRoute)
}

// originRef is the object a route came from: its HTTPRoute, GRPCRoute or
// Ingress.
func originRef(rt *routing.Route) objectRef {
	if rt.Gateway != nil {
		return gatewayRouteRef(rt.Gateway)
	}
	return ingressRef(rt.Ingress)
}

// httpRoutesServed are the HTTPRoutes and GRPCRoutes of t: those with a
// route in it.
func httpRoutesServed(t routing.Table) map[objectRef]bool {
	out := map[objectRef]bool{}
	for _, rt := range t.Routes {
		if rt.Gateway != nil {
			out[gatewayRouteRef(rt.Gateway)] = true
		}
	}
	return out
}

// serviceNamer names the Service a route sends to. A usable backend says
// it (Route.Backend); a route whose backend cannot be used (no such
// Service or port, a reference not permitted) keeps only the name and
// port as written: an Ingress's Service is in the Ingress's namespace, an
// HTTPRoute's in the namespace its backendRef names, read from the
// snapshots (the HTTPRoute's own when it names none or is not found).
type serviceNamer struct {
	snaps  []*routing.Snapshot
	routes map[types.NamespacedName]*gatewayv1.HTTPRoute // built on first use
}

// grpcNamespace is the namespace of the Service a GRPCRoute's backendRef
// names, as ref does for HTTPRoutes (not kept in a map: rare).
func (s *serviceNamer) grpcNamespace(o *routing.GatewayOrigin, service string) string {
	for _, snap := range s.snaps {
		if snap == nil {
			continue
		}
		for _, gr := range snap.GRPCRoutes {
			if gr == nil || gr.Namespace != o.HTTPRoute.Namespace || gr.Name != o.HTTPRoute.Name {
				continue
			}
			if o.Rule >= 0 && o.Rule < len(gr.Spec.Rules) && o.BackendRef >= 0 && o.BackendRef < len(gr.Spec.Rules[o.Rule].BackendRefs) {
				if ref := gr.Spec.Rules[o.Rule].BackendRefs[o.BackendRef]; ref.Namespace != nil && string(ref.Name) == service {
					return string(*ref.Namespace)
				}
			}
			return o.HTTPRoute.Namespace
		}
	}
	return o.HTTPRoute.Namespace
}

func (s *serviceNamer) ref(rt *routing.Route) (objectRef, bool) {
	switch {
	case !rt.Backend.IsZero():
		return serviceRef(rt.Backend.Namespace, rt.Backend.Service), true
	case rt.Service == "":
		return objectRef{}, false
	case rt.Gateway == nil:
		return serviceRef(rt.Ingress.Namespace, rt.Service), true
	}
	o := rt.Gateway
	ns := o.HTTPRoute.Namespace
	if s.routes == nil {
		s.routes = map[types.NamespacedName]*gatewayv1.HTTPRoute{}
		for _, snap := range s.snaps {
			if snap == nil {
				continue
			}
			for _, hr := range snap.HTTPRoutes {
				if hr == nil {
					continue
				}
				n := types.NamespacedName{Namespace: hr.Namespace, Name: hr.Name}
				if _, seen := s.routes[n]; !seen {
					s.routes[n] = hr
				}
			}
		}
	}
	if o.Kind == kindGRPCRoute {
		return serviceRef(s.grpcNamespace(o, rt.Service), rt.Service), true
	}
	if hr := s.routes[o.HTTPRoute]; hr != nil && o.Rule >= 0 && o.Rule < len(hr.Spec.Rules) &&
		o.BackendRef >= 0 && o.BackendRef < len(hr.Spec.Rules[o.Rule].BackendRefs) {
		if ref := hr.Spec.Rules[o.Rule].BackendRefs[o.BackendRef]; ref.Namespace != nil && string(ref.Name) == rt.Service {
			ns = string(*ref.Namespace)
		}
	}
	return serviceRef(ns, rt.Service), true
}

// goneSet records how objects left the caches since the last build: true
// when the watch announced it (a DELETE event), false when a relist or an
// informer restart found it missing. Unannounced wins over announced.
type goneSet map[objectRef]bool

func (g goneSet) add(ref objectRef, announced bool) {
	if prev, ok := g[ref]; ok && !prev {
		return
	}
	g[ref] = announced
}

// heldObject is a removal the guard holds back, with what keeps it served.
type heldObject struct {
	ref          objectRef
	since, until time.Time
	announced    bool
	// The objects as last served; nil when the served table came from disk,
	// and then routes are kept as they were instead.
	ingress *networkingv1.Ingress
	service *routing.Service
	slices  []*routing.EndpointSlice
	// routes are the served routes it kept: an Ingress's own, or those of a
	// Service's users that had endpoints; backends the endpoints they were
	// served with.
	routes   []*routing.Route
	backends []routing.Backend
}

// guardWindow is one burst of removals, judged against what was served
// when its first removal arrived.
type guardWindow struct {
	start time.Time
	base  map[objectRef]bool
	total map[string]int // base objects by kind
	// removed are the base objects that left during the window; an entry
	// keeps what is needed to bring the object back if the burst turns
	// out to be mass removal (nil once held, released or back).
	removed map[objectRef]*heldObject
}

// guardInput is what one build shows the guard.
type guardInput struct {
	now time.Time
	// served is the table being served, servedSnap the objects it was built
	// from (nil when it came from disk).
	served     routing.Table
	servedSnap *routing.Snapshot
	// patched are endpoints of served's backends, by place, that differ
	// from served.Backends (published.patched), and servedObjs what
	// servedSnap is made from when nil: both are made whole only when plan
	// needs more than nothingRemoved, so an ordinary change after
	// endpoint-only ones copies neither 10,000 backends nor every slice.
	patched    map[int][]routing.Endpoint
	servedObjs *servedObjects
	live       *routing.Snapshot
	candidate  routing.Table // Translate(live)
	gone       goneSet
	// unannounced: nothing that left was announced (the first build after
	// serving the stored table).
	unannounced bool
}

// guardDecision is what changed in one plan, for logs and metrics.
type guardDecision struct {
	held      []*heldObject // newly held
	released  []*heldObject // applied: hold period over or confirmed
	back      []*heldObject // came back by themselves
	confirmed bool
	// shares per kind in the window, for the log line
	window map[string]string
}

// guard decides which removals to hold. It is driven by the rebuild
// goroutine only; the Client publishes its state for /status.
type guard struct {
	o       GuardOptions
	held    map[objectRef]*heldObject
	win     *guardWindow
	confirm bool // an operator confirmed: release everything at the next plan
}

func newGuard(o GuardOptions) *guard {
	return &guard{o: o.withDefaults(), held: map[objectRef]*heldObject{}}
}

func (g *guard) disabled() bool { return g.o.MaxRemovalShare >= 1 }

// plan updates the held set for one build.
func (g *guard) plan(in guardInput) guardDecision {
	var d guardDecision
	// Releases first: what is released now is applied by this build and
	// must not be held again by it.
	released := map[objectRef]bool{}
	for ref, h := range g.held {
		if g.confirm || !in.now.Before(h.until) || g.disabled() {
			d.released = append(d.released, h)
			released[ref] = true
			delete(g.held, ref)
			g.forgetInWindow(ref)
		}
	}
	d.confirmed = g.confirm && len(d.released) > 0
	g.confirm = false
	if g.win != nil && in.now.Sub(g.win.start) > g.o.Window {
		g.win = nil // over: let go of the objects it kept
	}
	// The common case, every rebuild of an ordinary day: nothing held and
	// nothing removed. Said without building a map of every object.
	if len(g.held) == 0 && nothingRemovedPatched(in.served, in.patched, in.candidate) {
		return d
	}
	if len(in.patched) > 0 {
		in.served.Backends, in.patched = patchedBackends(in.served.Backends, in.patched), nil
	}
	if in.servedSnap == nil {
		in.servedSnap = in.servedObjs.snapshot()
	}

	// Ingresses and HTTPRoutes: served (or held) before, not served now.
	// An Ingress is served when the table lists it (Table.Served), an
	// HTTPRoute when the table has a route of it: one that no longer
	// attaches (its Gateway or GatewayClass gone or changed, its
	// parentRefs changed) has left as surely as a deleted one.
	liveIngresses := make(map[objectRef]bool, len(in.candidate.Served))
	for _, n := range in.candidate.Served {
		liveIngresses[ingressRef(n)] = true
	}
	liveRoutes := httpRoutesServed(in.candidate)
	var removedIngresses, removedRoutes []objectRef
	for _, n := range in.served.Served {
		if ref := ingressRef(n); !liveIngresses[ref] && g.held[ref] == nil && !released[ref] {
			removedIngresses = append(removedIngresses, ref)
		}
	}
	for ref := range httpRoutesServed(in.served) {
		if !liveRoutes[ref] && g.held[ref] == nil && !released[ref] {
			removedRoutes = append(removedRoutes, ref)
		}
	}
	slices.SortFunc(removedRoutes, compareRefs)
	for ref, h := range g.held {
		if ref.Kind == kindIngress && liveIngresses[ref] || gatewayRoute(ref.Kind) && liveRoutes[ref] {
			d.back = append(d.back, h)
			delete(g.held, ref)
			g.forgetInWindow(ref)
		}
	}
	// What a relist found missing makes everything that left with it
	// unannounced: an IngressClass its Ingresses, a Gateway or
	// GatewayClass the HTTPRoutes attached to it.
	classGone, gatewayGone := false, false
	for ref, announced := range in.gone {
		switch {
		case announced:
		case ref.Kind == kindIngressClass:
			classGone = true
		case ref.Kind == kindGateway || ref.Kind == kindGatewayClass:
			gatewayGone = true
		}
	}
	announcedUnless := func(parentGone bool) func(objectRef) bool {
		return func(ref objectRef) bool {
			if in.unannounced || parentGone {
				return false
			}
			announced, recorded := in.gone[ref]
			// Not recorded: an update the watch delivered (an Ingress's
			// class changed; an HTTPRoute's parentRefs, or its Gateway's
			// listeners or class, changed) or a Gateway the watch deleted.
			return !recorded || announced
		}
	}
	d.held = append(d.held, g.judge(in, removedIngresses, announcedUnless(classGone))...)
	d.held = append(d.held, g.judge(in, removedRoutes, announcedUnless(gatewayGone))...)

	// Services: those that served routes use, that had endpoints and have
	// none now. Used means by the routes about to be served: a Service
	// left behind by a deleted Ingress or HTTPRoute is no removal anyone
	// will notice.
	used := map[objectRef]bool{}
	namer := &serviceNamer{snaps: []*routing.Snapshot{in.live, in.servedSnap}}
	for _, rt := range in.candidate.Routes {
		if ref, ok := namer.ref(rt); ok {
			used[ref] = true
		}
	}
	for _, h := range g.held {
		if h.ref.Kind == kindIngress || gatewayRoute(h.ref.Kind) {
			for _, rt := range h.routes {
				if ref, ok := namer.ref(rt); ok {
					used[ref] = true
				}
			}
		}
	}
	usable := usableServices(in.live)
	var removedServices []objectRef
	for ref := range servicesWithEndpoints(in.served) {
		if used[ref] && !usable[ref] && g.held[ref] == nil && !released[ref] {
			removedServices = append(removedServices, ref)
		}
	}
	slices.SortFunc(removedServices, compareRefs)
	for ref, h := range g.held {
		if ref.Kind == kindService && (usable[ref] || !used[ref]) {
			d.back = append(d.back, h)
			delete(g.held, ref)
			g.forgetInWindow(ref)
		}
	}
	// Not recorded: its slices were emptied by an update.
	d.held = append(d.held, g.judge(in, removedServices, announcedUnless(false))...)

	if g.win != nil {
		d.window = map[string]string{}
		for _, kind := range guardKinds {
			d.window[kind] = fmt.Sprintf("%d of %d", g.win.count(kind), g.win.total[kind])
		}
	}
	return d
}

// judge adds new removals of one kind to the window and returns those to
// hold, with any earlier removals of the burst brought back.
func (g *guard) judge(in guardInput, removed []objectRef, announced func(objectRef) bool) []*heldObject {
	if len(removed) == 0 || g.disabled() {
		return nil
	}
	g.openWindow(in)
	kind := removed[0].Kind
	for _, ref := range removed {
		if g.win.base[ref] {
			if _, seen := g.win.removed[ref]; !seen {
				g.win.removed[ref] = g.capture(in, ref)
			}
		}
	}
	count, total := g.win.count(kind), g.win.total[kind]
	overShare := total > 0 && float64(count)/float64(total) > g.o.MaxRemovalShare
	if !overShare {
		return nil
	}
	burst := count >= g.o.MinObjects
	var held []*heldObject
	hold := func(h *heldObject, isAnnounced bool) {
		h.since, h.until, h.announced = in.now, in.now.Add(g.o.HoldPeriod), isAnnounced
		g.held[h.ref] = h
		held = append(held, h)
	}
	for _, ref := range removed {
		isAnnounced := announced(ref)
		if isAnnounced && !burst {
			continue
		}
		h := g.win.removed[ref]
		if h == nil { // not a base object (added during the window): count only
			h = g.capture(in, ref)
		}
		g.win.removed[ref] = nil
		hold(h, isAnnounced)
	}
	if burst {
		// The burst is mass removal: earlier parts of it that were applied
		// because they came alone come back too.
		for ref, h := range g.win.removed {
			if h != nil && ref.Kind == kind && g.held[ref] == nil {
				g.win.removed[ref] = nil
				hold(h, true)
			}
		}
	}
	return held
}

// openWindow starts a burst unless one is open.
func (g *guard) openWindow(in guardInput) {
	if g.win != nil && in.now.Sub(g.win.start) <= g.o.Window {
		return
	}
	w := &guardWindow{start: in.now, base: map[objectRef]bool{}, total: map[string]int{}, removed: map[objectRef]*heldObject{}}
	add := func(ref objectRef) {
		if !w.base[ref] {
			w.base[ref] = true
			w.total[ref.Kind]++
		}
	}
	for _, n := range in.served.Served {
		add(ingressRef(n))
	}
	for ref := range httpRoutesServed(in.served) {
		add(ref)
	}
	for ref := range servicesWithEndpoints(in.served) {
		add(ref)
	}
	for ref := range g.held {
		add(ref)
	}
	g.win = w
}

func (w *guardWindow) count(kind string) int {
	n := 0
	for ref := range w.removed {
		if ref.Kind == kind {
			n++
		}
	}
	return n
}

// forgetInWindow keeps a released or returned object from being brought
// back by a later burst in the same window; it still counts.
func (g *guard) forgetInWindow(ref objectRef) {
	if g.win != nil {
		if _, ok := g.win.removed[ref]; ok {
			g.win.removed[ref] = nil
		}
	}
}

// capture takes what keeps ref served from the served table and objects.
func (g *guard) capture(in guardInput, ref objectRef) *heldObject {
	h := &heldObject{ref: ref}
	switch ref.Kind {
	case kindIngress, kindHTTPRoute, kindGRPCRoute:
		keys := map[routing.BackendKey]bool{}
		for _, rt := range in.served.Routes {
			if originRef(rt) == ref {
				h.routes = append(h.routes, rt)
				keys[rt.Backend] = true
			}
		}
		for _, b := range in.served.Backends {
			if keys[b.Key] {
				h.backends = append(h.backends, b)
			}
		}
		if s := in.servedSnap; s != nil && ref.Kind == kindIngress {
			for _, list := range [][]*networkingv1.Ingress{s.Ingresses, s.HeldIngresses} {
				for _, ing := range list {
					if ing != nil && ing.Namespace == ref.Namespace && ing.Name == ref.Name {
						h.ingress = ing
					}
				}
			}
		}
	case kindService:
		keys := map[routing.BackendKey]bool{}
		for _, b := range in.served.Backends {
			if serviceRef(b.Key.Namespace, b.Key.Service) == ref && len(b.Endpoints) > 0 {
				h.backends = append(h.backends, b)
				keys[b.Key] = true
			}
		}
		for _, rt := range in.served.Routes {
			if keys[rt.Backend] {
				h.routes = append(h.routes, rt)
			}
		}
		if s := in.servedSnap; s != nil {
			for _, svc := range s.Services {
				if svc != nil && svc.Namespace == ref.Namespace && svc.Name == ref.Name {
					h.service = svc
				}
			}
			for _, es := range s.EndpointSlices {
				if es != nil && es.Namespace == ref.Namespace && es.Service == ref.Name {
					h.slices = append(h.slices, es)
				}
			}
		}
	}
	return h
}
