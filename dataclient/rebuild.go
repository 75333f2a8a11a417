package dataclient

import (
	"cmp"
	"context"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/bulkhead-router/bulkhead/internal/logging"
	"github.com/bulkhead-router/bulkhead/routing"
)

// A rebuild with a removal pending waits for removalQuiet without a change
// (at most removalMaxDelay), so that the deletion guard sees a burst of
// deletions whole even when the API server answers slowly between them.
// 50 ms was too short on a loaded 2-core machine: a client's three DELETEs
// came further apart, the first was applied alone (below the guard's
// minimum count) and answered 404 for 300 ms until the burst was held. A
// deleted object's routes serving a quarter second longer harms nobody.
const (
	removalQuiet    = 250 * time.Millisecond
	removalMaxDelay = time.Second
)

// holdOff waits until no change has arrived for quiet, or limit has
// passed since the first one. It returns false if ctx ended.
func (c *Client) holdOff(ctx context.Context, quiet, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	timer := time.NewTimer(quiet)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-c.changed:
			left := time.Until(deadline)
			if left <= 0 {
				return true
			}
			timer.Reset(min(quiet, left))
		}
	}
}

// rebuild translates the current caches and applies the result, with the
// removals the deletion guard holds kept in it.
func (c *Client) rebuild() {
	start := time.Now()
	w := c.currentWatcher()
	if !w.hasSynced() {
		return // a restarted watcher still listing: keep what we have
	}
	dirty := w.takeDirty()
	c.mu.Lock()
	cur := c.current
	full := c.fullRebuild
	c.fullRebuild = false
	c.mu.Unlock()
	if !dirty.all && c.resolveOnly(cur, full) &&
		c.unused(w, cur, dirty) && c.rebuildEndpoints(start, w, cur, dirty.services) {
		w.forgetGoneOf(dirty)
		return
	}
	changes := w.takeChanges()
	gone := w.takeGone()
	live := w.snapshot()
	opts := c.translateOptions()
	if c.translator == nil {
		c.translator = routing.NewTranslator()
	}
	incremental := c.translator.IncrementalCalls()
	table := c.translator.Translate(live, opts)
	incremental = c.translator.IncrementalCalls() - incremental
	snap := live
	if cur != nil {
		d := c.guard.plan(guardInput{
			now: start, served: cur.table, patched: cur.patched, servedObjs: cur.snap, live: live, candidate: table,
			gone: gone, unannounced: cur.source == SourceSnapshot,
		})
		c.reportGuard(d)
		if c.guard.holding() {
			snap = c.guard.overlay(live)
			table = c.guard.keepRoutes(c.translator.Translate(snap, opts), snap, opts)
		}
	}
	c.metrics.rebuild.Observe(time.Since(start).Seconds())
	c.metrics.rebuilds.WithLabelValues("full").Inc()
	c.logProblems(table.Problems)
	c.mu.Lock()
	c.undelivered = append(c.undelivered, changes...)
	c.mu.Unlock()
	c.apply(table, SourceAPIServer, time.Time{}, snap)
	c.log.Debug("route table rebuilt", "routes", len(table.Routes), "problems", len(table.Problems), "incremental", incremental > 0,
		"duration", time.Since(start))
}

// unused reports whether the Services, Ingresses and TLS Secrets that
// changed are nothing the served table depends on: no route names such a
// Service, no such Ingress was served or would be now (another
// controller's), and no served Ingress, Gateway or the default certificate
// names such a Secret. Their change then costs a cache update and nothing
// else.
func (c *Client) unused(w *watcher, cur *published, dirty dirtySet) bool {
	if len(dirty.secrets) > 0 && w.secretsReferenced(dirty.secrets, cur.table.Served, c.o.Translate.DefaultCertificate) {
		return false
	}
	if len(dirty.objects) > 0 {
		for _, rt := range cur.table.Routes {
			if rt.Service != "" && rt.Gateway == nil && dirty.objects[types.NamespacedName{Namespace: rt.Ingress.Namespace, Name: rt.Service}] {
				return false
			}
		}
		// An HTTPRoute may name a Service in another namespace, or one
		// that does not exist yet (its route answers 500 and names none):
		// ask the HTTPRoutes themselves.
		if w.namedByHTTPRoute(dirty.objects) {
			return false
		}
	}
	if len(dirty.ingresses) == 0 {
		return true
	}
	for _, n := range cur.table.Served {
		if dirty.ingresses[n] {
			return false
		}
	}
	var classes []*networkingv1.IngressClass
	for _, o := range w.ingressClasses.GetStore().List() {
		classes = append(classes, o.(*networkingv1.IngressClass))
	}
	opts := c.translateOptions()
	for n := range dirty.ingresses {
		if obj, ok, _ := w.ingresses.GetIndexer().GetByKey(n.String()); ok && routing.Serves(classes, opts, obj.(*networkingv1.Ingress)) {
			return false
		}
	}
	return true
}

// rebuildEndpoints is the rebuild of a change that touched only the
// EndpointSlices of services: their backends' endpoints are resolved again
// (routing.ResolveEndpoints) and nothing else; no Ingress is translated,
// the routes stay as they are, and skipper is not involved. It declines
// (false, and the caller rebuilds everything) when a backend would lose
// its last endpoint: whether that may be applied is the deletion guard's
// call, made on a full rebuild.
func (c *Client) rebuildEndpoints(start time.Time, w *watcher, cur *published, services map[types.NamespacedName]bool) bool {
	opts := c.translateOptions()
	type change struct {
		at      int
		backend routing.Backend
	}
	var changes []change
	var problems []routing.Problem
	// The table's backends are sorted by namespace, Service and port: each
	// Service's are found by a binary search, so an endpoint change costs
	// its Services' backends, not a walk over every backend.
	for name := range services {
		at, _ := slices.BinarySearchFunc(cur.table.Backends, name, func(b routing.Backend, n types.NamespacedName) int {
			return cmp.Or(strings.Compare(b.Key.Namespace, n.Namespace), strings.Compare(b.Key.Service, n.Name))
		})
		var svc *routing.Service
		var endpointSlices []*routing.EndpointSlice
		for i := at; i < len(cur.table.Backends); i++ {
			b := cur.table.Backends[i]
			if b.Key.Namespace != name.Namespace || b.Key.Service != name.Name {
				break
			}
			if i == at {
				if obj, ok, _ := w.services.GetIndexer().GetByKey(name.String()); ok {
					svc = obj.(*routing.Service)
				}
				endpointSlices = w.slicesForService(name.Namespace, name.Name)
			}
			nb, ps := routing.ResolveEndpoints(b.Key, svc, endpointSlices, opts)
			if len(cur.endpointsAt(i)) > 0 && len(nb.Endpoints) == 0 {
				return false
			}
			changes = append(changes, change{at: i, backend: nb})
			problems = append(problems, ps...)
		}
	}
	times := w.takeChanges()
	w.forgetGone(services)
	if len(changes) == 0 {
		// Slices of Services no route uses: a cache update, nothing more.
		return true
	}
	// The new endpoints go beside cur's Backends list, which earlier
	// tables share and which is never modified: the list is copied only
	// once maxPatchedBackends backends have new endpoints.
	table := cur.table
	patched := make(map[int][]routing.Endpoint, len(cur.patched)+len(changes))
	maps.Copy(patched, cur.patched)
	update := make(map[string][]string, len(changes))
	for _, ch := range changes {
		if !sameAddresses(cur.endpointsAt(ch.at), ch.backend.Endpoints) {
			update[ch.backend.Key.String()] = addresses(ch.backend.Endpoints)
		}
		patched[ch.at] = ch.backend.Endpoints
	}
	if len(patched) > maxPatchedBackends {
		table.Backends, patched = patchedBackends(cur.table.Backends, patched), nil
	}
	// The Services' endpoint problems are replaced by the new ones.
	table.Problems = slices.DeleteFunc(slices.Clone(cur.table.Problems), func(p routing.Problem) bool {
		return p.Kind == "Service" && services[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] &&
			(p.Reason == routing.NoEndpoints || p.Reason == routing.RefusedEndpoint)
	})
	table.Problems = routing.SortProblems(append(table.Problems, problems...))
	c.metrics.rebuild.Observe(time.Since(start).Seconds())
	c.metrics.rebuilds.WithLabelValues("endpoints").Inc()
	c.logProblems(table.Problems)
	c.mu.Lock()
	c.undelivered = append(c.undelivered, times...)
	c.mu.Unlock()
	// The objects the table stands for, for the guard: the same, with
	// these Services' slices as they are now.
	c.applyWith(table, SourceAPIServer, time.Time{}, cur.snap.withSlices(services, w.slicesForService), &endpointDelta{update: update, patched: patched})
	c.log.Debug("endpoints updated", "backends", len(changes), "duration", time.Since(start))
	return true
}

// reportGuard logs, counts and publishes what the guard decided.
func (c *Client) reportGuard(d guardDecision) {
	if len(d.held) > 0 {
		c.metrics.holds.Inc()
		first := d.held[0]
		c.log.Warn("deletion guard: holding removals it cannot explain as one user's act; additions and changes are applied, "+
			"the held objects are served as before",
			"held", describe(d.held), "since", first.since.UTC().Format(time.RFC3339), "until", first.until.UTC().Format(time.RFC3339),
			"window_ingresses", d.window[kindIngress], "window_httproutes", d.window[kindHTTPRoute], "window_services", d.window[kindService],
			"confirm", "POST /guard/confirm on the admin endpoint")
	}
	if len(d.released) > 0 {
		why := "hold period over"
		if d.confirmed {
			why = "confirmed by an operator"
		}
		c.metrics.released.WithLabelValues(releaseLabel(d.confirmed)).Add(float64(len(d.released)))
		c.log.Warn("deletion guard: applying held removals", "why", why, "removed", describe(d.released))
	}
	if len(d.back) > 0 {
		c.metrics.released.WithLabelValues("back").Add(float64(len(d.back)))
		c.log.Info("deletion guard: held objects are back in the cluster; no longer held", "back", describe(d.back))
	}
	held := c.guard.heldList()
	view := make([]HeldObject, 0, len(held))
	counts := map[string]int{}
	for _, h := range held {
		counts[h.ref.Kind]++
		view = append(view, HeldObject{
			Kind: h.ref.Kind, Namespace: h.ref.Namespace, Name: h.ref.Name,
			Since: h.since, ReleaseAt: h.until, Announced: h.announced, Routes: len(h.routes),
		})
	}
	for _, kind := range guardKinds {
		c.metrics.heldObjects.WithLabelValues(kind).Set(float64(counts[kind]))
	}
	if len(view) > 0 {
		c.metrics.holding.Set(1)
	} else {
		c.metrics.holding.Set(0)
		view = nil
	}
	c.mu.Lock()
	c.holdView = view
	c.mu.Unlock()
}

func releaseLabel(confirmed bool) string {
	if confirmed {
		return "confirmed"
	}
	return "expired"
}

// ConfirmHold applies every held removal now. It reports whether anything
// was held.
func (c *Client) ConfirmHold() bool {
	c.mu.Lock()
	holding := len(c.holdView) > 0
	c.mu.Unlock()
	if !holding {
		return false
	}
	select {
	case c.confirm <- struct{}{}:
	default:
	}
	return true
}

// apply makes table the current one. The endpoints go first, straight to
// the upstream layer (EndpointSink): a route skipper is about to install
// must find its backend's endpoints there. Routes go to skipper only when
// they changed; a table that differs only in its endpoints (the common
// case: pods come and go) costs skipper nothing.
func (c *Client) apply(table routing.Table, source string, savedAt time.Time, snap *routing.Snapshot) {
	c.applyWith(table, source, savedAt, servedFrom(snap), nil)
}

// endpointDelta is what an endpoint-only rebuild changed, known without
// comparing every backend of two tables.
type endpointDelta struct {
	update map[string][]string // as backendChanges gives it
	// patched are the endpoints that differ from the table's Backends
	// list (published.patched).
	patched map[int][]routing.Endpoint
}

// applyWith is apply with the objects as servedObjects and, for an
// endpoint-only change, the endpoint lists that changed (nil: compare the
// tables).
func (c *Client) applyWith(table routing.Table, source string, savedAt time.Time, snap *servedObjects, delta *endpointDelta) {
	c.mu.Lock()
	prev := c.current
	c.mu.Unlock()
	next := newPublished(prev, source, savedAt, table, c.o.Shards)
	next.snap = snap
	var update map[string][]string
	var removed []routing.BackendKey
	if delta != nil {
		update = delta.update
		next.patched = delta.patched
	} else {
		update, removed = backendChanges(prev, table)
	}
	if len(update) > 0 && c.o.Endpoints != nil {
		c.o.Endpoints.SetEndpoints(update)
	}
	now := time.Now()
	var live []time.Time
	c.mu.Lock()
	c.current = next
	routesChanged := prev == nil || prev.version != next.version
	switch {
	case routesChanged:
		// Live once every shard whose routes changed has installed its
		// table; backends no route names any more leave the upstream
		// layer then.
		p := pendingTable{version: next.version, times: c.undelivered, unused: removed}
		for s, st := range next.shards {
			if st.version == next.version {
				p.waiting = append(p.waiting, s)
			}
		}
		c.pending = append(c.pending, p)
		c.undelivered = nil
		close(c.newTable)
		c.newTable = make(chan struct{})
	case len(c.pending) > 0:
		// Only endpoints changed, while a route change is on its way:
		// live with it.
		last := &c.pending[len(c.pending)-1]
		last.times = append(last.times, c.undelivered...)
		c.undelivered = nil
	default:
		// Only endpoints changed, and skipper has every route: the
		// changes are live now.
		live, c.undelivered = c.undelivered, nil
	}
	c.mu.Unlock()
	for _, t := range live {
		c.metrics.convergence.Observe(max(now.Sub(t), 0).Seconds())
	}
	if len(update) > 0 {
		c.metrics.endpointUpdates.Add(float64(len(update)))
	}

	c.metrics.routes.Set(float64(len(table.Routes)))
	c.metrics.lastUpdate.Set(float64(time.Now().UnixNano()) / 1e9)
	c.metrics.setSource(source)
	if source == SourceAPIServer && c.o.Store != nil {
		if delta != nil {
			c.offers.later(c, next)
		} else {
			c.offers.now(c.o.Store, table)
		}
	}
	// An endpoint-only change is not a table for the status writers and
	// the access log (its routes, served Ingresses and statuses are the
	// previous table's), and giving them one would mean a Backends list
	// of its own on every endpoint change.
	if c.o.OnTable != nil && delta == nil {
		c.o.OnTable(table, source == SourceAPIServer)
	}
}

// endpointOfferInterval is how often, at most, the tables of endpoint-only
// changes are offered to the Store while endpoints keep changing: each
// offer is a table with a Backends list of its own (made from the
// patches), and each write it causes costs tens of milliseconds of CPU at
// 10,000 routes (it encodes and checks the changed parts and reads the
// rest back), taken from the same two cores that handle the next change.
// The stored endpoints matter only to a restart while the API server is
// down, when they are a starting point that the health checks and
// breakers correct; five seconds older is no worse a start. Route changes
// are offered at once.
const endpointOfferInterval = 5 * time.Second

// endpointOffers paces the Store offers of endpoint-only tables: the
// first after a quiet interval goes at once, the others wait for the
// interval and only the newest table then goes. A full rebuild's table
// goes at once, as always. Every offer is made holding mu, and the timer
// reads the current table holding it too: the Store keeps the table
// offered last, so an offer of an older table must never come after one
// of a newer (a route change offered while the timer was on its way).
type endpointOffers struct {
	mu    sync.Mutex
	last  time.Time
	armed bool
}

// now offers a table and notes when.
func (o *endpointOffers) now(store TableStore, t routing.Table) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.last = time.Now()
	store.Offer(t)
}

// later offers p's table now if the last offer is an interval old, else
// arranges for the table current then to be offered when it is.
func (o *endpointOffers) later(c *Client, p *published) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.armed {
		return
	}
	wait := endpointOfferInterval - time.Since(o.last)
	if wait <= 0 {
		o.last = time.Now()
		c.o.Store.Offer(p.fullTable())
		return
	}
	o.armed = true
	time.AfterFunc(wait, func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.armed, o.last = false, time.Now()
		c.mu.Lock()
		cur := c.current
		c.mu.Unlock()
		if cur != nil && cur.source == SourceAPIServer {
			c.o.Store.Offer(cur.fullTable())
		}
	})
}

// backendChanges are the endpoint lists of t that differ from prev's
// (addresses as the upstream layer takes them) and the backends prev had
// that t has not.
func backendChanges(prev *published, t routing.Table) (update map[string][]string, removed []routing.BackendKey) {
	endpointsAt := func(i int) []routing.Endpoint { return prev.endpointsAt(i) }
	var old []routing.Backend
	if prev != nil {
		old = prev.table.Backends
		// The translator hands back the same list when no backend came,
		// went or was resolved again (most Ingress changes): a walk over
		// every backend would find nothing.
		if len(prev.patched) == 0 && len(old) > 0 && sameBackends(old, t.Backends) {
			return nil, nil
		}
	}
	update = map[string][]string{}
	i, j := 0, 0
	for i < len(old) || j < len(t.Backends) {
		var cmp int
		switch {
		case i == len(old):
			cmp = 1
		case j == len(t.Backends):
			cmp = -1
		default:
			cmp = routing.CompareBackendKeys(old[i].Key, t.Backends[j].Key)
		}
		switch {
		case cmp < 0:
			removed = append(removed, old[i].Key)
			i++
		case cmp > 0:
			update[t.Backends[j].Key.String()] = addresses(t.Backends[j].Endpoints)
			j++
		default:
			if !sameAddresses(endpointsAt(i), t.Backends[j].Endpoints) {
				update[t.Backends[j].Key.String()] = addresses(t.Backends[j].Endpoints)
			}
			i, j = i+1, j+1
		}
	}
	return update, removed
}

func addresses(eps []routing.Endpoint) []string {
	out := make([]string, len(eps))
	for i, ep := range eps {
		out[i] = ep.Address
	}
	return out
}

func sameAddresses(a, b []routing.Endpoint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Address != b[i].Address {
			return false
		}
	}
	return true
}

// useSnapshot applies the stored table, if there is one and nothing better.
func (c *Client) useSnapshot() {
	if c.o.Store == nil {
		c.log.Warn("no state directory configured: nothing to serve until the API server answers")
		return
	}
	table, savedAt, err := c.o.Store.Load()
	if err != nil {
		c.log.Warn("no usable stored table: not ready until the API server answers", logging.KeyError, err)
		return
	}
	c.mu.Lock()
	have := c.current != nil
	c.mu.Unlock()
	if have {
		return
	}
	c.log.Info("serving the stored table", "routes", len(table.Routes), "saved_at", savedAt.UTC().Format(time.RFC3339), "age", time.Since(savedAt).Round(time.Second))
	c.apply(table, SourceSnapshot, savedAt, nil)
}

func (c *Client) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// SetNodeAddresses replaces routing.Options.NodeAddresses (the node's
// addresses, at which endpoints are refused) and rebuilds the table when
// they changed. The node watch calls it; the rebuild goroutine reads them.
func (c *Client) SetNodeAddresses(addrs []netip.Addr) {
	addrs = slices.Clone(addrs)
	if addrs == nil {
		addrs = []netip.Addr{}
	}
	c.mu.Lock()
	changed := c.nodeAddrs == nil || !slices.Equal(c.nodeAddrs, addrs)
	c.nodeAddrs = addrs
	c.fullRebuild = c.fullRebuild || changed
	c.mu.Unlock()
	if changed {
		c.signal()
	}
}

// translateOptions are Options.Translate with the latest node addresses.
func (c *Client) translateOptions() routing.Options {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.o.Translate
	if c.nodeAddrs != nil {
		o.NodeAddresses = c.nodeAddrs
	}
	return o
}

// logProblems logs problems that appeared and those that went away, once
// each, rather than every problem on every rebuild.
func (c *Client) logProblems(current []routing.Problem) {
	previous := c.lastProbs
	c.metrics.setProblems(previous, current)
	for _, p := range current {
		if !slices.Contains(previous, p) {
			c.log.Warn("object not fully routed: "+p.Message, logging.KeyKind, p.Kind,
				logging.KeyNamespace, p.Namespace, logging.KeyName, p.Name, "reason", string(p.Reason))
		}
	}
	for _, p := range previous {
		if !slices.Contains(current, p) {
			c.log.Info("problem resolved", logging.KeyKind, p.Kind,
				logging.KeyNamespace, p.Namespace, logging.KeyName, p.Name, "reason", string(p.Reason))
		}
	}
	c.lastProbs = current
}

// endpointsOnly reports whether what is pending is a change of
// EndpointSlices alone that the next rebuild handles without translating
// (rebuildEndpoints); the rebuild goroutine calls it.
// removalPending reports whether an Ingress, Service, IngressClass,
// EndpointSlice, HTTPRoute, Gateway or GatewayClass left since the last
// rebuild.
func (c *Client) removalPending() bool {
	w := c.currentWatcher()
	return w != nil && w.removalPending()
}

func (c *Client) endpointsOnly() bool {
	w := c.currentWatcher()
	if w == nil {
		return false
	}
	c.mu.Lock()
	full, cur := c.fullRebuild, c.current
	c.mu.Unlock()
	return c.resolveOnly(cur, full) && w.onlySlicesDirty()
}

// resolveOnly reports whether a change that does not touch the routes may
// be applied to cur without translating: cur was built from live objects
// (not the stored table, not with held objects overlaid), and no option
// changed (full).
func (c *Client) resolveOnly(cur *published, full bool) bool {
	return !full && cur != nil && cur.snap != nil && cur.source == SourceAPIServer && !c.guard.holding()
}
