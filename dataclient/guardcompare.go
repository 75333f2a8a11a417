package dataclient

import (
	"cmp"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	"github.com/bulkhead-router/bulkhead/routing"
)

// nothingRemoved reports whether candidate serves every Ingress and
// HTTPRoute served serves and still has endpoints for every Service whose
// backends had some in served: then plan would find no removal to judge.
// Both tables list Served and Backends sorted, so these are merges,
// without maps; HTTPRoutes cost a map only where there are some. A list
// the translator handed back unchanged (the same slice: its incremental
// path keeps Served and Backends when no Ingress came or went and no
// backend was named anew or re-resolved) costs nothing. At 10,000
// backends, a binary search per backend was 3.4 ms of every Ingress
// change; the merge compares each key about twice.
func nothingRemoved(served, candidate routing.Table) bool {
	return nothingRemovedPatched(served, nil, candidate)
}

// nothingRemovedPatched is nothingRemoved of served with the endpoints of
// patched in place of those of its backends at those places.
func nothingRemovedPatched(served routing.Table, patched map[int][]routing.Endpoint, candidate routing.Table) bool {
	if !sameNames(served.Served, candidate.Served) {
		i := 0
		for _, n := range served.Served {
			for i < len(candidate.Served) && compareNames(candidate.Served[i], n) < 0 {
				i++
			}
			if i == len(candidate.Served) || candidate.Served[i] != n {
				return false
			}
		}
	}
	var liveRoutes map[objectRef]bool
	for _, rt := range served.Routes {
		if rt.Gateway == nil {
			continue
		}
		if liveRoutes == nil {
			liveRoutes = httpRoutesServed(candidate)
		}
		if !liveRoutes[gatewayRouteRef(rt.Gateway)] {
			return false
		}
	}
	if len(patched) == 0 && sameBackends(served.Backends, candidate.Backends) {
		return true
	}
	// j is the first of the candidate's backends of the Service of the
	// served backend at hand (any port), or where they would be.
	j := 0
	for i := range served.Backends {
		b := &served.Backends[i]
		eps := b.Endpoints
		if p, ok := patched[i]; ok {
			eps = p
		}
		if len(eps) == 0 {
			continue
		}
		for j < len(candidate.Backends) && compareServices(candidate.Backends[j].Key, b.Key) < 0 {
			j++
		}
		usable := false
		for k := j; k < len(candidate.Backends) && candidate.Backends[k].Key.Namespace == b.Key.Namespace &&
			candidate.Backends[k].Key.Service == b.Key.Service; k++ {
			if len(candidate.Backends[k].Endpoints) > 0 {
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

// compareServices orders backend keys by namespace and Service, as
// routing.CompareBackendKeys does before the port.
func compareServices(a, b routing.BackendKey) int {
	if a.Namespace == b.Namespace && a.Service == b.Service { // the common case, often the same strings
		return 0
	}
	return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Service, b.Service))
}

// sameNames and sameBackends report whether a and b are the same slice
// (not only equal).
func sameNames(a, b []types.NamespacedName) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func sameBackends(a, b []routing.Backend) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
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
		ref := serviceRef(es.Namespace, es.Service)
		if !exists[ref] || out[ref] {
			continue
		}
		for _, ep := range es.Endpoints {
			if ep.Address != "" && (ep.Ready || ep.Serving) {
				out[ref] = true
				break
			}
		}
	}
	return out
}
