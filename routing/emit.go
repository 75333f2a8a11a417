package routing

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/predicates"
)

const (
	// exactPathWeight lifts an Exact route above a Prefix route of the same
	// host registered at the same node of skipper's path tree ("/foo" is a
	// node of both Path("/foo") and PathSubtree("/foo")): skipper tries the
	// routes of a node by descending weight.
	exactPathWeight = 1
)

// newRoute builds the emitted route of a rule.
func newRoute(r *rule) Route {
	route := Route{
		Ingress: r.ingress, Host: r.host, Path: r.path, PathType: r.pathType,
		VirtualHost: r.vhost,
		Service:     r.backend.service, Port: r.backend.port, Backend: r.backend.key,
	}
	def := &eskip.Route{
		Id:        ruleID(r),
		Namespace: r.ingress.Namespace,
		Name:      r.ingress.Name,
	}
	setPredicates(def, r)
	setBackend(def, r)
	route.Eskip = def
	return route
}

// newDefaultRoute builds the default backend route: no predicates at all,
// so it is a root leaf of skipper's matcher, tried only when no route with
// a path matches.
func newDefaultRoute(r *rule) Route {
	route := Route{
		Ingress: r.ingress, DefaultBackend: true,
		Service: r.backend.service, Port: r.backend.port, Backend: r.backend.key,
	}
	def := &eskip.Route{
		Id:        defaultBackendID(r),
		Namespace: r.ingress.Namespace,
		Name:      r.ingress.Name,
	}
	setBackend(def, r)
	route.Eskip = def
	return route
}

// setPredicates matches the host key of the rule's vhost followed by the
// rule path (see hostkey.go): Path for Exact, PathSubtree for Prefix. An
// Exact path goes into the Path field, where eskip's parser puts Path(), so
// that the route prints and parses back the same.
func setPredicates(def *eskip.Route, r *rule) {
	key := ruleHostKey(r.vhost)
	if r.match.kind == exactMatch {
		def.Path = key + r.match.path
		def.Predicates = []*eskip.Predicate{{Name: predicates.WeightName, Args: []any{float64(exactPathWeight)}}}
		return
	}
	subtree := key
	if r.match.path != "/" {
		subtree += r.match.path
	}
	def.Predicates = []*eskip.Predicate{{Name: predicates.PathSubtreeName, Args: []any{subtree}}}
}

// restorePathDef is the first filter of every Ingress route with a
// usable backend, one object for all of them (10,000 routes kept 10,000
// equal copies): it has no arguments, and routes are never modified once
// emitted (see Translator).
var restorePathDef = &eskip.Filter{Name: RestorePathName}

// unavailableBody is what skipper answers on its own errors: the proxy
// recognises that shape and answers generically.
const unavailableBody = "Service Unavailable\n"

// setBackend points def at its backend, or, when the backend cannot be
// used, makes it answer 503: a known path without backends is an outage to
// see, not a 404. The body is the generic status text, which the proxy
// replaces with its own generic answer carrying the request id: internet
// clients learn nothing of namespaces and Services; the reason
// (b.unavailable) is on /problems, in the log and in the metrics. Either way
// bulkheadRestorePath comes first: the pod (and any later filter) must see
// the request path as the client sent it. The 503 routes would not need it,
// but one rule for all routes is easier to check, and it keeps the path
// right for anything logging it later.
//
// A usable backend is named, not listed: the route ends in the
// bulkheadBackend filter, which picks one of the backend's current
// endpoints per request from the upstream layer, and skipper's dynamic
// backend, which sends where the filter said. The endpoints themselves are
// in Table.Backends, so an endpoint change leaves the route as it is and
// skipper's matcher is not rebuilt for it. A backend without endpoints
// answers 503 from the filter.
func setBackend(def *eskip.Route, r *rule) {
	b := r.backend
	if !b.usable() {
		def.Filters = []*eskip.Filter{
			{Name: RestorePathName},
			{Name: "status", Args: []any{float64(503)}},
			{Name: "inlineContent", Args: []any{unavailableBody}},
		}
		def.BackendType = eskip.ShuntBackend
		def.Shunt = true
		return
	}
	args := r.upstream.policyArgs
	def.Filters = append(make([]*eskip.Filter, 0, 2+min(len(args), 1)), restorePathDef)
	if len(args) > 0 {
		f := &eskip.Filter{Name: upstreamPolicyFilter, Args: make([]any, len(args))}
		for i, a := range args {
			f.Args[i] = a
		}
		def.Filters = append(def.Filters, f)
	}
	def.Filters = append(def.Filters, backendChooser(b, r.upstream.algorithm))
	def.BackendType = eskip.DynamicBackend
}

// backendChooser is the bulkheadBackend filter of a usable backend, for
// Ingress and Gateway API routes alike: the backend key, the algorithm
// when it is not the default, and the protocol toward the pods when it
// is not HTTP/1.1 ("protocol=h2c", or "protocol=tls" with
// "server-name=<service>.<namespace>.svc", the name a pod's certificate
// is checked against: pods are reached by IP).
func backendChooser(b *backend, algorithm string) *eskip.Filter {
	f := &eskip.Filter{Name: backendFilter, Args: []any{b.key.String()}}
	if algorithm != algLeastInFlight && algorithm != "" {
		f.Args = append(f.Args, algorithm)
	}
	switch b.protocol {
	case protocolH2C:
		f.Args = append(f.Args, "protocol="+protocolH2C)
	case protocolTLS:
		f.Args = append(f.Args, "protocol="+protocolTLS, "server-name="+b.key.Service+"."+b.key.Namespace+".svc")
	}
	return f
}

// ruleID names a route after its origin: readable parts, then a hash of
// the raw values, since sanitising may map different values to the same
// text ("/a-b" and "/a_b"). The hash also covers the vhost, which the host
// implies; it stays in so that route IDs stay the same across versions.
//
// The ID is written into a buffer on the stack and then copied once: a
// Translator keeps one per route for as long as the route stands, and a
// builder grown to a bound kept about 40 bytes more than the ID.
func ruleID(r *rule) string {
	var buf [160]byte
	b := append(buf[:0], "ing"...)
	b = appendIDPart(b, r.ingress.Namespace, "")
	b = appendIDPart(b, r.ingress.Name, "")
	b = appendIDPart(b, hostIDText(r.vhost), "anyhost")
	b = appendIDPart(b, r.match.path, "root")
	b = appendIDPart(b, pathTypeIDText(r.match.kind, r.pathType), "")
	b = appendIDPart(b, idHash(r.ingress.Namespace, r.ingress.Name, r.host, r.path, r.pathType, r.vhost), "")
	return string(b)
}

func defaultBackendID(r *rule) string {
	var buf [128]byte
	b := append(buf[:0], "ing"...)
	b = appendIDPart(b, r.ingress.Namespace, "")
	b = appendIDPart(b, r.ingress.Name, "")
	b = appendIDPart(b, "defaultbackend", "")
	b = appendIDPart(b, idHash(r.ingress.Namespace, r.ingress.Name, "defaultBackend"), "")
	return string(b)
}

func hostIDText(vhost string) string {
	if rest, ok := strings.CutPrefix(vhost, wildcardPrefix); ok {
		return "wildcard." + rest
	}
	return vhost
}

func pathTypeIDText(kind pathKind, pathType string) string {
	switch {
	case kind == exactMatch:
		return "exact"
	case pathType == "Prefix":
		return "prefix"
	default:
		return "implspecific"
	}
}

// writeIDPart writes what appendIDPart appends.
func writeIDPart(b *strings.Builder, s, placeholder string) {
	var buf [64]byte
	b.Write(appendIDPart(buf[:0], s, placeholder))
}

// appendIDPart appends "__" and s with every run of characters outside
// [a-zA-Z0-9] turned into one "_", trimmed; empty turns into placeholder.
func appendIDPart(b []byte, s, placeholder string) []byte {
	b = append(b, "__"...)
	start := len(b)
	pendingSep := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isLowerAlnum(toLowerASCII(c)) {
			if pendingSep && len(b) > start {
				b = append(b, '_')
			}
			pendingSep = false
			b = append(b, c)
		} else {
			pendingSep = true
		}
	}
	if len(b) == start {
		b = append(b, placeholder...)
	}
	return b
}

// idHash is FNV-1a (32 bit) over the parts, each ended by a 0 byte so that
// ("ab", "c") and ("a", "bc") differ.
func idHash(parts ...string) string {
	const (
		offset32 = 2166136261
		prime32  = 16777619
	)
	h := uint32(offset32)
	for _, p := range parts {
		for i := 0; i < len(p); i++ {
			h ^= uint32(p[i])
			h *= prime32
		}
		h *= prime32 // the 0 separator: h ^= 0 is a no-op
	}
	return fmt.Sprintf("%08x", h)
}

// sortRoutes sorts by ID and makes IDs unique in the (astronomically
// unlikely) case two origins share readable text and hash: later ones in
// origin order get "_2", "_3", ... so the result stays deterministic.
func sortRoutes(routes []*Route) {
	slices.SortFunc(routes, func(a, b *Route) int {
		return cmp.Or(cmp.Compare(a.Eskip.Id, b.Eskip.Id), compareOrigin(*a, *b))
	})
	if renameDuplicateIDs(routes) {
		slices.SortFunc(routes, func(a, b *Route) int { return cmp.Compare(a.Eskip.Id, b.Eskip.Id) })
	}
}

// renameDuplicateIDs gives routes sorted by ID and origin unique IDs, and
// reports whether it renamed any (they must then be sorted again). A
// renamed route is a copy: the original may be a Translator's, shared
// with earlier tables, and is never modified.
func renameDuplicateIDs(routes []*Route) bool {
	renamed := false
	for i := 1; i < len(routes); i++ {
		base := routes[i-1].Eskip.Id
		for n := 2; i < len(routes) && routes[i].Eskip.Id == base; n, i = n+1, i+1 {
			c := *routes[i].Eskip
			c.Id = base + "_" + strconv.Itoa(n)
			r := *routes[i]
			r.Eskip = &c
			routes[i] = &r
			renamed = true
		}
	}
	return renamed
}

func compareOrigin(a, b Route) int {
	return cmp.Or(
		cmp.Compare(a.Ingress.Namespace, b.Ingress.Namespace),
		cmp.Compare(a.Ingress.Name, b.Ingress.Name),
		cmp.Compare(a.Host, b.Host),
		cmp.Compare(a.Path, b.Path),
		cmp.Compare(a.PathType, b.PathType),
		cmp.Compare(a.VirtualHost, b.VirtualHost),
	)
}
