package upstream

import (
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/routing"
)

// stats is what a retry scope (a backend, or a legacy group) counts: its
// retry budget and its metric series.
type stats struct {
	label     string
	budget    *budget
	requests  prometheus.Counter
	failures  prometheus.Counter
	retries   prometheus.Counter
	exhausted prometheus.Counter
	timedOut  [3]prometheus.Counter // connect, response-header, request
}

func newStats(m *metrics, label string, b *budget) stats {
	return stats{
		label:     label,
		budget:    b,
		requests:  m.requests.WithLabelValues(label),
		failures:  m.failures.WithLabelValues(label),
		retries:   m.retries.WithLabelValues(label),
		exhausted: m.exhausted.WithLabelValues(label),
		timedOut: [3]prometheus.Counter{
			m.timeouts.WithLabelValues(label, timeoutConnect),
			m.timeouts.WithLabelValues(label, timeoutResponseHeader),
			m.timeouts.WithLabelValues(label, timeoutRequest),
		},
	}
}

func (s *stats) timeouts(kind string) prometheus.Counter {
	switch kind {
	case timeoutConnect:
		return s.timedOut[0]
	case timeoutResponseHeader:
		return s.timedOut[1]
	}
	return s.timedOut[2]
}

// group (legacy: LB routes) is a set of interchangeable endpoints: the
// endpoints of one or more LB routes with the same endpoint list.
// Retries stay in a group.
type group struct {
	stats
	endpoints []string // sorted "ip:port"
}

func (g *group) counters() *stats { return &g.stats }

func (g *group) next(b *Breakers, current string, tried []string, onlyAvailable bool) *breaker {
	if ep := g.pick(b, current, tried, onlyAvailable); ep != "" {
		return b.get(ep)
	}
	return nil
}

// topology maps each endpoint to the group a retry may use. An endpoint
// listed by several routes with different endpoint lists maps to the
// intersection of those lists, which is valid for any of the routes.
type topology struct {
	byEndpoint map[string]*group
	// departed maps endpoints of the previous table that left this one to
	// their group then, for one generation: skipper runs post-processors
	// before the new table serves, so requests balanced on the old table
	// still go to such an endpoint, and it is typically a pod on its way
	// out. They must keep their retries.
	departed map[string]*group
}

// lookup finds the group of an endpoint, current or just departed.
func (t *topology) lookup(endpoint string) *group {
	if g := t.byEndpoint[endpoint]; g != nil {
		return g
	}
	return t.departed[endpoint]
}

// LabelFunc (legacy: LB routes) names the group of the routes sharing one
// endpoint list. It must have low cardinality (e.g. "namespace/service");
// the default is the smallest route ID among those routes.
type LabelFunc func(routeIDs []string) string

func defaultGroupLabel(ids []string) string { return ids[0] }

// postProcessor refuses dynamic routes without a bulkheadBackend filter
// and (legacy) wraps LB algorithms and publishes the topology.
type postProcessor struct {
	u *Upstream

	// guarded by u.mu, which also serialises Do
	budgets map[string]*budget
}

// Do implements routing.PostProcessor. It must run after
// loadbalancer.NewAlgorithmProvider(), which sets route.LBAlgorithm.
func (p *postProcessor) Do(routes []*routing.Route) []*routing.Route {
	routes = p.refuseUnchosen(routes)
	p.u.mu.Lock()
	defer p.u.mu.Unlock()

	type set struct {
		endpoints []string
		ids       []string
	}
	sets := map[string]*set{}
	for _, r := range routes {
		if r.BackendType != eskip.LBBackend || len(r.LBEndpoints) == 0 {
			continue
		}
		p.setAlgorithm(r)
		eps := make([]string, 0, len(r.LBEndpoints))
		for _, e := range r.LBEndpoints {
			eps = append(eps, e.Host)
		}
		slices.Sort(eps)
		eps = slices.Compact(eps)
		key := strings.Join(eps, ",")
		s := sets[key]
		if s == nil {
			s = &set{endpoints: eps}
			sets[key] = s
		}
		s.ids = append(s.ids, r.Id)
	}

	budgets := make(map[string]*budget, len(sets))
	groupsOf := map[string][]*group{}
	for _, s := range sets {
		slices.Sort(s.ids)
		label := p.u.cfg.GroupLabel(s.ids)
		g := p.newGroup(label, s.endpoints, budgets)
		for _, ep := range s.endpoints {
			groupsOf[ep] = append(groupsOf[ep], g)
		}
	}

	t := &topology{byEndpoint: make(map[string]*group, len(groupsOf))}
	intersections := map[string]*group{}
	active := make(map[string]struct{}, len(groupsOf))
	for ep, gs := range groupsOf {
		active[ep] = struct{}{}
		if len(gs) == 1 {
			t.byEndpoint[ep] = gs[0]
			continue
		}
		slices.SortFunc(gs, func(a, b *group) int {
			if c := strings.Compare(a.label, b.label); c != 0 {
				return c
			}
			return strings.Compare(strings.Join(a.endpoints, ","), strings.Join(b.endpoints, ","))
		})
		common := gs[0].endpoints
		for _, g := range gs[1:] {
			common = slices.DeleteFunc(slices.Clone(common), func(e string) bool {
				_, found := slices.BinarySearch(g.endpoints, e)
				return !found
			})
		}
		key := strings.Join(common, ",")
		g := intersections[key]
		if g == nil {
			g = p.newGroup(gs[0].label, common, budgets)
			intersections[key] = g
		}
		t.byEndpoint[ep] = g
	}
	prev := p.u.topo.Load()
	for ep, g := range prev.byEndpoint {
		if _, still := t.byEndpoint[ep]; !still {
			if t.departed == nil {
				t.departed = map[string]*group{}
			}
			t.departed[ep] = g
		}
	}
	p.u.topo.Store(t)

	for label := range p.budgets {
		if _, ok := budgets[label]; !ok && p.u.labels[label] == 0 {
			p.u.metrics.deleteGroup(label)
		}
	}
	p.budgets = budgets
	p.u.legacyActive = active
	// The endpoints of backends (SetEndpoints), and those that just left
	// them, are not this table's to prune.
	prune := active
	if len(p.u.refs) > 0 || len(p.u.departed) > 0 {
		prune = make(map[string]struct{}, len(active)+len(p.u.refs)+len(p.u.departed))
		for _, m := range []map[string]struct{}{active, p.u.departed} {
			for ep := range m {
				prune[ep] = struct{}{}
			}
		}
		for ep := range p.u.refs {
			prune[ep] = struct{}{}
		}
	}
	p.u.breakers.Prune(prune)
	p.u.breakers.established.Store(true)
	return routes
}

// refuseUnchosen drops every dynamic route that lacks the bulkheadBackend
// filter: skipper would send its requests wherever the client's Host
// header says (RefuseUnrouted stops plain requests, but upgrades bypass
// the round tripper).
func (p *postProcessor) refuseUnchosen(routes []*routing.Route) []*routing.Route {
	return slices.DeleteFunc(routes, func(r *routing.Route) bool {
		if r.BackendType != eskip.DynamicBackend {
			return false
		}
		for _, f := range r.Filters {
			if f.Name == BackendFilterName {
				return false
			}
		}
		p.u.log.Error("route dropped: a dynamic route must choose its endpoint with "+BackendFilterName, "route", r.Id)
		return true
	})
}

// setAlgorithm gives an LB route our balancer for the algorithms we
// implement (round robin, least in-flight), with the route's slow start;
// any other skipper algorithm is wrapped so it still steers around open
// breakers.
func (p *postProcessor) setAlgorithm(r *routing.Route) {
	switch r.LBAlgorithm.(type) {
	case *balancer, *lbWrapper:
		return // already done (a route object seen twice)
	}
	pol := p.u.policies.routePolicy(&r.Route)
	switch r.Route.LBAlgorithm {
	case "", AlgorithmLeastInFlight:
		r.LBAlgorithm = newBalancer(r, p.u.breakers, true, pol.SlowStart)
	case AlgorithmRoundRobin:
		r.LBAlgorithm = newBalancer(r, p.u.breakers, false, pol.SlowStart)
	default:
		if r.LBAlgorithm != nil {
			r.LBAlgorithm = &lbWrapper{inner: r.LBAlgorithm, b: p.u.breakers}
		}
	}
}

func (p *postProcessor) newGroup(label string, endpoints []string, budgets map[string]*budget) *group {
	b := budgets[label]
	if b == nil {
		b = p.budgets[label] // keep the window across table rebuilds
		if b == nil {
			b = newBudget(p.u.cfg.Budget, p.u.now)
		}
		budgets[label] = b
	}
	return &group{stats: newStats(p.u.metrics, label, b), endpoints: endpoints}
}

// lbWrapper steers the route's own algorithm away from endpoints whose
// breaker is open, unless more than half of the candidates are open
// (panic threshold), in which case the breakers are ignored.
type lbWrapper struct {
	inner routing.LBAlgorithm
	b     *Breakers
}

// Apply implements routing.LBAlgorithm.
func (w *lbWrapper) Apply(ctx *routing.LBContext) routing.LBEndpoint {
	eps := ctx.LBEndpoints
	n := len(eps)
	if n <= 1 {
		return w.inner.Apply(ctx)
	}
	var small [64]bool
	avail := small[:0]
	if n > len(small) {
		avail = make([]bool, 0, n)
	}
	down := 0
	for i := range eps {
		ok := w.b.Available(eps[i].Host)
		avail = append(avail, ok)
		if !ok {
			down++
		}
	}
	if down == 0 || down*2 > n {
		return w.inner.Apply(ctx)
	}
	filtered := make([]routing.LBEndpoint, 0, n-down)
	for i := range eps {
		if avail[i] {
			filtered = append(filtered, eps[i])
		}
	}
	// Every skipper algorithm chooses among ctx.LBEndpoints (consistentHash
	// skips ring entries missing from it), so narrowing it is enough.
	ctx.LBEndpoints = filtered
	e := w.inner.Apply(ctx)
	ctx.LBEndpoints = eps
	return e
}
