package routing

import "slices"

// backendKeys are the backends routes name, sorted, each once.
func backendKeys(routes []Route) []BackendKey {
	keys := make([]BackendKey, 0, len(routes))
	for i := range routes {
		if k := routes[i].Backend; !k.IsZero() {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, CompareBackendKeys)
	return slices.Compact(keys)
}

// Translate turns a snapshot into a route table. It is pure: the result
// depends only on its arguments (not on their order), it does not modify
// them, and it neither panics nor stops on bad objects: each becomes a
// Problem and the rest is translated.
func Translate(s *Snapshot, o Options) Table {
	if s == nil {
		s = &Snapshot{}
	}
	o = o.withDefaults()
	var problems []Problem

	classes := newClassSelector(s.IngressClasses, o.ControllerName)
	ingresses, served := servedIngresses(s.Ingresses, classes, &problems)
	ingresses = append(ingresses, heldIngresses(s.HeldIngresses, served, &problems)...)
	backends := newBackendIndex(s.Services, s.EndpointSlices, newRefusal(o), &problems)
	rules, defaultBackend := collectRules(ingresses, backends, &problems)

	routes := make([]Route, 0, len(rules)+1)
	for _, r := range rules {
		routes = append(routes, newRoute(r))
	}
	if defaultBackend != nil {
		routes = append(routes, newDefaultRoute(defaultBackend))
	}
	sortRoutes(routes)
	backendList := backends.endpoints(backendKeys(routes), &problems)
	return Table{Routes: routes, Problems: sortedProblems(problems), Served: served, Backends: backendList}
}
