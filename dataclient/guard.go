package dataclient

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/bulkhead-router/bulkhead/routing"
)

// GuardOptions configure the deletion guard.
//
// The guard counts source objects that left, never routes or endpoints that
// follow from them: an Ingress that stopped being served (deleted, or no
// longer of our class), and a Service that served routes use losing its
// last usable endpoint (Service deleted, EndpointSlices deleted or
// emptied). Deleting one Ingress that references six Services is one
// Ingress; the six Services keep their endpoints and count nothing.
//
// Removals are judged per kind within a window that opens with the first
// removal, against what was served when it opened (objects added during the
// window and removed again do not count, so create-use-delete cycles never
// add up):
//
//   - a removal the watch announced (a DELETE event; an update that emptied
//     a Service or changed an Ingress's class) is held only as part of a
//     burst: at least MinObjects objects of its kind in the window, and more
//     than MaxRemovalShare of them;
//   - a removal nobody announced (what a relist after a reconnect no longer
//     lists, informers restarted on a new connection, the first sync after
//     serving the stored table) is held when more than MaxRemovalShare of
//     its kind left in the window, however few that is.
//
// Only what would be removed is held; every addition and change is applied
// at once. A held object is served as before: an Ingress with its old spec
// (losing conflicts to live Ingresses), a Service with its old endpoints.
// Each is applied HoldPeriod after it was first held, whatever happens in
// the meantime, at once when an operator confirms, and dropped from the
// hold if it comes back.
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

// Kinds of objects the guard counts.
const (
	kindIngress      = "Ingress"
	kindService      = "Service"
	kindIngressClass = "IngressClass"
)

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

func serviceRef(namespace, name string) objectRef {
	return objectRef{Kind: kindService, Namespace: namespace, Name: name}
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
	service *corev1.Service
	slices  []*discoveryv1.EndpointSlice
	// routes are the served routes it kept: an Ingress's own, or those of a
	// Service's users that had endpoints; backends the endpoints they were
	// served with.
	routes   []routing.Route
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
	if len(g.held) == 0 && nothingRemoved(in.served, in.candidate) {
		return d
	}

	liveIngresses := make(map[objectRef]bool, len(in.candidate.Served))
	for _, n := range in.candidate.Served {
		liveIngresses[ingressRef(n)] = true
	}
	// Ingresses: served (or held) before, not served now.
	var removedIngresses []objectRef
	for _, n := range in.served.Served {
		if ref := ingressRef(n); !liveIngresses[ref] && g.held[ref] == nil && !released[ref] {
			removedIngresses = append(removedIngresses, ref)
		}
	}
	for ref, h := range g.held {
		if ref.Kind == kindIngress && liveIngresses[ref] {
			d.back = append(d.back, h)
			delete(g.held, ref)
			g.forgetInWindow(ref)
		}
	}
	classGone := false
	for ref, announced := range in.gone {
		if ref.Kind == kindIngressClass && !announced {
			classGone = true
		}
	}
	d.held = append(d.held, g.judge(in, removedIngresses, func(ref objectRef) bool {
		if in.unannounced || classGone {
			return false
		}
		announced, recorded := in.gone[ref]
		return !recorded || announced // not recorded: an update (a class change) the watch delivered
	})...)

	// Services: those that served routes use, that had endpoints and have
	// none now. Used means by the routes about to be served: a Service
	// left behind by a deleted Ingress is no removal anyone will notice.
	used := map[objectRef]bool{}
	for _, rt := range in.candidate.Routes {
		if rt.Service != "" {
			used[serviceRef(rt.Ingress.Namespace, rt.Service)] = true
		}
	}
	for _, h := range g.held {
		if h.ref.Kind == kindIngress {
			for _, rt := range h.routes {
				if rt.Service != "" {
					used[serviceRef(rt.Ingress.Namespace, rt.Service)] = true
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
	d.held = append(d.held, g.judge(in, removedServices, func(ref objectRef) bool {
		if in.unannounced {
			return false
		}
		announced, recorded := in.gone[ref]
		return !recorded || announced // not recorded: its slices were emptied by an update
	})...)

	if g.win != nil {
		d.window = map[string]string{}
		for _, kind := range []string{kindIngress, kindService} {
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
	case kindIngress:
		keys := map[routing.BackendKey]bool{}
		for _, rt := range in.served.Routes {
			if ingressRef(rt.Ingress) == ref {
				h.routes = append(h.routes, rt)
				keys[rt.Backend] = true
			}
		}
		for _, b := range in.served.Backends {
			if keys[b.Key] {
				h.backends = append(h.backends, b)
			}
		}
		if s := in.servedSnap; s != nil {
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
				if es != nil && es.Namespace == ref.Namespace && es.Labels[discoveryv1.LabelServiceName] == ref.Name {
					h.slices = append(h.slices, es)
				}
			}
		}
	}
	return h
}

// nothingRemoved reports whether candidate serves every Ingress served
// serves and still has endpoints for every Service whose backends had
// some in served: then plan would find no removal to judge. Both tables
// list Served and Backends sorted, so this is a merge, without maps.
func nothingRemoved(served, candidate routing.Table) bool {
	i := 0
	for _, n := range served.Served {
		for i < len(candidate.Served) && compareNames(candidate.Served[i], n) < 0 {
			i++
		}
		if i == len(candidate.Served) || candidate.Served[i] != n {
			return false
		}
	}
	for _, b := range served.Backends {
		if len(b.Endpoints) == 0 {
			continue
		}
		// The candidate's backends of the same Service, any port.
		j, _ := slices.BinarySearchFunc(candidate.Backends, b.Key, func(c routing.Backend, k routing.BackendKey) int {
			return cmp.Or(cmp.Compare(c.Key.Namespace, k.Namespace), cmp.Compare(c.Key.Service, k.Service))
		})
		usable := false
		for ; j < len(candidate.Backends) && candidate.Backends[j].Key.Namespace == b.Key.Namespace &&
			candidate.Backends[j].Key.Service == b.Key.Service; j++ {
			if len(candidate.Backends[j].Endpoints) > 0 {
				usable = true
				break
			}
		}
		if !usable {
			return false
		}
	}
	return true
}

func compareNames(a, b types.NamespacedName) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// servicesWithEndpoints are the Services that routes of t send to: those
// of its backends (each named by a route) with endpoints.
func servicesWithEndpoints(t routing.Table) map[objectRef]bool {
	out := map[objectRef]bool{}
	for _, b := range t.Backends {
		if len(b.Endpoints) > 0 {
			out[serviceRef(b.Key.Namespace, b.Key.Service)] = true
		}
	}
	return out
}

// usableServices are the Services of s that exist and have at least one
// endpoint a route could use (ready, or serving while terminating).
func usableServices(s *routing.Snapshot) map[objectRef]bool {
	exists := map[objectRef]bool{}
	for _, svc := range s.Services {
		if svc != nil {
			exists[serviceRef(svc.Namespace, svc.Name)] = true
		}
	}
	out := map[objectRef]bool{}
	for _, es := range s.EndpointSlices {
		if es == nil {
			continue
		}
		ref := serviceRef(es.Namespace, es.Labels[discoveryv1.LabelServiceName])
		if !exists[ref] || out[ref] {
			continue
		}
		for _, ep := range es.Endpoints {
			c := ep.Conditions
			if len(ep.Addresses) > 0 && (c.Ready == nil || *c.Ready || (c.Serving != nil && *c.Serving)) {
				out[ref] = true
				break
			}
		}
	}
	return out
}

// holding reports whether anything is held.
func (g *guard) holding() bool { return len(g.held) > 0 }

// heldList returns the held objects in a stable order.
func (g *guard) heldList() []*heldObject {
	out := make([]*heldObject, 0, len(g.held))
	for _, h := range g.held {
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b *heldObject) int { return compareRefs(a.ref, b.ref) })
	return out
}

// nextRelease is when the earliest hold ends; zero when nothing is held.
func (g *guard) nextRelease() time.Time {
	var next time.Time
	for _, h := range g.held {
		if next.IsZero() || h.until.Before(next) {
			next = h.until
		}
	}
	return next
}

// overlay is live plus the held objects that are known as objects.
func (g *guard) overlay(live *routing.Snapshot) *routing.Snapshot {
	eff := *live
	eff.Services = slices.Clip(live.Services)
	eff.EndpointSlices = slices.Clip(live.EndpointSlices)
	eff.HeldIngresses = slices.Clip(live.HeldIngresses)
	liveServices := map[objectRef]bool{}
	for _, svc := range live.Services {
		if svc != nil {
			liveServices[serviceRef(svc.Namespace, svc.Name)] = true
		}
	}
	// A held Service has no usable endpoint live: its live slices (empty,
	// or not ready) give way to the ones last served.
	replaced := map[objectRef]bool{}
	for _, h := range g.heldList() {
		switch {
		case h.ingress != nil:
			eff.HeldIngresses = append(eff.HeldIngresses, h.ingress)
		case h.ref.Kind == kindService:
			if h.service != nil && !liveServices[h.ref] {
				eff.Services = append(eff.Services, h.service)
			}
			if len(h.slices) > 0 {
				replaced[h.ref] = true
			}
		}
	}
	if len(replaced) > 0 {
		eff.EndpointSlices = slices.DeleteFunc(slices.Clone(live.EndpointSlices), func(es *discoveryv1.EndpointSlice) bool {
			return es != nil && replaced[serviceRef(es.Namespace, es.Labels[discoveryv1.LabelServiceName])]
		})
		for _, h := range g.heldList() {
			if replaced[h.ref] {
				eff.EndpointSlices = append(eff.EndpointSlices, h.slices...)
			}
		}
	}
	return &eff
}

// keepRoutes adds, to a table translated from the overlay, what of the
// held objects could not be rebuilt from objects (the served table came
// from disk): a held Ingress's routes as they were, with their backends'
// endpoints, unless a live route now matches the same requests; a held
// Service's endpoints as they were, where its backend now has none.
func (g *guard) keepRoutes(t routing.Table) routing.Table {
	var ingresses, services []*heldObject
	for _, h := range g.heldList() {
		switch {
		case h.ref.Kind == kindIngress && h.ingress == nil:
			ingresses = append(ingresses, h)
		case h.ref.Kind == kindService && h.service == nil && len(h.slices) == 0:
			services = append(services, h)
		}
	}
	if len(ingresses) == 0 && len(services) == 0 {
		return t
	}
	routes := slices.Clone(t.Routes)
	backends := slices.Clone(t.Backends)
	byID := make(map[string]int, len(routes))
	matches := make(map[string]bool, len(routes))
	for i, rt := range routes {
		byID[rt.Eskip.Id] = i
		matches[matchKey(rt)] = true
	}
	backendAt := make(map[routing.BackendKey]int, len(backends))
	for i, b := range backends {
		backendAt[b.Key] = i
	}
	for _, h := range services {
		for _, old := range h.backends {
			if i, ok := backendAt[old.Key]; ok && len(backends[i].Endpoints) == 0 {
				backends[i] = old
			}
		}
	}
	for _, h := range ingresses {
		kept := map[routing.BackendKey]bool{}
		for _, old := range h.routes {
			if _, ok := byID[old.Eskip.Id]; ok || matches[matchKey(old)] {
				continue
			}
			byID[old.Eskip.Id] = len(routes)
			matches[matchKey(old)] = true
			routes = append(routes, old)
			kept[old.Backend] = true
		}
		for _, old := range h.backends {
			if _, ok := backendAt[old.Key]; !ok && kept[old.Key] {
				backendAt[old.Key] = len(backends)
				backends = append(backends, old)
			}
		}
	}
	slices.SortFunc(routes, func(a, b routing.Route) int { return cmp.Compare(a.Eskip.Id, b.Eskip.Id) })
	slices.SortFunc(backends, func(a, b routing.Backend) int { return routing.CompareBackendKeys(a.Key, b.Key) })
	t.Routes = routes
	t.Backends = backends
	return t
}

// matchKey identifies the requests a route matches: its path and
// predicates (the host is part of the path key), or the default backend.
func matchKey(rt routing.Route) string {
	var b strings.Builder
	b.WriteString(rt.Eskip.Path)
	for _, p := range rt.Eskip.Predicates {
		fmt.Fprintf(&b, "|%s%v", p.Name, p.Args)
	}
	return b.String()
}

// describe summarises held objects for a log line: counts by kind and the
// first few names.
func describe(hs []*heldObject) string {
	counts := map[string]int{}
	var names []string
	for _, h := range hs {
		counts[h.ref.Kind]++
		if len(names) < 5 {
			names = append(names, h.ref.String())
		}
	}
	s := fmt.Sprintf("%d Ingresses, %d Services", counts[kindIngress], counts[kindService])
	if len(names) > 0 {
		s += " (" + strings.Join(names, ", ")
		if len(hs) > len(names) {
			s += fmt.Sprintf(", and %d more", len(hs)-len(names))
		}
		s += ")"
	}
	return s
}
