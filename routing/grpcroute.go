package routing

import (
	"cmp"
	"fmt"
	"regexp"
	"strings"

	"github.com/zalando/skipper/eskip"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// GRPCRoute translation (see doc.go, "GRPCRoute"). A GRPCRoute is turned
// into the HTTPRoute it means on the wire, a gRPC call being an HTTP/2
// POST to "/<service>/<method>": a method match becomes a path match,
// header matches and the filters a GRPCRoute may carry are HTTPRoute's
// own. That form then goes through the HTTPRoute code (attachment,
// status, backends, precedence, emission), which tells the kinds apart
// where they differ: the ReferenceGrant's from-kind, the listener's
// allowed kinds, the status list, the route IDs and origin, a backend
// spoken to over h2c, and a rule that cannot be served answering
// UNAVAILABLE instead of 500.

const (
	// grpcRouteIDPrefix starts the IDs of GRPCRoute routes ("gw" for
	// HTTPRoutes), so the two kinds never share an ID.
	grpcRouteIDPrefix = "grpc"

	// grpcUnavailable is the gRPC status a rule that cannot be served
	// answers (14, UNAVAILABLE: the spec's answer for an invalid
	// backendRef), as a trailers-only response: HTTP 200 with the status
	// in the headers and no body.
	grpcUnavailable = "14"

	// grpcAnyName matches one service or method name in a path regexp:
	// gRPC names never contain '/'.
	grpcAnyName = "[^/]+"
)

// grpcRoutes converts GRPCRoutes (sorted, without duplicates) into their
// HTTPRoute forms, remembered in t.grpc, with what was ignored in
// t.grpcNotes.
func (t *gatewayTranslation) grpcRoutes(grs []*gatewayv1.GRPCRoute) []*gatewayv1.HTTPRoute {
	if len(grs) == 0 {
		return nil
	}
	t.grpc = make(map[*gatewayv1.HTTPRoute]bool, len(grs))
	out := make([]*gatewayv1.HTTPRoute, 0, len(grs))
	for _, gr := range grs {
		hr, note := grpcAsHTTPRoute(gr)
		t.grpc[hr] = true
		if note != "" {
			if t.grpcNotes == nil {
				t.grpcNotes = map[*gatewayv1.HTTPRoute]string{}
			}
			t.grpcNotes[hr] = note
		}
		out = append(out, hr)
	}
	return out
}

// grpcAsHTTPRoute is the HTTPRoute form of a GRPCRoute, and the first
// match it had to drop (with why). Nothing of gr is shared that the
// translation could modify: it modifies nothing.
//
// Method matches (type Exact by default):
//   - service and method: path Exact "/<service>/<method>";
//   - service alone: PathPrefix "/<service>" (element-wise: every method
//     of the service);
//   - method alone: the path regexp "/[^/]+/<method>";
//   - RegularExpression: the path regexp "/(?:<service>)/(?:<method>)",
//     an empty one "[^/]+"; either must compile (RE2), else the match is
//     dropped as a bad HTTPRoute path regexp is.
//
// The path matches rank as HTTPRoute's do (Exact, then regular
// expressions, then longer prefixes), which is the spec's order of the
// characters matched in service then method.
func grpcAsHTTPRoute(gr *gatewayv1.GRPCRoute) (*gatewayv1.HTTPRoute, string) {
	hr := &gatewayv1.HTTPRoute{
		TypeMeta:   metav1.TypeMeta{APIVersion: gatewayv1.GroupVersion.String(), Kind: kindGRPC},
		ObjectMeta: gr.ObjectMeta,
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gr.Spec.CommonRouteSpec,
			Hostnames:       gr.Spec.Hostnames,
		},
	}
	var note string
	hr.Spec.Rules = make([]gatewayv1.HTTPRouteRule, len(gr.Spec.Rules))
	for ri := range gr.Spec.Rules {
		gRule := &gr.Spec.Rules[ri]
		rule := &hr.Spec.Rules[ri]
		rule.Name = gRule.Name
		for mi := range gRule.Matches {
			m, err := grpcMatch(&gRule.Matches[mi])
			if err != "" {
				// Dropped where HTTPRoute matches are (parseGatewayMatch),
				// so a rule left without matches is dropped too instead
				// of matching every call; the note says why.
				note = cmp.Or(note, fmt.Sprintf("rule %d match %d: %s; the match is ignored", ri, mi, err))
				m = gatewayv1.HTTPRouteMatch{Path: &gatewayv1.HTTPPathMatch{Type: new(grpcDroppedMatch)}}
			}
			rule.Matches = append(rule.Matches, m)
		}
		rule.Filters = grpcFilters(gRule.Filters)
		for bi := range gRule.BackendRefs {
			br := &gRule.BackendRefs[bi]
			rule.BackendRefs = append(rule.BackendRefs, gatewayv1.HTTPBackendRef{BackendRef: br.BackendRef, Filters: grpcFilters(br.Filters)})
		}
	}
	return hr, note
}

// grpcDroppedMatch is a path match type parseGatewayMatch refuses: it
// stands for a method match that could not be read.
const grpcDroppedMatch gatewayv1.PathMatchType = "DroppedGRPCMethodMatch"

func grpcMatch(gm *gatewayv1.GRPCRouteMatch) (gatewayv1.HTTPRouteMatch, string) {
	var m gatewayv1.HTTPRouteMatch
	for _, h := range gm.Headers {
		typ := gatewayv1.HeaderMatchExact
		if h.Type != nil && *h.Type == gatewayv1.GRPCHeaderMatchRegularExpression {
			typ = gatewayv1.HeaderMatchRegularExpression
		}
		m.Headers = append(m.Headers, gatewayv1.HTTPHeaderMatch{Type: new(typ), Name: gatewayv1.HTTPHeaderName(h.Name), Value: h.Value})
	}
	mm := gm.Method
	if mm == nil {
		return m, ""
	}
	service, method := "", ""
	if mm.Service != nil {
		service = *mm.Service
	}
	if mm.Method != nil {
		method = *mm.Method
	}
	typ := gatewayv1.GRPCMethodMatchExact
	if mm.Type != nil {
		typ = *mm.Type
	}
	var path gatewayv1.HTTPPathMatch
	switch typ {
	case gatewayv1.GRPCMethodMatchExact:
		switch {
		case service != "" && method != "":
			path = gatewayv1.HTTPPathMatch{Type: new(gatewayv1.PathMatchExact), Value: new("/" + service + "/" + method)}
		case service != "":
			path = gatewayv1.HTTPPathMatch{Type: new(gatewayv1.PathMatchPathPrefix), Value: new("/" + service)}
		case method != "":
			path = gatewayv1.HTTPPathMatch{Type: new(gatewayv1.PathMatchRegularExpression), Value: new("/" + grpcAnyName + "/" + regexp.QuoteMeta(method))}
		default:
			return m, "a method match needs a service or a method"
		}
	case gatewayv1.GRPCMethodMatchRegularExpression:
		parts := [2]string{service, method}
		for i, p := range parts {
			if p == "" {
				parts[i] = grpcAnyName
				continue
			}
			if _, err := regexp.Compile(p); err != nil {
				return m, fmt.Sprintf("method match %q: invalid regular expression", p)
			}
			parts[i] = "(?:" + p + ")"
		}
		path = gatewayv1.HTTPPathMatch{Type: new(gatewayv1.PathMatchRegularExpression), Value: new("/" + parts[0] + "/" + parts[1])}
	default:
		return m, fmt.Sprintf("method match type %s is not supported", typ)
	}
	m.Path = &path
	return m, ""
}

// grpcFilters are a GRPCRoute's filters as HTTPRoute filters: the types a
// GRPCRoute may have (header modifiers, RequestMirror, ExtensionRef) have
// the same names and fields there; any other type stays unknown and is
// refused as an HTTPRoute's would be.
func grpcFilters(fs []gatewayv1.GRPCRouteFilter) []gatewayv1.HTTPRouteFilter {
	if len(fs) == 0 {
		return nil
	}
	out := make([]gatewayv1.HTTPRouteFilter, len(fs))
	for i, f := range fs {
		out[i] = gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterType(f.Type),
			RequestHeaderModifier: f.RequestHeaderModifier, ResponseHeaderModifier: f.ResponseHeaderModifier,
			RequestMirror: f.RequestMirror, ExtensionRef: f.ExtensionRef}
	}
	return out
}

// grpcFailFilters answer a gRPC call that a GRPCRoute rule cannot serve:
// UNAVAILABLE, trailers-only. A gRPC client reads an HTTP 500 as UNKNOWN.
func grpcFailFilters() []*eskip.Filter {
	return []*eskip.Filter{
		{Name: RestorePathName},
		{Name: "status", Args: []any{float64(200)}},
		{Name: ResponseHeadersName, Args: []any{
			"set", "Content-Type", "application/grpc",
			"set", "Grpc-Status", grpcUnavailable,
			"set", "Grpc-Message", "bulkhead: the route rule cannot be served",
		}},
	}
}

// grpcSays is a message of the HTTPRoute code as it is true of a
// GRPCRoute: its rules answer UNAVAILABLE where an HTTPRoute's answer 500.
func grpcSays(msg string) string {
	return strings.ReplaceAll(msg, "answers 500", "answers UNAVAILABLE")
}

// kindClaim is one route's attachment to a listener, for the rule
// between HTTPRoutes and GRPCRoutes.
type kindClaim struct {
	route *gatewayv1.HTTPRoute
	grpc  bool
	vhost string
}

// claims are the attachments of every route, by listener, as httpRoute
// will find them (before the rule between kinds).
func (t *gatewayTranslation) claims(routes []*gatewayv1.HTTPRoute) map[*gwListener][]kindClaim {
	out := map[*gwListener][]kindClaim{}
	for _, hr := range routes {
		hosts, _ := routeHosts(hr)
		for pi := range hr.Spec.ParentRefs {
			attached, _, _, _ := t.parentListeners(hr, &hr.Spec.ParentRefs[pi], hosts)
			for _, a := range attached {
				out[a.l] = append(out[a.l], kindClaim{route: hr, grpc: t.grpc[hr], vhost: a.vhost})
			}
		}
	}
	return out
}

// olderRoute reports whether a takes precedence over b between kinds: the
// older, then the first by "namespace/name".
func olderRoute(a, b *gatewayv1.HTTPRoute) bool {
	if c := a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time); c != 0 {
		return c < 0
	}
	return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
}

// dropKindConflicts applies the spec's rule between an HTTPRoute and a
// GRPCRoute attached to one listener with hostnames that intersect:
// exactly one is accepted, the older (then the first by namespace/name).
// It returns the attachments of hr that no route of the other kind takes
// precedence over, and why the others were dropped.
func (t *gatewayTranslation) dropKindConflicts(hr *gatewayv1.HTTPRoute, attached []attachKey) ([]attachKey, string) {
	grpc := t.grpc[hr]
	var kept []attachKey
	lost := ""
	for _, a := range attached {
		var winner *gatewayv1.HTTPRoute
		for _, c := range t.kindConflicts[a.l] {
			if c.grpc == grpc || !olderRoute(c.route, hr) {
				continue
			}
			if _, ok := intersectHost(c.vhost, a.vhost); ok {
				winner = c.route
				break
			}
		}
		if winner == nil {
			kept = append(kept, a)
			continue
		}
		if lost == "" {
			lost = fmt.Sprintf("%s %s/%s, older, is attached to listener %s with an intersecting hostname; of an HTTPRoute and a GRPCRoute only one is accepted",
				t.kind(winner), winner.Namespace, winner.Name, a.l.spec.Name)
		}
	}
	return kept, lost
}

// grpcBackend is the backend of a GRPCRoute's share: spoken to over h2c
// unless its Service port's appProtocol asks for TLS (then HTTP/2 through
// ALPN), since gRPC is HTTP/2 only.
func grpcBackend(b *backend) *backend {
	if b.protocol != protocolHTTP1 {
		return b
	}
	c := *b
	c.protocol = protocolH2C
	return &c
}
