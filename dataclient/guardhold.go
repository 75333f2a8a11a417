package dataclient

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/zalando/skipper/predicates"
	"k8s.io/apimachinery/pkg/types"

	"github.com/bulkhead-router/bulkhead/routing"
)

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
		eff.EndpointSlices = slices.DeleteFunc(slices.Clone(live.EndpointSlices), func(es *routing.EndpointSlice) bool {
			return es != nil && replaced[serviceRef(es.Namespace, es.Service)]
		})
		for _, h := range g.heldList() {
			if replaced[h.ref] {
				eff.EndpointSlices = append(eff.EndpointSlices, h.slices...)
			}
		}
	}
	return &eff
}

// keepRoutes adds, to a table t translated from the overlay snap, what of
// the held objects could not be rebuilt from objects: a held HTTPRoute's
// routes as they were served (always: an HTTPRoute is not translated
// again once it left), and a held Ingress's when the served table came
// from disk, unless a live route now matches the same requests; and a
// held Service's endpoints as they were, where its backend now has none
// (also when served from disk). A kept route's backend that t lacks is
// resolved from snap (o the translation's options), so a held HTTPRoute's
// routes follow their Services' endpoints as a held Ingress's do, and a
// held Service's last endpoints reach them through the overlay or the
// step above; a held Ingress from disk keeps the endpoints it was stored
// with.
func (g *guard) keepRoutes(t routing.Table, snap *routing.Snapshot, o routing.Options) routing.Table {
	var origins, services []*heldObject
	for _, h := range g.heldList() {
		switch {
		case h.ref.Kind == kindIngress && h.ingress == nil, gatewayRoute(h.ref.Kind):
			origins = append(origins, h)
		case h.ref.Kind == kindService && h.service == nil && len(h.slices) == 0:
			services = append(services, h)
		}
	}
	if len(origins) == 0 && len(services) == 0 {
		return t
	}
	routes := slices.Clone(t.Routes)
	backends := slices.Clone(t.Backends)
	byID := make(map[string]int, len(routes))
	// A kept route gives way to a live route matching the same requests
	// (whatever its share of a traffic split); kept routes, served
	// together before, are told apart by their shares too.
	matches := make(map[string]bool, len(routes))
	kept := map[string]bool{}
	for i, rt := range routes {
		byID[rt.Eskip.Id] = i
		matches[matchKey(rt, false)] = true
	}
	backendAt := make(map[routing.BackendKey]int, len(backends))
	for i, b := range backends {
		backendAt[b.Key] = i
	}
	var resolve []int // backends of kept HTTPRoute routes, to resolve from snap
	for _, h := range origins {
		keys := map[routing.BackendKey]bool{}
		for _, old := range h.routes {
			if _, ok := byID[old.Eskip.Id]; ok || matches[matchKey(old, false)] || kept[matchKey(old, true)] {
				continue
			}
			byID[old.Eskip.Id] = len(routes)
			kept[matchKey(old, true)] = true
			routes = append(routes, old)
			keys[old.Backend] = true
		}
		for _, old := range h.backends {
			if _, ok := backendAt[old.Key]; !ok && keys[old.Key] {
				backendAt[old.Key] = len(backends)
				if gatewayRoute(h.ref.Kind) {
					resolve = append(resolve, len(backends))
				}
				backends = append(backends, old)
			}
		}
	}
	if len(resolve) > 0 && snap != nil {
		names := map[types.NamespacedName]bool{}
		for _, i := range resolve {
			names[types.NamespacedName{Namespace: backends[i].Key.Namespace, Name: backends[i].Key.Service}] = true
		}
		svcs := map[types.NamespacedName]*routing.Service{}
		for _, svc := range snap.Services {
			if svc == nil {
				continue
			}
			if n := (types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}); names[n] {
				svcs[n] = svc
			}
		}
		own := map[types.NamespacedName][]*routing.EndpointSlice{}
		for _, es := range snap.EndpointSlices {
			if es == nil {
				continue
			}
			if n := (types.NamespacedName{Namespace: es.Namespace, Name: es.Service}); names[n] {
				own[n] = append(own[n], es)
			}
		}
		for _, i := range resolve {
			k := backends[i].Key
			n := types.NamespacedName{Namespace: k.Namespace, Name: k.Service}
			backends[i], _ = routing.ResolveEndpoints(k, svcs[n], own[n], o)
		}
	}
	for _, h := range services {
		for _, old := range h.backends {
			if i, ok := backendAt[old.Key]; ok && len(backends[i].Endpoints) == 0 {
				backends[i] = old
			}
		}
	}
	slices.SortFunc(routes, func(a, b *routing.Route) int { return cmp.Compare(a.Eskip.Id, b.Eskip.Id) })
	slices.SortFunc(backends, func(a, b routing.Backend) int { return routing.CompareBackendKeys(a.Key, b.Key) })
	t.Routes = routes
	t.Backends = backends
	return t
}

// matchKey identifies the requests a route matches: its path (the host
// is part of the path key, or the default backend's empty one), method,
// host regexps, headers and predicates, without the weight that only
// ranks it, and without its TrafficSegment share unless shares.
func matchKey(rt *routing.Route, shares bool) string {
	var b strings.Builder
	e := rt.Eskip
	fmt.Fprintf(&b, "%s|%s|%q|%v|%v", e.Path, e.Method, e.HostRegexps, e.Headers, e.HeaderRegexps)
	for _, p := range e.Predicates {
		if p.Name == predicates.WeightName || !shares && p.Name == predicates.TrafficSegmentName {
			continue
		}
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
	s := fmt.Sprintf("%d Ingresses, %d HTTPRoutes, %d Services", counts[kindIngress], counts[kindHTTPRoute], counts[kindService])
	if counts[kindGRPCRoute] > 0 {
		s += fmt.Sprintf(", %d GRPCRoutes", counts[kindGRPCRoute])
	}
	if len(names) > 0 {
		s += " (" + strings.Join(names, ", ")
		if len(hs) > len(names) {
			s += fmt.Sprintf(", and %d more", len(hs)-len(names))
		}
		s += ")"
	}
	return s
}
