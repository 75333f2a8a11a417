package routing

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Translator is Translate with a memory: it returns exactly what Translate
// returns for the same snapshot and options, but reuses the work done for
// objects that did not change since its previous call. Objects are known
// by pointer: informer caches hand out immutable objects and replace the
// pointer on every change, so an object seen again at the same address is
// the same object. What it remembers (see doc.go, "Translating again"):
//
//   - per Ingress (by pointer): its settings, its rules validated and with
//     their backends resolved, its own problems and its emitted routes,
//     until the Ingress or a Service it names changes;
//   - per backend: its endpoints and problems, until its Service or the
//     set of its EndpointSlices changes, or the options;
//   - the order of the previous call: Ingresses by precedence, routes by
//     ID, backends by key, Table.Served; a call merges the changes into
//     them instead of sorting everything again;
//   - per Secret an HTTPS Gateway listener names (by pointer): its key
//     pair checked, with its certificate and key copied;
//   - the Services and EndpointSlices lists of the previous call: when a
//     call's lists hold the same objects in the same order (a caller that
//     lists again only the kinds that changed), they are not indexed
//     again and no backend's endpoints are checked.
//
// The cross-Ingress step (precedence, conflicts, the default backend) is
// a pass over the remembered rules. A route whose inputs did not change
// is the same *eskip.Route as before, also when its Ingress was replaced
// by an equal one, so a caller can tell unchanged routes by pointer.
//
// A Translator is not safe for concurrent use. The tables it returns share
// memory with it and with each other: they must not be modified (Translate
// returns tables of their own).
type Translator struct {
	gen     uint64
	started bool
	opts    Options
	refuse  refusal

	ingresses map[*networkingv1.Ingress]*ingressEntry
	// names are the Ingress names: the newest entry of each, and how many
	// served Ingresses have it (see nameSlot); servedNames is how many
	// names are served.
	names       map[types.NamespacedName]nameSlot
	epoch       uint32
	servedNames int

	// Indexes of the current call, kept only for their storage.
	services     map[types.NamespacedName]serviceSlot // also counts each Service's slices
	slicePresent map[*EndpointSlice]struct{}
	sliceGroups  map[types.NamespacedName][]*EndpointSlice // built on demand
	slicesNow    []*EndpointSlice                          // the snapshot's, during a call
	sliceScans   int                                       // slicesOf's passes over slicesNow in this call
	// claims are the claimants of each host and path, in precedence
	// order (the first wins), and defaults those of the default backend;
	// kept from one call to the next for the incremental path.
	claims   map[ruleKey]claimList
	defaults claimList
	// The lists the indexes above were made from, and the Services'
	// problems: a call whose lists hold the same objects in the same
	// order (a caller that lists again only what changed) indexes nothing
	// again.
	indexedServices []*Service
	indexedSlices   []*EndpointSlice
	serviceProblems []Problem

	// The previous call's results, in their order.
	order        []*ingressEntry // live served Ingresses, by precedence
	winners      []*claimant     // emitted routes, by ID and origin
	backendOrder []*backendEntry // backends routes name, by key
	last         Table
	sameInputs   bool // this call's Services and slices are the previous call's

	// What the incremental path (incremental.go) starts from; see there.
	incr incrState

	// keyPairs are the key pairs of the Secrets HTTPS listeners named,
	// by pointer (parsing one is the costly part of a certificate), kept
	// from one call to the next for the Secrets named in both.
	keyPairs, keyPairsNext map[*corev1.Secret]keyPair
	// The Secrets by name (ingresstls.go), the list they were indexed
	// from, and whether this call's list is the previous call's.
	secretIndex    map[types.NamespacedName]*corev1.Secret
	indexedSecrets []*corev1.Secret
	sameSecrets    bool
}

// NewTranslator returns a Translator that remembers nothing yet.
func NewTranslator() *Translator {
	return &Translator{
		ingresses:    map[*networkingv1.Ingress]*ingressEntry{},
		services:     map[types.NamespacedName]serviceSlot{},
		slicePresent: map[*EndpointSlice]struct{}{},
		names:        map[types.NamespacedName]nameSlot{},
		claims:       map[ruleKey]claimList{},
	}
}

// ingressEntry is what an Ingress gives regardless of the other Ingresses:
// its problems, and its rules (candidates) in their order, which still
// have to win their host and path against the others. There is one per
// served Ingress, so it holds nothing that can be read from elsewhere.
type ingressEntry struct {
	ing *networkingv1.Ingress
	// deps are the Services its backends were resolved against, with the
	// object seen (nil: none, or a duplicate).
	deps []serviceDep
	// secretDeps are the Secrets its spec.tls named, read for its
	// ssl-redirect (none without it).
	secretDeps []secretDep
	problems   []Problem // annotations, invalid hosts and paths
	def        *claimant
	rules      []*claimant
	// upstream is its upstream settings, part of each of its routes'
	// inputs (routeInputs); nil for the defaults (algLeastInFlight, no
	// policy), which most Ingresses have.
	upstream *upstreamInputs

	seen      uint64 // the last call the Ingress was in the snapshot
	served    uint64 // the last call it was served live
	ordered   uint64 // the last call it was in the precedence order
	prevServe uint64 // served before this call (for Table.Served reuse)
	inOrder   bool   // in Translator.order
}

// ref is the Ingress's namespace and name.
func (e *ingressEntry) ref() types.NamespacedName { return objectKey(e.ing.Namespace, e.ing.Name) }

// serviceDep is a Service an Ingress's backend named, in the Ingress's
// namespace, and the object seen.
type serviceDep struct {
	service string
	svc     *Service
}

// claimant is one validated path of an Ingress (or its default backend)
// with its emitted route. There is one per rule of every served Ingress;
// its route is the very one the tables hold (they share it and never
// modify it), so nothing is kept twice, and its key and inputs are read
// from it.
type claimant struct {
	rt *Route

	match   pathMatch
	problem *Problem // the backend cannot serve: the Ingress's problem when this wins

	owner *ingressEntry
	next  *claimant // the next claimant of the same key, in precedence order
	won   uint64    // the last call it was emitted

	idx      int32 // its place among its Ingress's rules (-1: the default backend)
	redirect bool  // the route redirects to HTTPS (routeInputs.redirect)
	inRoutes bool  // in Translator.winners
}

// route is c's emitted route.
func (c *claimant) route() Route { return *c.rt }

// newRoute is c's emitted route, for a table: tables hold routes by
// pointer, so that the next table, which has all but the few routes a
// change touched, copies 10,000 pointers instead of 10,000 routes; the
// claimant's is the one they hold.
func (c *claimant) newRoute() *Route { return c.rt }

// setRoute makes r c's route; r's Ingress must be c's owner's, and the
// default backend's route that of a claimant with idx -1. A claimant's
// route is set once: tables may hold it.
func (c *claimant) setRoute(r *Route) { c.rt = r }

// key is the host and path c claims (the zero key: the default backend).
func (c *claimant) key() ruleKey { return ruleKey{vhost: c.rt.VirtualHost, match: c.match} }

// inputs is what c's route was made of; c.owner must be its entry.
func (c *claimant) inputs() routeInputs {
	route := c.route()
	route.Eskip = nil
	in := routeInputs{route: route, usable: c.problem == nil, algorithm: algLeastInFlight, redirect: c.redirect}
	if up := c.owner.upstream; up != nil {
		in.algorithm, in.policy = up.algorithm, up.policy
	}
	return in
}

// upstreamInputs are an Ingress's upstream settings as routeInputs has
// them.
type upstreamInputs struct{ algorithm, policy string }

// routeInputs is everything an emitted route is made of: two candidates
// with equal inputs emit equal routes, so the older route is reused.
type routeInputs struct {
	route     Route // without Eskip
	usable    bool
	algorithm string
	policy    string
	redirect  bool
}

func inputsOf(r *rule) routeInputs {
	in := routeInputs{
		route: Route{
			Ingress: r.ingress, Host: r.host, Path: r.path, PathType: r.pathType, VirtualHost: r.vhost,
			DefaultBackend: r.isDefault, Service: r.backend.service, Port: r.backend.port, Backend: r.backend.key,
		},
		usable:    r.backend.usable(),
		algorithm: r.upstream.algorithm,
		policy:    policyKey(r.upstream.policyArgs),
		redirect:  r.sslRedirect,
	}
	return in
}

// policyKey is the upstream policy arguments as one comparable value.
func policyKey(args []string) string { return strings.Join(args, "\x00") }

// backendEntry is the endpoints of one backend, and what they were chosen
// from.
type backendEntry struct {
	svc      *Service
	slices   []*EndpointSlice
	backend  Backend // its Key is the entry's, also before the first resolve
	problems []Problem
	used     uint64 // the last call a route named it
	refs     int32  // how many references of the last call's routes name it
	inList   bool   // in Translator.backendOrder
}

func newBackendEntry(k BackendKey) *backendEntry { return &backendEntry{backend: Backend{Key: k}} }

func (be *backendEntry) key() BackendKey { return be.backend.Key }

// serviceSlot is what a call's lists hold of one Service name: the
// Services of that name (one map for both, since there is a Service for
// nearly every set of slices).
type serviceSlot struct {
	svc    *Service
	n      int32 // Services of this name (svc is the last one)
	slices int32 // EndpointSlices labelled with this name
}

// Translate translates s as the package function Translate does.
func (t *Translator) Translate(s *Snapshot, o Options) Table {
	if s == nil {
		s = &Snapshot{}
	}
	o = o.withDefaults()
	if out, ok := t.translateChanged(s, o); ok {
		return out
	}
	if !t.started || !sameOptions(t.opts, o) {
		// Options decide class selection (read again on every call) and
		// which endpoints are refused: the endpoints are chosen again.
		t.opts = Options{ControllerName: o.ControllerName,
			SelfAddresses: slices.Clone(o.SelfAddresses), NodeAddresses: slices.Clone(o.NodeAddresses)}
		t.refuse = newRefusal(o)
		t.backendOrder = nil
		t.last.Backends = nil
		t.started = true
	}
	t.gen++
	gen := t.gen
	var problems []Problem
	// Unchanged lists (the same objects in the same order): the backends
	// resolved in the previous call still stand, and the Ingresses' deps.
	sameInputs := t.gen > 1 && slices.Equal(s.Services, t.indexedServices) && slices.Equal(s.EndpointSlices, t.indexedSlices)
	if !slices.Equal(s.Services, t.indexedServices) || t.gen == 1 {
		t.serviceProblems = t.serviceProblems[:0]
		t.indexServices(s.Services, &t.serviceProblems)
		t.indexedServices = append(t.indexedServices[:0], s.Services...)
	}
	problems = append(problems, t.serviceProblems...)
	if !slices.Equal(s.EndpointSlices, t.indexedSlices) || t.gen == 1 {
		t.indexSlices(s.EndpointSlices)
		t.indexedSlices = append(t.indexedSlices[:0], s.EndpointSlices...)
	} else {
		t.slicesNow, t.sliceGroups, t.sliceScans = s.EndpointSlices, nil, 0
	}
	t.sameInputs = sameInputs

	// Secrets first: an Ingress's entry depends on them when it asks for
	// the ssl-redirect (its key pairs are checked once per Secret object).
	t.keyPairsNext = map[*corev1.Secret]keyPair{}
	t.indexSecrets(s.Secrets)

	// Ingresses selected by class; their entries, made or checked.
	sel := newClassSelector(s.IngressClasses, o.ControllerName)
	t.countAgain()
	var served []*ingressEntry
	var added []types.NamespacedName // served now, not in the previous Served
	servedSame := true
	for _, ing := range s.Ingresses {
		if ing == nil || !sel.serves(ing) {
			continue
		}
		e := t.entry(ing)
		if e.served != gen {
			e.prevServe, e.served = e.served, gen
			if e.prevServe != gen-1 {
				// Newly served: Served stays the same only if its name was.
				if _, ok := slices.BinarySearchFunc(t.last.Served, e.ref(), compareNames); !ok {
					servedSame = false
					added = append(added, e.ref())
				}
			}
		}
		t.countServed(e.ref(), 1)
		served = append(served, e)
	}
	var servedNames []types.NamespacedName
	slices.SortFunc(added, compareNames)
	added = slices.Compact(added)
	switch {
	case servedSame && t.servedNames == len(t.last.Served) && t.started && t.last.Served != nil:
		servedNames = t.last.Served
	case len(added) > 0 && t.servedNames == len(t.last.Served)+len(added):
		// Only additions (every name served before still is): merged in.
		servedNames = make([]types.NamespacedName, 0, t.servedNames)
		j := 0
		for _, n := range t.last.Served {
			for j < len(added) && compareNames(added[j], n) < 0 {
				servedNames = append(servedNames, added[j])
				j++
			}
			servedNames = append(servedNames, n)
		}
		servedNames = append(servedNames, added[j:]...)
	default:
		servedNames = make([]types.NamespacedName, 0, t.servedNames)
		for name, slot := range t.names {
			if t.served(slot) > 0 {
				servedNames = append(servedNames, name)
			}
		}
		slices.SortFunc(servedNames, compareNames)
	}
	for name, slot := range t.names {
		switch n := t.served(slot); {
		case n > 1:
			problems = append(problems, duplicateProblem("Ingress", name, n))
		case n == 0 && slot.newest == nil:
			delete(t.names, name) // served in an earlier call only
		}
	}
	order := t.precedence(served)

	var held []*ingressEntry
	for _, ing := range heldIngresses(s.HeldIngresses, servedNames, &problems) {
		held = append(held, t.entry(ing))
	}

	// Conflicts: the first claim of a host and path, in precedence order,
	// wins; so does the first default backend. Every claim is kept, in
	// that order, for the incremental path.
	clear(t.claims)
	t.defaults = claimList{}
	var fresh []*claimant
	win := func(c *claimant) {
		c.won = gen
		if c.problem != nil {
			problems = append(problems, *c.problem)
		}
		if !c.inRoutes {
			fresh = append(fresh, c)
		}
	}
	visit := func(e *ingressEntry) {
		problems = append(problems, e.problems...)
		if e.def != nil {
			if first := t.defaults.first; first != nil {
				problems = append(problems, lostProblem(e.def, first))
			} else {
				win(e.def)
			}
			t.defaults.push(e.def)
		}
		for _, c := range e.rules {
			key := c.key()
			l, taken := t.claims[key]
			if taken {
				problems = append(problems, lostProblem(c, l.first))
			} else {
				win(c)
			}
			l.push(c)
			t.claims[key] = l
		}
	}
	for _, e := range order {
		visit(e)
	}
	for _, e := range held {
		visit(e)
	}

	routes, renamed := t.emit(fresh)
	// Ingress certificates: every call, a pass over the Ingresses with
	// spec.tls (few; their key pairs remembered by Secret).
	var certProblems []Problem
	certs := t.ingressCertificates(order, held, o, &certProblems)
	problems = append(problems, certProblems...)
	// Gateway API: translated again on every call (gateway.go), merged
	// into the returned routes; t.last keeps the Ingress routes alone,
	// which emit reuses.
	gw := translateGateway(s, o, t.service, t.keyPair)
	t.keyPairs, t.keyPairsNext = t.keyPairsNext, nil
	all := routes
	if len(gw.routes) > 0 {
		all = mergeGatewayRoutes(routes, gw.routes)
	}
	problems = append(problems, gw.problems...)
	backends := t.endpoints(all, &problems)
	t.sweep()
	t.slicesNow, t.sliceGroups = nil, nil // keep no snapshot alive
	t.rememberFull(s, o, order, problems, certProblems, gw.problems, len(held) == 0 && len(gw.routes) == 0, renamed)
	t.last = Table{Routes: routes, Problems: sortedProblems(problems), Served: servedNames, Backends: backends}
	out := t.last
	out.Routes, out.GatewayClasses, out.Gateways, out.HTTPRoutes = all, gw.classes, gw.gateways, gw.httpRoutes
	out.GRPCRoutes = gw.grpcRoutes
	out.Certificates = gw.certs
	if len(certs) > 0 {
		out.Certificates = append(certs, gw.certs...)
		slices.SortFunc(out.Certificates, compareCertificates)
	}
	return out
}

// IncrementalCalls is how many calls took the incremental path
// (incremental.go) so far: for the data client's log, and for tests and
// benchmarks that must know a change was not translated in full.
func (t *Translator) IncrementalCalls() int { return t.incr.calls }

// keyPair is checkKeyPair, remembered by Secret pointer.
func (t *Translator) keyPair(s *corev1.Secret) keyPair {
	kp, ok := t.keyPairs[s]
	if !ok {
		kp, ok = t.keyPairsNext[s]
	}
	if !ok {
		kp = checkKeyPair(s)
	}
	t.keyPairsNext[s] = kp
	return kp
}

func sameOptions(a, b Options) bool {
	return a.ControllerName == b.ControllerName &&
		slices.Equal(a.SelfAddresses, b.SelfAddresses) && slices.Equal(a.NodeAddresses, b.NodeAddresses)
}

// indexServices indexes the Services by name; those that share a name are
// left out, with a problem (as indexServices does).
func (t *Translator) indexServices(services []*Service, problems *[]Problem) {
	for key, slot := range t.services {
		slot.svc, slot.n = nil, 0
		t.setSlot(key, slot)
	}
	for _, svc := range services {
		if svc == nil {
			continue
		}
		key := objectKey(svc.Namespace, svc.Name)
		slot := t.services[key]
		slot.svc, slot.n = svc, slot.n+1
		t.services[key] = slot
	}
	for key, slot := range t.services {
		if slot.n > 1 {
			*problems = append(*problems, duplicateProblem("Service", key, int(slot.n)))
		}
	}
}

// setSlot stores the slot of a name, or forgets it when it counts nothing.
func (t *Translator) setSlot(key types.NamespacedName, slot serviceSlot) {
	if slot.n == 0 && slot.slices <= 0 {
		delete(t.services, key)
		return
	}
	t.services[key] = slot
}

// service is the Service of that name, nil when there is none or several.
func (t *Translator) service(name types.NamespacedName) *Service {
	if slot := t.services[name]; slot.n == 1 {
		return slot.svc
	}
	return nil
}

func (t *Translator) indexSlices(endpointSlices []*EndpointSlice) {
	for key, slot := range t.services {
		slot.slices = 0
		t.setSlot(key, slot)
	}
	clear(t.slicePresent)
	t.sliceGroups = nil
	t.slicesNow, t.sliceScans = endpointSlices, 0
	for _, s := range endpointSlices {
		if name, ok := sliceService(s); ok {
			slot := t.services[name]
			slot.slices++
			t.services[name] = slot
			t.slicePresent[s] = struct{}{}
		}
	}
}

func sliceService(s *EndpointSlice) (types.NamespacedName, bool) {
	if s == nil {
		return types.NamespacedName{}, false
	}
	name := s.Service
	return objectKey(s.Namespace, name), name != ""
}

// slicesOf returns the slices of a Service, in the snapshot's order: for
// the first few Services of a call by a pass over the slices each, then by
// grouping all of them. A changed Service or Ingress has one backend or
// two to resolve again, and grouping 10,000 slices for it was 4 ms of the
// 20 ms of a full call.
func (t *Translator) slicesOf(name types.NamespacedName) []*EndpointSlice {
	if t.sliceGroups == nil && t.sliceScans < 4 {
		t.sliceScans++
		var out []*EndpointSlice
		for _, s := range t.slicesNow {
			if s != nil && s.Namespace == name.Namespace && s.Service == name.Name {
				out = append(out, s)
			}
		}
		return out
	}
	if t.sliceGroups == nil {
		t.sliceGroups = map[types.NamespacedName][]*EndpointSlice{}
		for _, s := range t.slicesNow {
			if key, ok := sliceService(s); ok {
				t.sliceGroups[key] = append(t.sliceGroups[key], s)
			}
		}
	}
	return t.sliceGroups[name]
}

// entry returns the entry of ing, made anew when ing is new or a Service
// it names changed.
func (t *Translator) entry(ing *networkingv1.Ingress) *ingressEntry {
	e := t.ingresses[ing]
	// Seen in the previous call, against the same Services: its deps were
	// checked then.
	if e == nil || !(t.sameInputs && t.sameSecrets && e.seen == t.gen-1) && !(t.depsSame(e) && t.secretsSame(e)) {
		old := e
		if old == nil {
			old = t.names[objectKey(ing.Namespace, ing.Name)].newest
		}
		next := t.newEntry(ing, old)
		if e != nil {
			// The same Ingress: it keeps its place in the order.
			next.served, next.prevServe, next.ordered, next.inOrder = e.served, e.prevServe, e.ordered, e.inOrder
			*e = *next
			e.own()
		} else {
			e = next
			t.ingresses[ing] = e
		}
		t.setNewest(e.ref(), e)
	}
	e.seen = t.gen
	return e
}

func (t *Translator) depsSame(e *ingressEntry) bool {
	for _, d := range e.deps {
		if t.service(objectKey(e.ing.Namespace, d.service)) != d.svc {
			return false
		}
	}
	return true
}

// newEntry validates an Ingress's rules and resolves their backends, as
// Translate always did; routes equal to those of old are reused.
func (t *Translator) newEntry(ing *networkingv1.Ingress, old *ingressEntry) *ingressEntry {
	e := &ingressEntry{ing: ing}
	ref := e.ref()
	problem := func(ref types.NamespacedName, reason Reason, format string, args ...any) {
		e.problems = append(e.problems, ingressProblem(ref, reason, format, args...))
	}
	reuse := reusableRoutes(old)
	settings := parseUpstreamSettings(ing, ref, problem)
	if settings.algorithm != algLeastInFlight || len(settings.policyArgs) > 0 {
		e.upstream = &upstreamInputs{settings.algorithm, policyKey(settings.policyArgs)}
	}
	redirect := t.redirectHosts(ing, ref, &e.secretDeps, func(reason Reason, format string, args ...any) { problem(ref, reason, format, args...) })
	if ing.Spec.DefaultBackend != nil {
		r := &rule{ingress: ref, isDefault: true, backend: t.resolve(e, ing.Spec.DefaultBackend), upstream: settings}
		e.def = newClaimant(r, reuse)
		e.def.idx = -1
	}
	for _, ir := range ing.Spec.Rules {
		vhost, err := ruleVHost(ir.Host)
		if err != nil {
			problem(ref, InvalidHost, "rule host %q is invalid (%v); rule ignored", ir.Host, err)
			continue
		}
		if ir.HTTP == nil {
			continue
		}
		for i := range ir.HTTP.Paths {
			p := &ir.HTTP.Paths[i]
			match, pathType, err := parsePathMatch(p.Path, p.PathType)
			if err != nil {
				problem(ref, InvalidPath, "host %q path %q (%s): %v; path ignored", ir.Host, p.Path, pathType, err)
				continue
			}
			r := &rule{
				ingress: ref, host: ir.Host, path: p.Path, pathType: pathType, vhost: vhost, match: match,
				backend: t.resolve(e, &p.Backend), upstream: settings, sslRedirect: redirects(redirect, vhost),
			}
			c := newClaimant(r, reuse)
			c.idx = int32(len(e.rules))
			e.rules = append(e.rules, c)
		}
	}
	e.own()
	return e
}

// own makes e the owner of its claimants (which read their inputs from
// it).
func (e *ingressEntry) own() {
	if e.def != nil {
		e.def.owner = e
	}
	for _, c := range e.rules {
		c.owner = e
	}
}

// resolve resolves a backend of e against the current Services and
// remembers which Service it read.
func (t *Translator) resolve(e *ingressEntry, b *networkingv1.IngressBackend) *backend {
	switch {
	case b.Resource != nil:
		return unusable("", "", UnsupportedBackend,
			"resource backend %s %q is not supported", resourceKind(b.Resource), b.Resource.Name)
	case b.Service == nil:
		return unusable("", "", InvalidBackend, "backend names no service")
	}
	key := serviceBackendKey{namespace: e.ing.Namespace, service: b.Service.Name, portNumber: b.Service.Port.Number}
	if key.portNumber == 0 {
		key.portName = b.Service.Port.Name
	}
	name := objectKey(key.namespace, key.service)
	svc := t.service(name)
	if dep := (serviceDep{key.service, svc}); !slices.Contains(e.deps, dep) {
		e.deps = append(e.deps, dep)
	}
	return resolveService(key, svc)
}

func reusableRoutes(old *ingressEntry) map[routeInputs]*Route {
	if old == nil {
		return nil
	}
	m := make(map[routeInputs]*Route, len(old.rules)+1)
	if old.def != nil {
		m[old.def.inputs()] = old.def.rt
	}
	for _, c := range old.rules {
		m[c.inputs()] = c.rt
	}
	return m
}

func newClaimant(r *rule, reuse map[routeInputs]*Route) *claimant {
	c := &claimant{match: r.match, redirect: r.sslRedirect}
	route, ok := reuse[inputsOf(r)]
	switch {
	case ok:
	case r.isDefault:
		rt := newDefaultRoute(r)
		route = &rt
	default:
		rt := newRoute(r)
		if r.sslRedirect {
			addSSLRedirect(rt.Eskip)
		}
		route = &rt
	}
	c.setRoute(route)
	if !r.backend.usable() {
		p := ingressProblem(r.ingress, r.backend.reason, "%s", r.backend.unavailable)
		c.problem = &p
	}
	return c
}

// precedence returns the live served Ingresses that are not duplicates,
// oldest first: the previous order without those gone, merged with the
// newcomers.
func (t *Translator) precedence(served []*ingressEntry) []*ingressEntry {
	gen := t.gen
	var newcomers []*ingressEntry
	for _, e := range served {
		if t.servedCount(e.ref()) != 1 || e.ordered == gen {
			continue
		}
		e.ordered = gen
		if !e.inOrder {
			newcomers = append(newcomers, e)
		}
	}
	slices.SortFunc(newcomers, func(a, b *ingressEntry) int { return compareIngressPrecedence(a.ing, b.ing) })
	order := mergeSorted(t.order, newcomers,
		func(e *ingressEntry) bool { return e.ordered == gen && e.seen == gen },
		func(e *ingressEntry, in bool) { e.inOrder = in },
		func(a, b *ingressEntry) int { return compareIngressPrecedence(a.ing, b.ing) })
	t.order = order
	return order
}

// mergeSorted keeps the elements of prev that are still wanted (keep) and
// merges add into them; both are sorted by compare, and so is the result.
// mark records which elements are in the result. prev is not modified.
func mergeSorted[T any](prev, add []T, keep func(T) bool, mark func(T, bool), compare func(a, b T) int) []T {
	// Where each addition goes is found by binary search: comparing every
	// element of prev (10,000 route IDs) on each call was most of a call's
	// merging.
	at := make([]int, len(add))
	for j, a := range add {
		at[j] = sort.Search(len(prev), func(k int) bool { return compare(a, prev[k]) < 0 })
	}
	out := make([]T, 0, len(prev)+len(add))
	j := 0
	for k, p := range prev {
		for j < len(add) && at[j] <= k {
			out = append(out, add[j])
			j++
		}
		if !keep(p) {
			mark(p, false)
			continue
		}
		out = append(out, p)
	}
	out = append(out, add[j:]...)
	for _, a := range add {
		mark(a, true)
	}
	return out
}

// emit puts the winning candidates in route order, ID first (as
// sortRoutes does), and returns the routes; the previous call's slice when
// nothing changed.
func (t *Translator) emit(fresh []*claimant) ([]*Route, bool) {
	gen := t.gen
	compare := compareWinners
	slices.SortFunc(fresh, compare)
	changed := len(fresh) > 0
	winners := mergeSorted(t.winners, fresh,
		func(c *claimant) bool {
			if c.won != gen {
				changed = true
				return false
			}
			return true
		},
		func(c *claimant, in bool) { c.inRoutes = in },
		compare)
	t.winners = winners
	if !changed && t.last.Routes != nil {
		return t.last.Routes, t.incr.renamed
	}
	routes := make([]*Route, len(winners))
	for i, c := range winners {
		routes[i] = c.newRoute()
	}
	renamed := renameDuplicateIDs(routes)
	if renamed {
		slices.SortFunc(routes, func(a, b *Route) int { return cmp.Compare(a.Eskip.Id, b.Eskip.Id) })
	}
	return routes, renamed
}

// endpoints returns the backends routes name (Backend and Gateway.Mirrors), each once, sorted, with
// their endpoints, chosen again only for backends whose Service or slices
// changed.
func (t *Translator) endpoints(routes []*Route, problems *[]Problem) []Backend {
	gen := t.gen
	var fresh []*backendEntry
	var made map[BackendKey]*backendEntry // those the previous call's list lacks
	changed := false
	use := func(k BackendKey) {
		if k.IsZero() {
			return
		}
		be := t.backend(k)
		if be == nil {
			if be = made[k]; be == nil {
				if made == nil {
					made = map[BackendKey]*backendEntry{}
				}
				be = newBackendEntry(k)
				made[k] = be
			}
		}
		if be.used == gen {
			be.refs++
			return
		}
		checked := t.sameInputs && be.used == gen-1 // resolved or checked in the previous call, against the same inputs
		be.used, be.refs = gen, 1
		if be.slices == nil || !checked && !t.backendSame(be) {
			t.resolveBackend(be)
			changed = true
		}
		*problems = append(*problems, be.problems...)
		if !be.inList {
			fresh = append(fresh, be)
		}
	}
	for i := range routes {
		use(routes[i].Backend)
		if g := routes[i].Gateway; g != nil {
			for _, k := range g.Mirrors {
				use(k)
			}
		}
	}
	compare := func(a, b *backendEntry) int { return CompareBackendKeys(a.key(), b.key()) }
	slices.SortFunc(fresh, compare)
	changed = changed || len(fresh) > 0
	list := mergeSorted(t.backendOrder, fresh,
		func(be *backendEntry) bool {
			if be.used != gen {
				changed = true
				return false
			}
			return true
		},
		func(be *backendEntry, in bool) { be.inList = in },
		compare)
	t.backendOrder = list
	if !changed && t.last.Backends != nil {
		return t.last.Backends
	}
	out := make([]Backend, len(list))
	for i, be := range list {
		out[i] = be.backend
	}
	return out
}

// backendSame reports whether be's Service and slices are those of the
// current call.
func (t *Translator) backendSame(be *backendEntry) bool {
	name := objectKey(be.key().Namespace, be.key().Service)
	if slot := t.services[name]; t.service(name) != be.svc || int(slot.slices) != len(be.slices) {
		return false
	}
	for _, s := range be.slices {
		if _, ok := t.slicePresent[s]; !ok {
			return false
		}
	}
	return true
}

func (t *Translator) resolveBackend(be *backendEntry) {
	t.resolveBackendFrom(be, t.slicesOf(objectKey(be.key().Namespace, be.key().Service)))
}

// resolveBackendFrom chooses be's endpoints from its Service's slices.
func (t *Translator) resolveBackendFrom(be *backendEntry, endpointSlices []*EndpointSlice) {
	name := objectKey(be.key().Namespace, be.key().Service)
	be.svc = t.service(name)
	be.slices = slices.Clone(endpointSlices)
	if be.slices == nil {
		be.slices = []*EndpointSlice{}
	}
	be.backend, be.problems = resolveEndpoints(be.key(), be.svc, be.slices, t.refuse)
}

// nameSlot is what a Translator knows of one Ingress name: its newest
// entry (the routes of an Ingress replaced by an equal one are taken from
// it), and how many served Ingresses have it, as counted since the full
// call of that epoch (a count of an older epoch is zero). One map for
// both: two kept 1.5 MB at 10,000 Ingresses.
type nameSlot struct {
	newest *ingressEntry
	epoch  uint32
	n      int32
}

// countAgain starts the count of served names again, for a full call.
func (t *Translator) countAgain() {
	t.servedNames = 0
	if t.epoch++; t.epoch == 0 { // wrapped: no older count may pass for a current one
		for name, slot := range t.names {
			slot.n = 0
			t.names[name] = slot
		}
		t.epoch = 1
	}
}

// served is how many served Ingresses have the name of slot.
func (t *Translator) served(slot nameSlot) int {
	if slot.epoch != t.epoch {
		return 0
	}
	return int(slot.n)
}

func (t *Translator) servedCount(name types.NamespacedName) int { return t.served(t.names[name]) }

// countServed adds d served Ingresses to those of name.
func (t *Translator) countServed(name types.NamespacedName, d int) {
	slot := t.names[name]
	before := t.served(slot)
	slot.epoch, slot.n = t.epoch, int32(before+d)
	switch {
	case before <= 0 && slot.n > 0:
		t.servedNames++
	case before > 0 && slot.n <= 0:
		t.servedNames--
	}
	t.putName(name, slot)
}

func (t *Translator) setNewest(name types.NamespacedName, e *ingressEntry) {
	slot := t.names[name]
	slot.newest = e
	t.putName(name, slot)
}

// putName stores the slot of a name, or forgets it when it holds nothing.
func (t *Translator) putName(name types.NamespacedName, slot nameSlot) {
	if slot.newest == nil && t.served(slot) <= 0 {
		delete(t.names, name)
		return
	}
	t.names[name] = slot
}

// sweep forgets the Ingresses this call did not see (the backends it did
// not use left the list in endpoints).
func (t *Translator) sweep() {
	gen := t.gen
	for ing, e := range t.ingresses {
		if e.seen != gen {
			delete(t.ingresses, ing)
			if t.names[e.ref()].newest == e {
				t.setNewest(e.ref(), nil)
			}
		}
	}
}

// backend is the entry of k in the previous call's backends, nil when it
// has none. Their list, sorted by key, is the index: a map beside it kept
// 0.9 MB at 10,000 backends, for a lookup only a full call makes for every
// route (14 comparisons each at 10,000, against a hash).
func (t *Translator) backend(k BackendKey) *backendEntry {
	i, ok := slices.BinarySearchFunc(t.backendOrder, k, func(be *backendEntry, k BackendKey) int { return CompareBackendKeys(be.key(), k) })
	if !ok {
		return nil
	}
	return t.backendOrder[i]
}

func ingressProblem(ref types.NamespacedName, reason Reason, format string, args ...any) Problem {
	return Problem{Kind: "Ingress", Namespace: ref.Namespace, Name: ref.Name, Reason: reason, Message: fmt.Sprintf(format, args...)}
}
