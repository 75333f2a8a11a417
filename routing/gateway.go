package routing

import (
	"cmp"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/predicates"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Gateway API translation (see doc.go, "Gateway API"). It is a pass of its
// own after the Ingress one, recomputed on every call: it shares the
// Services (for backends), the host-key path tree and the emitted route
// shape with the Ingress routes, nothing else.

const (
	gatewayGroup = gatewayv1.GroupName
	kindGateway  = "Gateway"
	kindHTTP     = "HTTPRoute"
	kindGRPC     = "GRPCRoute"
	kindService  = "Service"
	kindSecret   = "Secret"

	// gatewayLeafStep spaces the total weights of the Gateway routes of one
	// path-tree node: skipper adds one per predicate other than the path
	// and Weight (at most 16 headers, 16 query params, method, host, path
	// regexp, port: 36), so a step of 64 keeps the precedence order
	// whatever a route's predicates are.
	gatewayLeafStep = 64

	internalErrorBody = "Internal Server Error\n"
)

type gatewayResult struct {
	routes     []Route
	problems   []Problem
	classes    []GatewayClassStatus
	gateways   []GatewayStatus
	httpRoutes []HTTPRouteStatus
	grpcRoutes []GRPCRouteStatus
	certs      []Certificate
}

type gwListener struct {
	gw       *gatewayv1.Gateway
	ref      types.NamespacedName
	spec     *gatewayv1.Listener
	host     string // lowercased; "" any
	badHost  bool   // the hostname is not a DNS name nor a wildcard of one
	accepted bool
	served   bool // accepted, and its certificate resolved if it is HTTPS
	kindOK   bool // HTTPRoute is among the supported kinds
	grpcOK   bool // GRPCRoute is among the supported kinds
	kindsOK  bool // allowedRoutes.kinds lists no other kind
	attached map[routeRef]struct{}
	addr     netip.Addr // the Gateway's own address (Options.GatewayAddresses); zero: shared

	// HTTPS: the certificate (of the first certificateRef) when every
	// certificateRef resolved, else the ResolvedRefs reason and message.
	tls                 bool
	cert                *keyPair
	secret              types.NamespacedName
	certReason, certMsg string
}

// gwMatch is one match of one rule on one listener and vhost, before it is
// split by backend.
type gwMatch struct {
	route    *gatewayv1.HTTPRoute // a GRPCRoute's HTTPRoute form when grpc
	grpc     bool
	ref      types.NamespacedName
	rule     int
	ruleName string
	match    int
	l        *gwListener
	vhost    string
	deep     bool     // the deep form of a wildcard vhost: host-less key and a Host regexp
	shadows  []string // hostnames of more specific listeners of the Gateway on the port (listener isolation)
	path     pathMatch
	regex    string // a RegularExpression path match; path is then prefix "/"
	pathType string
	method   string
	headers  []*eskip.Predicate
	queries  []*eskip.Predicate
	backends []gwBackend
	fail     bool // the rule answers 500 as a whole
	filters  []gwFilter
	mirrors  []gwMirror
	redirect *gwFilter // the rule answers with a redirect (when not fail)
	policy   []any     // bulkheadUpstream arguments: the rule's timeouts
	leaf     string
	weight   int
}

type gwBackend struct {
	index   int
	weight  int32
	b       *backend
	filters []*eskip.Filter // the backendRef's own filters
}

// gwFilter is a filter of a rule; prefix filters (a ReplacePrefixMatch)
// get the match's path prefix as one more argument, and the redirect
// filter the listener port, when the match is emitted.
type gwFilter struct {
	name   string
	args   []any
	prefix bool
}

// eskip is the filter of f for match m.
func (f gwFilter) eskip(m *gwMatch) *eskip.Filter {
	args := slices.Clone(f.args)
	if f.name == RedirectName {
		args = append(args, argListenerPort+"="+strconv.Itoa(int(m.l.spec.Port)))
	}
	if f.prefix {
		args = append(args, argPrefix+"="+m.path.path)
	}
	return &eskip.Filter{Name: f.name, Args: args}
}

// ruleParse is what rules found wrong: unsupported is the first thing not
// supported (the route stays Accepted, PartiallyInvalid); rejected the
// first value the spec says makes the route not Accepted (UnsupportedValue);
// refs* the first backend that did not resolve.
type ruleParse struct {
	unsupported, rejected string
	refsOK                bool
	refsReason, refsMsg   string
}

type gatewayTranslation struct {
	o        Options
	service  func(types.NamespacedName) *Service
	keyPair  func(*corev1.Secret) keyPair
	ns       map[string]*corev1.Namespace
	grants   []*gatewayv1.ReferenceGrant
	secrets  map[types.NamespacedName]*corev1.Secret
	gateways map[types.NamespacedName]*gatewayv1.Gateway
	lists    map[types.NamespacedName][]*gwListener
	// ports is the protocol each Gateway port is served with: that of the
	// oldest Gateway's first listener on it (see portOwners).
	ports map[int32]portOwner
	addrs map[types.NamespacedName]netip.Addr // each Gateway's own address, with Options.GatewayAddresses
	// grpc are the HTTPRoute forms of the GRPCRoutes (grpcroute.go), and
	// grpcNotes what their conversion ignored (the first thing).
	grpc      map[*gatewayv1.HTTPRoute]bool
	grpcNotes map[*gatewayv1.HTTPRoute]string
	// kindConflicts are the attachments of every route when there are
	// both HTTPRoutes and GRPCRoutes (see dropKindConflicts); nil else.
	kindConflicts map[*gwListener][]kindClaim
	res           gatewayResult
}

type portOwner struct {
	protocol gatewayv1.ProtocolType
	gateway  types.NamespacedName
}

// translateGateway translates the Gateway API objects of s. service looks
// a Service up by name (nil: none, or a duplicate); keyPair reads a
// Secret's key pair (checkKeyPair, or a memory of its results).
func translateGateway(s *Snapshot, o Options, service func(types.NamespacedName) *Service, keyPair func(*corev1.Secret) keyPair) gatewayResult {
	if len(s.GatewayClasses) == 0 || len(s.Gateways) == 0 && len(s.HTTPRoutes) == 0 && len(s.GRPCRoutes) == 0 {
		t := gatewayTranslation{o: o}
		t.classStatuses(s.GatewayClasses)
		return t.res
	}
	t := gatewayTranslation{o: o, service: service, keyPair: keyPair, ns: map[string]*corev1.Namespace{},
		secrets:  map[types.NamespacedName]*corev1.Secret{},
		gateways: map[types.NamespacedName]*gatewayv1.Gateway{}, lists: map[types.NamespacedName][]*gwListener{}}
	ours := t.classStatuses(s.GatewayClasses)
	for _, n := range s.Namespaces {
		if n != nil {
			t.ns[n.Name] = n
		}
	}
	for _, g := range s.ReferenceGrants {
		if g != nil {
			t.grants = append(t.grants, g)
		}
	}
	for _, sec := range uniqueObjects(s.Secrets, kindSecret, &t.res.problems) {
		t.secrets[objectKey(sec.Namespace, sec.Name)] = sec
	}
	gws := uniqueObjects(s.Gateways, "Gateway", &t.res.problems)
	for _, gw := range gws {
		if _, ok := ours[string(gw.Spec.GatewayClassName)]; !ok {
			continue
		}
		ref := objectKey(gw.Namespace, gw.Name)
		t.gateways[ref] = gw
		t.lists[ref] = t.listeners(gw)
	}
	t.ports = t.portOwners(gws)
	t.addrs = t.assignAddresses(gws)
	for ref, a := range t.addrs {
		for _, gl := range t.lists[ref] {
			gl.addr = a
		}
	}
	var matches []*gwMatch
	routes := uniqueObjects(s.HTTPRoutes, kindHTTP, &t.res.problems)
	grpcRoutes := t.grpcRoutes(uniqueObjects(s.GRPCRoutes, kindGRPC, &t.res.problems))
	if len(routes) > 0 && len(grpcRoutes) > 0 {
		t.kindConflicts = t.claims(slices.Concat(routes, grpcRoutes))
	}
	for _, hr := range routes {
		matches = append(matches, t.httpRoute(hr)...)
	}
	for _, hr := range grpcRoutes {
		matches = append(matches, t.httpRoute(hr)...)
	}
	for _, gw := range gws {
		if ref := objectKey(gw.Namespace, gw.Name); t.gateways[ref] != nil {
			t.res.gateways = append(t.res.gateways, t.gatewayStatus(gw, t.lists[ref]))
			for _, gl := range t.lists[ref] {
				if gl.served && gl.tls {
					t.res.certs = append(t.res.certs, Certificate{Port: gl.spec.Port, Hostname: gl.host, Gateway: ref,
						Listener: string(gl.spec.Name), Secret: gl.secret, Cert: gl.cert.cert, Key: gl.cert.key})
				}
			}
		}
	}
	slices.SortFunc(t.res.certs, compareCertificates)
	assignGatewayWeights(matches)
	for _, m := range matches {
		t.res.routes = append(t.res.routes, emitGatewayMatch(m)...)
	}
	return t.res
}

// uniqueObjects returns the objects sorted by namespace and name, those
// that share a name left out with a DuplicateObject problem.
func uniqueObjects[T any, P interface {
	*T
	metav1.Object
}](list []P, kind string, problems *[]Problem) []P {
	var out []P
	for _, o := range list {
		if o != nil {
			out = append(out, o)
		}
	}
	slices.SortFunc(out, func(a, b P) int {
		return cmp.Or(cmp.Compare(a.GetNamespace(), b.GetNamespace()), cmp.Compare(a.GetName(), b.GetName()))
	})
	uniq := out[:0:0]
	for i := 0; i < len(out); {
		j := i + 1
		for j < len(out) && out[j].GetNamespace() == out[i].GetNamespace() && out[j].GetName() == out[i].GetName() {
			j++
		}
		if j-i > 1 {
			*problems = append(*problems, duplicateProblem(kind, objectKey(out[i].GetNamespace(), out[i].GetName()), j-i))
		} else {
			uniq = append(uniq, out[i])
		}
		i = j
	}
	return uniq
}

func (t *gatewayTranslation) controller() string {
	if t.o.GatewayControllerName == "" {
		return DefaultGatewayControllerName
	}
	return t.o.GatewayControllerName
}

// classStatuses accepts every GatewayClass of our controllerName and
// returns their names.
func (t *gatewayTranslation) classStatuses(classes []*gatewayv1.GatewayClass) map[string]struct{} {
	ours := map[string]struct{}{}
	var dup []Problem
	for _, c := range uniqueObjects(classes, "GatewayClass", &dup) {
		if string(c.Spec.ControllerName) != t.controller() {
			continue
		}
		ours[c.Name] = struct{}{}
		t.res.classes = append(t.res.classes, GatewayClassStatus{Name: c.Name, Status: gatewayv1.GatewayClassStatus{
			Conditions: []metav1.Condition{condition(string(gatewayv1.GatewayClassConditionStatusAccepted), true,
				string(gatewayv1.GatewayClassReasonAccepted), "accepted by "+t.controller(), c.Generation)},
		}})
	}
	t.res.problems = append(t.res.problems, dup...)
	return ours
}

func condition(typ string, ok bool, reason, message string, gen int64) metav1.Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: st, Reason: reason, Message: message, ObservedGeneration: gen}
}

// listeners validates a Gateway's listeners and resolves the
// certificates of its HTTPS ones.
func (t *gatewayTranslation) listeners(gw *gatewayv1.Gateway) []*gwListener {
	ref := objectKey(gw.Namespace, gw.Name)
	out := make([]*gwListener, len(gw.Spec.Listeners))
	for i := range gw.Spec.Listeners {
		l := &gw.Spec.Listeners[i]
		gl := &gwListener{gw: gw, ref: ref, spec: l, attached: map[routeRef]struct{}{}}
		if l.Hostname != nil {
			vh, err := ruleVHost(string(*l.Hostname))
			if err != nil {
				gl.badHost = true
			}
			gl.host = vh
		}
		// Kinds: HTTPRoute and GRPCRoute, both by default on HTTP and
		// HTTPS listeners (the spec's default for those protocols).
		gl.kindsOK = true
		if l.AllowedRoutes == nil || len(l.AllowedRoutes.Kinds) == 0 {
			gl.kindOK = l.Protocol == gatewayv1.HTTPProtocolType || l.Protocol == gatewayv1.HTTPSProtocolType
			gl.grpcOK = gl.kindOK
		} else {
			for _, k := range l.AllowedRoutes.Kinds {
				switch {
				case k.Group != nil && *k.Group != gatewayGroup:
					gl.kindsOK = false
				case k.Kind == kindHTTP:
					gl.kindOK = true
				case k.Kind == kindGRPC:
					gl.grpcOK = true
				default:
					gl.kindsOK = false
				}
			}
		}
		if l.Protocol == gatewayv1.HTTPSProtocolType && tlsMode(l) == gatewayv1.TLSModeTerminate {
			gl.tls = true
			t.listenerCertificate(gl)
		}
		out[i] = gl
	}
	return out
}

func tlsMode(l *gatewayv1.Listener) gatewayv1.TLSModeType {
	if l.TLS == nil || l.TLS.Mode == nil || *l.TLS.Mode == "" {
		return gatewayv1.TLSModeTerminate
	}
	return *l.TLS.Mode
}

// listenerCertificate resolves every certificateRef of an HTTPS listener;
// the first one is served. One that does not resolve is the listener's
// ResolvedRefs=False reason and a problem of its Gateway.
func (t *gatewayTranslation) listenerCertificate(gl *gwListener) {
	l := gl.spec
	fail := func(reason gatewayv1.ListenerConditionReason, msg string) {
		gl.certReason, gl.certMsg = string(reason), msg
		t.res.problems = append(t.res.problems, Problem{Kind: kindGateway, Namespace: gl.ref.Namespace, Name: gl.ref.Name,
			Reason: Reason(reason), Message: fmt.Sprintf("listener %s: %s; the listener is not served", l.Name, msg)})
	}
	if l.TLS == nil || len(l.TLS.CertificateRefs) == 0 {
		fail(gatewayv1.ListenerReasonInvalidCertificateRef, "an HTTPS listener needs a certificateRef")
		return
	}
	var first *keyPair
	for i := range l.TLS.CertificateRefs {
		kp, secret, reason, msg := t.certificateRef(gl.gw, &l.TLS.CertificateRefs[i])
		if reason != "" {
			fail(reason, fmt.Sprintf("certificateRef %d: %s", i, msg))
			return
		}
		if i == 0 {
			first, gl.secret = kp, secret
		}
	}
	gl.cert = first
}

// certificateRef resolves one certificateRef of a Gateway listener: a
// core Secret, in the Gateway's namespace or one whose ReferenceGrant
// allows it, of type kubernetes.io/tls with a usable key pair.
func (t *gatewayTranslation) certificateRef(gw *gatewayv1.Gateway, ref *gatewayv1.SecretObjectReference) (*keyPair, types.NamespacedName, gatewayv1.ListenerConditionReason, string) {
	ns := gw.Namespace
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	name := objectKey(ns, string(ref.Name))
	fail := func(reason gatewayv1.ListenerConditionReason, format string, args ...any) (*keyPair, types.NamespacedName, gatewayv1.ListenerConditionReason, string) {
		return nil, name, reason, fmt.Sprintf(format, args...)
	}
	if ref.Group != nil && *ref.Group != "" && *ref.Group != "core" || ref.Kind != nil && *ref.Kind != kindSecret {
		group, kind := "", kindSecret
		if ref.Group != nil {
			group = string(*ref.Group)
		}
		if ref.Kind != nil {
			kind = string(*ref.Kind)
		}
		return fail(gatewayv1.ListenerReasonInvalidCertificateRef, "%s %s (group %q) is not a core Secret", kind, name, group)
	}
	if ns != gw.Namespace && !t.granted(kindGateway, gw.Namespace, ns, kindSecret, name.Name) {
		return fail(gatewayv1.ListenerReasonRefNotPermitted, "no ReferenceGrant in %s allows Gateways of %s to Secret %s", ns, gw.Namespace, name.Name)
	}
	sec := t.secrets[name]
	if sec == nil {
		return fail(gatewayv1.ListenerReasonInvalidCertificateRef, "Secret %s not found (only Secrets of type %s are read)", name, corev1.SecretTypeTLS)
	}
	kp := t.keyPair(sec)
	if kp.problem != "" {
		return fail(gatewayv1.ListenerReasonInvalidCertificateRef, "Secret %s %s", name, kp.problem)
	}
	return &kp, name, "", ""
}

// portOwners decides the protocol of each Gateway port: a per-node router
// serves a port either in clear or with TLS, for every Gateway. The
// oldest Gateway (then namespace/name) with a listener on a port that
// would be served but for this rule owns it with that listener's
// protocol; a listener of another Gateway with the other protocol is
// PortUnavailable. (Within one Gateway the spec's ProtocolConflict
// applies instead.)
func (t *gatewayTranslation) portOwners(gws []*gatewayv1.Gateway) map[int32]portOwner {
	ours := make([]*gatewayv1.Gateway, 0, len(t.gateways))
	for _, gw := range gws {
		if t.gateways[objectKey(gw.Namespace, gw.Name)] != nil {
			ours = append(ours, gw)
		}
	}
	// gws is sorted by namespace/name: a stable sort by age keeps that
	// order among equals.
	slices.SortStableFunc(ours, func(a, b *gatewayv1.Gateway) int {
		return a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time)
	})
	owners := map[int32]portOwner{}
	for _, gw := range ours {
		ls := t.lists[objectKey(gw.Namespace, gw.Name)]
		for i, gl := range ls {
			if _, ok := owners[gl.spec.Port]; ok {
				continue
			}
			if reason, _, _ := t.acceptance(ls, i, false); reason == string(gatewayv1.ListenerReasonAccepted) && (!gl.tls || gl.cert != nil) {
				owners[gl.spec.Port] = portOwner{protocol: gl.spec.Protocol, gateway: gl.ref}
			}
		}
	}
	return owners
}

// acceptance is the Accepted reason and message of a listener, and the
// Conflicted reason ("" none); owners: whether the port's owner (see
// portOwners) is checked.
func (t *gatewayTranslation) acceptance(all []*gwListener, i int, owners bool) (reason, msg, conflict string) {
	gl := all[i]
	l := gl.spec
	for j, o := range all {
		if j == i || o.spec.Port != l.Port {
			continue
		}
		if o.spec.Protocol != l.Protocol {
			conflict = string(gatewayv1.ListenerReasonProtocolConflict)
			break
		}
		if o.host == gl.host {
			conflict = string(gatewayv1.ListenerReasonHostnameConflict)
		}
	}
	reason, msg = string(gatewayv1.ListenerReasonAccepted), "accepted"
	switch {
	case gl.badHost:
		reason, msg = string(gatewayv1.ListenerReasonUnsupportedValue), fmt.Sprintf("hostname %q is not a DNS name nor a wildcard of one", *l.Hostname)
	case l.Protocol != gatewayv1.HTTPProtocolType && l.Protocol != gatewayv1.HTTPSProtocolType:
		reason, msg = string(gatewayv1.ListenerReasonUnsupportedProtocol), fmt.Sprintf("protocol %s is not supported (HTTP and HTTPS only)", l.Protocol)
	case l.Protocol == gatewayv1.HTTPSProtocolType && !gl.tls:
		reason, msg = string(gatewayv1.ListenerReasonUnsupportedValue), fmt.Sprintf("tls mode %s is not supported for HTTPS (Terminate only)", tlsMode(l))
	case l.Protocol == gatewayv1.HTTPSProtocolType && frontendValidation(gl.gw, l.Port):
		reason, msg = string(gatewayv1.ListenerReasonUnsupportedValue), "client certificate validation (spec.tls.frontend) is not supported"
	case !slices.Contains(t.o.GatewayPorts, l.Port):
		reason, msg = string(gatewayv1.ListenerReasonPortUnavailable), fmt.Sprintf("port %d is not one this router serves %v", l.Port, t.o.GatewayPorts)
	case conflict != "":
		reason, msg = conflict, "another listener has the same port and hostname (or another protocol on the port)"
	case owners && t.ports[l.Port].protocol != l.Protocol:
		own := t.ports[l.Port]
		reason, msg = string(gatewayv1.ListenerReasonPortUnavailable), fmt.Sprintf("port %d is served with protocol %s for Gateway %s, which is older", l.Port, own.protocol, own.gateway)
	}
	return reason, msg, conflict
}

// frontendValidation reports whether the Gateway asks for client
// certificates on port: not supported, and serving such a listener
// without would let unauthenticated clients through.
func frontendValidation(gw *gatewayv1.Gateway, port int32) bool {
	if gw.Spec.TLS == nil || gw.Spec.TLS.Frontend == nil {
		return false
	}
	f := gw.Spec.TLS.Frontend
	for _, pp := range f.PerPort {
		if pp.Port == port {
			return pp.TLS.Validation != nil
		}
	}
	return f.Default.Validation != nil
}

// listenerState is the status of one listener, and whether routes may
// attach to it (gl.served).
func (t *gatewayTranslation) listenerState(all []*gwListener, i int) gatewayv1.ListenerStatus {
	gl := all[i]
	l := gl.spec
	gen := gl.gw.Generation
	st := gatewayv1.ListenerStatus{Name: l.Name, SupportedKinds: []gatewayv1.RouteGroupKind{}}
	if gl.kindOK {
		st.SupportedKinds = append(st.SupportedKinds, gatewayv1.RouteGroupKind{Group: new(gatewayv1.Group(gatewayGroup)), Kind: kindHTTP})
	}
	if gl.grpcOK {
		st.SupportedKinds = append(st.SupportedKinds, gatewayv1.RouteGroupKind{Group: new(gatewayv1.Group(gatewayGroup)), Kind: kindGRPC})
	}
	reason, msg, conflict := t.acceptance(all, i, true)
	gl.accepted = reason == string(gatewayv1.ListenerReasonAccepted)
	certOK := !gl.tls || gl.cert != nil
	gl.served = gl.accepted && certOK
	st.Conditions = append(st.Conditions, condition(string(gatewayv1.ListenerConditionAccepted), gl.accepted, reason, msg, gen))
	if conflict != "" {
		st.Conditions = append(st.Conditions, condition(string(gatewayv1.ListenerConditionConflicted), true, conflict, msg, gen))
	} else {
		st.Conditions = append(st.Conditions, condition(string(gatewayv1.ListenerConditionConflicted), false, string(gatewayv1.ListenerReasonNoConflicts), "no conflicts", gen))
	}
	switch {
	case !certOK:
		st.Conditions = append(st.Conditions, condition(string(gatewayv1.ListenerConditionResolvedRefs), false, gl.certReason, gl.certMsg, gen))
	case !gl.kindsOK:
		st.Conditions = append(st.Conditions, condition(string(gatewayv1.ListenerConditionResolvedRefs), false, string(gatewayv1.ListenerReasonInvalidRouteKinds), "only HTTPRoute and GRPCRoute (gateway.networking.k8s.io) are supported", gen))
	default:
		st.Conditions = append(st.Conditions, condition(string(gatewayv1.ListenerConditionResolvedRefs), true, string(gatewayv1.ListenerReasonResolvedRefs), "resolved", gen))
	}
	switch {
	case gl.served:
		st.Conditions = append(st.Conditions, condition(string(gatewayv1.ListenerConditionProgrammed), true, string(gatewayv1.ListenerReasonProgrammed), "programmed", gen))
	case !gl.accepted:
		st.Conditions = append(st.Conditions, condition(string(gatewayv1.ListenerConditionProgrammed), false, string(gatewayv1.ListenerReasonInvalid), msg, gen))
	default:
		st.Conditions = append(st.Conditions, condition(string(gatewayv1.ListenerConditionProgrammed), false, string(gatewayv1.ListenerReasonInvalid), gl.certMsg, gen))
	}
	return st
}

// overlappingTLS is the OverlappingTLSConfig condition of a served HTTPS
// listener whose hostname overlaps another served HTTPS listener's of the
// same Gateway and port ("*.foo.com" and "a.foo.com"; a listener without
// hostname overlaps every other), nil when there is none: the condition
// is never set False. Both are served; a client that coalesces
// connections may send a request for one over the other's connection.
func overlappingTLS(all []*gwListener, i int) *metav1.Condition {
	gl := all[i]
	if !gl.served || !gl.tls {
		return nil
	}
	for j, o := range all {
		if j == i || !o.served || !o.tls || o.spec.Port != gl.spec.Port || o.host == gl.host {
			continue
		}
		if _, ok := intersectHost(gl.host, o.host); ok {
			c := condition(string(gatewayv1.ListenerConditionOverlappingTLSConfig), true, string(gatewayv1.ListenerReasonOverlappingHostnames),
				fmt.Sprintf("the hostname overlaps that of listener %s on the same port", o.spec.Name), gl.gw.Generation)
			return &c
		}
	}
	return nil
}

func (t *gatewayTranslation) gatewayStatus(gw *gatewayv1.Gateway, ls []*gwListener) GatewayStatus {
	gen := gw.Generation
	var st gatewayv1.GatewayStatus
	valid := 0
	for i := range ls {
		ls[i].accepted, ls[i].served = false, false
	}
	for i := range ls {
		lst := t.listenerState(ls, i)
		lst.AttachedRoutes = int32(len(ls[i].attached))
		st.Listeners = append(st.Listeners, lst)
		if ls[i].served {
			valid++
		}
	}
	for i := range ls {
		if c := overlappingTLS(ls, i); c != nil {
			st.Listeners[i].Conditions = append(st.Listeners[i].Conditions, *c)
		}
	}
	reason := string(gatewayv1.GatewayReasonAccepted)
	accepted := true
	switch {
	case len(gw.Spec.Addresses) > 0:
		accepted, reason = false, string(gatewayv1.GatewayReasonUnsupportedAddress)
	case valid == 0:
		accepted, reason = false, string(gatewayv1.GatewayReasonListenersNotValid)
	case valid < len(ls):
		reason = string(gatewayv1.GatewayReasonListenersNotValid)
	}
	st.Conditions = append(st.Conditions, condition(string(gatewayv1.GatewayConditionAccepted), accepted, reason, "", gen))
	publish := t.o.PublishAddresses
	if a, ok := t.addrs[objectKey(gw.Namespace, gw.Name)]; ok {
		publish = []string{a.String()}
	}
	for _, a := range publish {
		typ := gatewayv1.HostnameAddressType
		if _, err := netip.ParseAddr(a); err == nil {
			typ = gatewayv1.IPAddressType
		}
		st.Addresses = append(st.Addresses, gatewayv1.GatewayStatusAddress{Type: new(typ), Value: a})
	}
	switch {
	case !accepted:
		st.Conditions = append(st.Conditions, condition(string(gatewayv1.GatewayConditionProgrammed), false, string(gatewayv1.GatewayReasonInvalid), "not accepted", gen))
	case len(st.Addresses) == 0:
		st.Conditions = append(st.Conditions, condition(string(gatewayv1.GatewayConditionProgrammed), false, string(gatewayv1.GatewayReasonAddressNotAssigned), "the router has no publish address", gen))
	default:
		st.Conditions = append(st.Conditions, condition(string(gatewayv1.GatewayConditionProgrammed), true, string(gatewayv1.GatewayReasonProgrammed), "programmed", gen))
	}
	return GatewayStatus{Gateway: objectKey(gw.Namespace, gw.Name), Status: st}
}

// listenerAccepts decides whether routes may attach to a listener before
// they do: gatewayStatus computes the same again for the status. An
// accepted HTTPS listener whose certificate does not resolve takes routes
// (they count in attachedRoutes, as the spec wants) but serves none
// (certResolved).
func (t *gatewayTranslation) listenerAccepts(ls []*gwListener, i int) bool {
	reason, _, _ := t.acceptance(ls, i, true)
	return reason == string(gatewayv1.ListenerReasonAccepted)
}

// certResolved reports whether a listener has what it needs to serve: a
// certificate if it is HTTPS.
func certResolved(gl *gwListener) bool { return !gl.tls || gl.cert != nil }

func (t *gatewayTranslation) allowedNamespace(gl *gwListener, ns string) bool {
	from := gatewayv1.NamespacesFromSame
	var sel *metav1.LabelSelector
	if ar := gl.spec.AllowedRoutes; ar != nil && ar.Namespaces != nil {
		if ar.Namespaces.From != nil {
			from = *ar.Namespaces.From
		}
		sel = ar.Namespaces.Selector
	}
	switch from {
	case gatewayv1.NamespacesFromAll:
		return true
	case gatewayv1.NamespacesFromSame:
		return ns == gl.gw.Namespace
	case gatewayv1.NamespacesFromSelector:
		if sel == nil {
			return false
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			return false
		}
		var l map[string]string
		if n := t.ns[ns]; n != nil {
			l = n.Labels
		}
		return s.Matches(labels.Set(l))
	}
	return false
}

// intersectHost is the hostname a request must have to match both a
// listener hostname and a route hostname (lowercased; "" is any), and
// whether there is one. Gateway wildcards match one or more labels.
func intersectHost(listener, route string) (string, bool) {
	switch {
	case listener == "":
		return route, true
	case route == "":
		return listener, true
	case listener == route:
		return listener, true
	}
	lw, lok := strings.CutPrefix(listener, wildcardPrefix)
	rw, rok := strings.CutPrefix(route, wildcardPrefix)
	switch {
	case lok && !rok:
		return route, strings.HasSuffix(route, "."+lw)
	case !lok && rok:
		return listener, strings.HasSuffix(listener, "."+rw)
	case lok && rok:
		if strings.HasSuffix(lw, "."+rw) {
			return listener, true
		}
		if strings.HasSuffix(rw, "."+lw) {
			return route, true
		}
	}
	return "", false
}

// routeRef names a route of either kind: an HTTPRoute and a GRPCRoute may
// share a namespace and name.
type routeRef struct {
	grpc bool
	types.NamespacedName
}

// kind is the route's kind: a GRPCRoute travels through the HTTPRoute
// code in its HTTPRoute form (grpcroute.go), known by pointer.
func (t *gatewayTranslation) kind(hr *gatewayv1.HTTPRoute) string {
	if t.grpc[hr] {
		return kindGRPC
	}
	return kindHTTP
}

type attachKey struct {
	l     *gwListener
	vhost string
}

// routeHosts are the route's hostnames as vhosts ("" for none: any host),
// and what was wrong with one that is ignored.
func routeHosts(hr *gatewayv1.HTTPRoute) (hosts []string, bad string) {
	for _, h := range hr.Spec.Hostnames {
		vh, err := ruleVHost(string(h))
		if err != nil || vh == anyHostVHostKey {
			if bad == "" {
				bad = fmt.Sprintf("hostname %q is not a DNS name nor a wildcard of one; it is ignored", h)
			}
			continue
		}
		hosts = append(hosts, vh)
	}
	if len(hr.Spec.Hostnames) == 0 {
		hosts = []string{""}
	}
	return hosts, bad
}

// parentListeners resolves one parentRef of a route: the Gateway's
// listeners (nil, false when it is not one of our Gateways), the
// listeners and vhosts the route attaches to through it, and the Accepted
// reason and message when it attaches to none.
func (t *gatewayTranslation) parentListeners(hr *gatewayv1.HTTPRoute, pr *gatewayv1.ParentReference, hosts []string) (attached []attachKey, ours bool, reason, msg string) {
	if pr.Group != nil && *pr.Group != gatewayGroup || pr.Kind != nil && *pr.Kind != kindGateway {
		return nil, false, "", ""
	}
	ns := hr.Namespace
	if pr.Namespace != nil {
		ns = string(*pr.Namespace)
	}
	ls, ok := t.lists[objectKey(ns, string(pr.Name))]
	if !ok {
		return nil, false, "", "" // not one of our Gateways: not ours to report on
	}
	grpc := t.grpc[hr]
	var cands []*gwListener
	for _, gl := range ls {
		if pr.SectionName != nil && *pr.SectionName != gl.spec.Name || pr.Port != nil && *pr.Port != gl.spec.Port {
			continue
		}
		cands = append(cands, gl)
	}
	if len(cands) == 0 {
		return nil, true, string(gatewayv1.RouteReasonNoMatchingParent), "no listener matches the parentRef's sectionName and port"
	}
	allowed := false
	for _, gl := range cands {
		i := slices.Index(ls, gl)
		kindOK := gl.kindOK
		if grpc {
			kindOK = gl.grpcOK
		}
		if !t.listenerAccepts(ls, i) || !kindOK || !t.allowedNamespace(gl, hr.Namespace) {
			continue
		}
		allowed = true
		for _, h := range hosts {
			if vh, ok := intersectHost(gl.host, h); ok {
				attached = append(attached, attachKey{gl, vh})
			}
		}
	}
	switch {
	case !allowed:
		return nil, true, string(gatewayv1.RouteReasonNotAllowedByListeners), "no accepted listener allows this route (namespace, kind, or the listener is invalid)"
	case len(attached) == 0:
		return nil, true, string(gatewayv1.RouteReasonNoMatchingListenerHostname), "no hostname of the route matches a listener hostname"
	}
	return attached, true, string(gatewayv1.RouteReasonAccepted), "accepted"
}

// httpRoute attaches an HTTPRoute (or a GRPCRoute in its HTTPRoute form)
// to its parents, writes its status and returns its matches on every
// listener it attached to.
func (t *gatewayTranslation) httpRoute(hr *gatewayv1.HTTPRoute) []*gwMatch {
	ref := objectKey(hr.Namespace, hr.Name)
	grpc := t.grpc[hr]
	kind := t.kind(hr)
	gen := hr.Generation
	rules, rp := t.rules(hr)
	unsupported, refsOK, refsReason, refsMsg := rp.unsupported, rp.refsOK, rp.refsReason, rp.refsMsg
	hosts, bad := routeHosts(hr)
	unsupported = cmp.Or(t.grpcNotes[hr], unsupported, bad)
	if grpc {
		unsupported, rp.rejected = grpcSays(unsupported), grpcSays(rp.rejected)
	}
	var parents []gatewayv1.RouteParentStatus
	var out []*gwMatch
	seen := map[attachKey]struct{}{}
	for pi := range hr.Spec.ParentRefs {
		pr := hr.Spec.ParentRefs[pi]
		attached, ours, reason, msg := t.parentListeners(hr, &pr, hosts)
		if !ours {
			continue
		}
		ps := gatewayv1.RouteParentStatus{ParentRef: pr, ControllerName: gatewayv1.GatewayController(t.controller())}
		if len(attached) > 0 && t.kindConflicts != nil {
			var lost string
			attached, lost = t.dropKindConflicts(hr, attached)
			if len(attached) == 0 {
				reason, msg = string(gatewayv1.RouteReasonNotAllowedByListeners), lost
			}
		}
		accepted := reason == string(gatewayv1.RouteReasonAccepted)
		switch {
		case accepted && rp.rejected != "":
			accepted, reason, msg = false, string(gatewayv1.RouteReasonUnsupportedValue), rp.rejected
		case accepted && unsupported != "" && len(rules) == 0:
			accepted, reason, msg = false, string(gatewayv1.RouteReasonUnsupportedValue), unsupported
		}
		ps.Conditions = append(ps.Conditions, condition(string(gatewayv1.RouteConditionAccepted), accepted, reason, msg, gen))
		if accepted && unsupported != "" {
			ps.Conditions = append(ps.Conditions, condition(string(gatewayv1.RouteConditionPartiallyInvalid), true, string(gatewayv1.RouteReasonUnsupportedValue), unsupported, gen))
		}
		if refsOK {
			ps.Conditions = append(ps.Conditions, condition(string(gatewayv1.RouteConditionResolvedRefs), true, string(gatewayv1.RouteReasonResolvedRefs), "resolved", gen))
		} else {
			ps.Conditions = append(ps.Conditions, condition(string(gatewayv1.RouteConditionResolvedRefs), false, refsReason, refsMsg, gen))
		}
		parents = append(parents, ps)
		if !accepted && reason != string(gatewayv1.RouteReasonUnsupportedValue) {
			continue
		}
		for _, a := range attached {
			if accepted {
				a.l.attached[routeRef{grpc, ref}] = struct{}{}
			}
			if _, dup := seen[a]; dup || !certResolved(a.l) {
				continue // a listener without its certificate serves nothing
			}
			seen[a] = struct{}{}
			for _, r := range rules {
				for _, m := range r {
					c := *m
					c.l, c.vhost, c.shadows = a.l, a.vhost, overlapping(t.shadowing(a.l), a.vhost)
					out = append(out, &c)
					if strings.HasPrefix(a.vhost, wildcardPrefix) {
						d := c
						d.deep = true
						out = append(out, &d)
					}
				}
			}
		}
	}
	if len(parents) > 0 {
		if grpc {
			t.res.grpcRoutes = append(t.res.grpcRoutes, GRPCRouteStatus{Route: ref, Parents: parents})
		} else {
			t.res.httpRoutes = append(t.res.httpRoutes, HTTPRouteStatus{Route: ref, Parents: parents})
		}
	}
	for _, m := range []string{rp.rejected, unsupported} {
		if m != "" {
			t.res.problems = append(t.res.problems, Problem{Kind: kind, Namespace: hr.Namespace, Name: hr.Name,
				Reason: Reason(gatewayv1.RouteReasonUnsupportedValue), Message: m})
		}
	}
	if !refsOK {
		t.res.problems = append(t.res.problems, Problem{Kind: kind, Namespace: hr.Namespace, Name: hr.Name,
			Reason: Reason(refsReason), Message: refsMsg})
	}
	return out
}

// rules parses the route's rules into match templates (listener and vhost
// not yet set), one slice per rule, and says what was wrong with them.
func (t *gatewayTranslation) rules(hr *gatewayv1.HTTPRoute) (rules [][]*gwMatch, rp ruleParse) {
	rp.refsOK = true
	ref := objectKey(hr.Namespace, hr.Name)
	unsup := func(format string, args ...any) {
		if rp.unsupported == "" {
			rp.unsupported = fmt.Sprintf(format, args...)
		}
	}
	reject := func(format string, args ...any) {
		if rp.rejected == "" {
			rp.rejected = fmt.Sprintf(format, args...)
		}
	}
	for ri := range hr.Spec.Rules {
		rule := &hr.Spec.Rules[ri]
		name := ""
		if rule.Name != nil {
			name = string(*rule.Name)
		}
		fail := false
		var rfilters []gwFilter
		var mirrors []gwMirror
		var redirect *gwFilter
		rewrites, prefixFilter := 0, false
		for fi := range rule.Filters {
			f := &rule.Filters[fi]
			switch f.Type {
			case gatewayv1.HTTPRouteFilterRequestHeaderModifier, gatewayv1.HTTPRouteFilterResponseHeaderModifier:
				name, args, err := headerModifier(f)
				if err != "" {
					fail = true
					reject("rule %d filter %d: %s: %s; the rule answers 500", ri, fi, f.Type, err)
				} else if len(args) > 0 {
					rfilters = append(rfilters, gwFilter{name: name, args: args})
				}
			case gatewayv1.HTTPRouteFilterRequestRedirect:
				gf, err := redirectFilterArgs(f.RequestRedirect)
				if err != "" || redirect != nil {
					fail = true
					reject("rule %d filter %d: RequestRedirect: %s; the rule answers 500", ri, fi, cmp.Or(err, "only one RequestRedirect per rule"))
					continue
				}
				redirect, prefixFilter = &gf, prefixFilter || gf.prefix
			case gatewayv1.HTTPRouteFilterURLRewrite:
				gf, err := rewriteFilterArgs(f.URLRewrite)
				if rewrites++; err != "" || rewrites > 1 {
					fail = true
					reject("rule %d filter %d: URLRewrite: %s; the rule answers 500", ri, fi, cmp.Or(err, "only one URLRewrite per rule"))
					continue
				}
				if len(gf.args) > 0 {
					rfilters, prefixFilter = append(rfilters, gf), prefixFilter || gf.prefix
				}
			case gatewayv1.HTTPRouteFilterRequestMirror:
				mr, err, reason, msg := t.requestMirror(hr, f.RequestMirror)
				switch {
				case err != "":
					fail = true
					reject("rule %d filter %d: RequestMirror: %s; the rule answers 500", ri, fi, err)
				case reason != "":
					// The rule's own traffic is still served, without this copy.
					if rp.refsOK {
						rp.refsOK, rp.refsReason, rp.refsMsg = false, reason, fmt.Sprintf("rule %d filter %d: requestMirror backendRef: %s", ri, fi, msg)
					}
				default:
					mirrors = append(mirrors, mr)
				}
			case gatewayv1.HTTPRouteFilterCORS,
				gatewayv1.HTTPRouteFilterExternalAuth, gatewayv1.HTTPRouteFilterExtensionRef:
				fail = true
				unsup("rule %d: filter %s is not supported yet; the rule answers 500", ri, f.Type)
			default:
				fail = true
				reject("rule %d filter %d: unknown filter type %q; the rule answers 500", ri, fi, f.Type)
			}
		}
		switch {
		case redirect != nil && rewrites > 0:
			fail = true
			reject("rule %d: RequestRedirect and URLRewrite must not be used together; the rule answers 500", ri)
		case redirect != nil && len(rule.BackendRefs) > 0:
			fail = true
			reject("rule %d: RequestRedirect must not be used together with backendRefs; the rule answers 500", ri)
		}
		if prefixFilter {
			for mi := range rule.Matches {
				if p := rule.Matches[mi].Path; p != nil && p.Type != nil && *p.Type != gatewayv1.PathMatchPathPrefix {
					fail = true
					reject("rule %d match %d: ReplacePrefixMatch needs PathPrefix matches, not %s; the rule answers 500", ri, mi, *p.Type)
				}
			}
		}
		policy, err := timeoutPolicy(rule.Timeouts)
		if err != "" {
			fail = true
			reject("rule %d: timeouts: %s; the rule answers 500", ri, err)
		}
		var backends []gwBackend
		for bi := range rule.BackendRefs {
			br := &rule.BackendRefs[bi]
			w := int32(1)
			if br.Weight != nil {
				w = *br.Weight
			}
			b, reason, msg := t.backendRef(hr, &br.BackendRef)
			if reason != "" && rp.refsOK {
				rp.refsOK, rp.refsReason, rp.refsMsg = false, reason, fmt.Sprintf("rule %d backendRef %d: %s", ri, bi, msg)
			}
			var bfilters []*eskip.Filter
			for fi := range br.Filters {
				f := &br.Filters[fi]
				switch f.Type {
				case gatewayv1.HTTPRouteFilterRequestHeaderModifier, gatewayv1.HTTPRouteFilterResponseHeaderModifier:
					name, args, err := headerModifier(f)
					if err != "" {
						fail = true
						reject("rule %d backendRef %d filter %d: %s: %s; the rule answers 500", ri, bi, fi, f.Type, err)
					} else if len(args) > 0 {
						bfilters = append(bfilters, &eskip.Filter{Name: name, Args: args})
					}
				default:
					fail = true
					unsup("rule %d backendRef %d: backendRef filter %s is not supported yet; the rule answers 500", ri, bi, f.Type)
				}
			}
			backends = append(backends, gwBackend{index: bi, weight: w, b: b, filters: bfilters})
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gatewayv1.HTTPRouteMatch{{}}
		}
		var ms []*gwMatch
		for mi := range matches {
			m, err := parseGatewayMatch(&matches[mi])
			if err != "" {
				unsup("rule %d match %d: %s; the match is ignored", ri, mi, err)
				continue
			}
			m.route, m.grpc, m.ref, m.rule, m.ruleName, m.match = hr, t.grpc[hr], ref, ri, name, mi
			m.backends, m.fail, m.filters, m.mirrors, m.redirect, m.policy = backends, fail, rfilters, mirrors, redirect, policy
			ms = append(ms, m)
		}
		if len(ms) > 0 {
			rules = append(rules, ms)
		}
	}
	return rules, rp
}

// headerModifier is the filter name and arguments of a
// RequestHeaderModifier or ResponseHeaderModifier.
func headerModifier(f *gatewayv1.HTTPRouteFilter) (string, []any, string) {
	if f.Type == gatewayv1.HTTPRouteFilterResponseHeaderModifier {
		args, err := headerFilterArgs(f.ResponseHeaderModifier)
		return ResponseHeadersName, args, err
	}
	args, err := headerFilterArgs(f.RequestHeaderModifier)
	return RequestHeadersName, args, err
}

// parseGatewayMatch reads one HTTPRouteMatch; a non-empty string says what
// is not supported.
func parseGatewayMatch(hm *gatewayv1.HTTPRouteMatch) (*gwMatch, string) {
	m := &gwMatch{path: pathMatch{kind: prefixMatch, path: "/"}, pathType: string(gatewayv1.PathMatchPathPrefix)}
	if p := hm.Path; p != nil {
		typ := gatewayv1.PathMatchPathPrefix
		if p.Type != nil {
			typ = *p.Type
		}
		value := "/"
		if p.Value != nil {
			value = *p.Value
		}
		m.pathType = string(typ)
		switch typ {
		case gatewayv1.PathMatchExact:
			m.path.kind = exactMatch
		case gatewayv1.PathMatchPathPrefix:
		case gatewayv1.PathMatchRegularExpression:
			if _, err := compilePathRegexp(value); err != nil {
				return nil, fmt.Sprintf("path %q: invalid regular expression", value)
			}
			m.regex = value
			value = "/" // the host's root: see gatewayPathRank
		default:
			return nil, fmt.Sprintf("path match type %s is not supported", typ)
		}
		if value == "" || checkRoutablePath(value) != nil {
			return nil, fmt.Sprintf("path %q cannot be routed (not absolute or clean, or contains ':' or '*')", value)
		}
		if m.path.kind == prefixMatch && value != "/" {
			value = strings.TrimSuffix(value, "/")
		}
		m.path.path = value
	}
	if hm.Method != nil {
		m.method = string(*hm.Method)
	}
	seen := map[string]bool{}
	for _, h := range hm.Headers {
		key := strings.ToLower(string(h.Name))
		if seen[key] {
			continue // the spec: only the first match of a name counts
		}
		seen[key] = true
		if h.Type != nil && *h.Type == gatewayv1.HeaderMatchRegularExpression {
			if _, err := regexp.Compile(h.Value); err != nil {
				return nil, fmt.Sprintf("header %s: invalid regular expression", h.Name)
			}
			m.headers = append(m.headers, &eskip.Predicate{Name: predicates.HeaderRegexpName, Args: []any{string(h.Name), h.Value}})
		} else {
			m.headers = append(m.headers, &eskip.Predicate{Name: predicates.HeaderName, Args: []any{string(h.Name), h.Value}})
		}
	}
	seenQ := map[string]bool{}
	for _, q := range hm.QueryParams {
		if seenQ[string(q.Name)] {
			continue
		}
		seenQ[string(q.Name)] = true
		rx := "^" + regexp.QuoteMeta(q.Value) + "$"
		if q.Type != nil && *q.Type == gatewayv1.QueryParamMatchRegularExpression {
			if _, err := regexp.Compile(q.Value); err != nil {
				return nil, fmt.Sprintf("query param %s: invalid regular expression", q.Name)
			}
			rx = q.Value
		}
		m.queries = append(m.queries, &eskip.Predicate{Name: predicates.QueryParamName, Args: []any{string(q.Name), rx}})
	}
	return m, ""
}

// backendRef resolves a backendRef; a reason (RouteConditionReason) when it
// cannot be used, with the backend answering 500.
func (t *gatewayTranslation) backendRef(hr *gatewayv1.HTTPRoute, br *gatewayv1.BackendRef) (*backend, string, string) {
	ns := hr.Namespace
	if br.Namespace != nil {
		ns = string(*br.Namespace)
	}
	name := string(br.Name)
	port := ""
	if br.Port != nil {
		port = strconv.Itoa(int(*br.Port))
	}
	fail := func(reason gatewayv1.RouteConditionReason, format string, args ...any) (*backend, string, string) {
		b := unusable(name, port, Reason(reason), format, args...)
		return b, string(reason), b.unavailable
	}
	if br.Group != nil && *br.Group != "" && *br.Group != "core" || br.Kind != nil && *br.Kind != kindService {
		return fail(gatewayv1.RouteReasonInvalidKind, "backend kind is not a core Service")
	}
	if kind := t.kind(hr); ns != hr.Namespace && !t.granted(kind, hr.Namespace, ns, kindService, name) {
		return fail(gatewayv1.RouteReasonRefNotPermitted, "no ReferenceGrant in %s allows %ss of %s to Service %s", ns, kind, hr.Namespace, name)
	}
	if br.Port == nil {
		return fail(gatewayv1.RouteReasonBackendNotFound, "service %s/%s: port is required", ns, name)
	}
	b := resolveService(serviceBackendKey{namespace: ns, service: name, portNumber: *br.Port}, t.service(objectKey(ns, name)))
	if !b.usable() {
		return fail(gatewayv1.RouteReasonBackendNotFound, "%s", b.unavailable)
	}
	return b, "", ""
}

// granted reports whether a ReferenceGrant in namespace to allows objects
// of fromKind (a Gateway API kind) in namespace from to refer to the core
// object of toKind and name there.
func (t *gatewayTranslation) granted(fromKind, from, to, toKind, name string) bool {
	for _, g := range t.grants {
		if g.Namespace != to {
			continue
		}
		fromOK := false
		for _, f := range g.Spec.From {
			if f.Group == gatewayGroup && string(f.Kind) == fromKind && string(f.Namespace) == from {
				fromOK = true
			}
		}
		if !fromOK {
			continue
		}
		for _, to := range g.Spec.To {
			if (to.Group == "" || to.Group == "core") && string(to.Kind) == toKind && (to.Name == nil || string(*to.Name) == name) {
				return true
			}
		}
	}
	return false
}

// hostSpecificity orders vhosts as the spec's hostname precedence: an
// exact host first, then wildcards by the length of their suffix, then no
// host.
func hostSpecificity(vhost string) int {
	switch {
	case vhost == "":
		return 0
	case strings.HasPrefix(vhost, wildcardPrefix):
		return 1 + len(vhost)
	default:
		return 1000 + len(vhost)
	}
}

// compareGatewayMatches orders matches by the spec's precedence, best
// first: host, Exact before prefix, longer prefix, method, more headers,
// more query params, then the older route, namespace/name, rule and match
// order; port and the tree forms last (they never share a request).
func compareGatewayMatches(a, b *gwMatch) int {
	return cmp.Or(
		-cmp.Compare(hostSpecificity(a.vhost), hostSpecificity(b.vhost)),
		-cmp.Compare(gatewayPathRank(a), gatewayPathRank(b)),
		-cmp.Compare(len(a.path.path), len(b.path.path)),
		-cmp.Compare(hasInt(a.method != ""), hasInt(b.method != "")),
		-cmp.Compare(len(a.headers), len(b.headers)),
		-cmp.Compare(len(a.queries), len(b.queries)),
		a.route.CreationTimestamp.Time.Compare(b.route.CreationTimestamp.Time),
		cmp.Compare(a.ref.Namespace, b.ref.Namespace),
		cmp.Compare(a.ref.Name, b.ref.Name),
		cmp.Compare(a.rule, b.rule),
		cmp.Compare(a.match, b.match),
		cmp.Compare(a.l.spec.Port, b.l.spec.Port),
		cmp.Compare(a.l.ref.Namespace, b.l.ref.Namespace),
		cmp.Compare(a.l.ref.Name, b.l.ref.Name),
		cmp.Compare(a.l.spec.Name, b.l.spec.Name),
		cmp.Compare(a.vhost, b.vhost),
		cmp.Compare(a.path.path, b.path.path),
		cmp.Compare(a.pathType, b.pathType),
		cmp.Compare(a.regex, b.regex),
		cmp.Compare(hasInt(a.grpc), hasInt(b.grpc)),
	)
}

// gatewayPathRank orders the path matches that can share a tree node:
// Exact first, then RegularExpression, then PathPrefix. A regular
// expression is placed at its host's root ("/" prefix node), so the only
// prefix it meets there is "/": it ranks after Exact and after every
// longer PathPrefix (their nodes are tried first), before PathPrefix "/".
func gatewayPathRank(m *gwMatch) int {
	switch {
	case m.path.kind == exactMatch:
		return 2
	case m.regex != "":
		return 1
	}
	return 0
}

func (m *gwMatch) key() string {
	if m.deep || m.vhost == "" {
		return ruleHostKey(anyHostVHostKey)
	}
	return ruleHostKey(m.vhost)
}

// treePath is the path-tree node of the match: the host key and the path.
func (m *gwMatch) treePath() string {
	if m.path.kind == prefixMatch && m.path.path == "/" {
		return m.key()
	}
	return m.key() + m.path.path
}

// assignGatewayWeights gives the matches of each path-tree node total
// weights in precedence order, gatewayLeafStep apart, the lowest one step:
// above an Ingress route of the same node (0, or 1 for Exact).
func assignGatewayWeights(ms []*gwMatch) {
	for _, m := range ms {
		m.leaf = m.treePath()
	}
	slices.SortFunc(ms, func(a, b *gwMatch) int {
		return cmp.Or(cmp.Compare(a.leaf, b.leaf), compareGatewayMatches(a, b))
	})
	for i := 0; i < len(ms); {
		j := i
		for j < len(ms) && ms[j].leaf == ms[i].leaf {
			j++
		}
		for k := i; k < j; k++ {
			ms[k].weight = gatewayLeafStep * (j - k)
		}
		i = j
	}
}

// emitGatewayMatch is the routes of one match: one per backendRef with a
// weight (TrafficSegment shares when there are several), or one answering
// 500 for the whole rule.
func emitGatewayMatch(m *gwMatch) []Route {
	var total int64
	var live []gwBackend
	for _, b := range m.backends {
		if b.weight > 0 {
			total += int64(b.weight)
			live = append(live, b)
		}
	}
	if m.fail || m.redirect != nil || total == 0 {
		return []Route{gatewayRoute(m, gwBackend{index: -1}, nil)}
	}
	out := make([]Route, 0, len(live))
	var acc int64
	for _, b := range live {
		var seg *eskip.Predicate
		if len(live) > 1 {
			lo := float64(acc) / float64(total)
			acc += int64(b.weight)
			hi := float64(acc) / float64(total)
			seg = &eskip.Predicate{Name: predicates.TrafficSegmentName, Args: []any{lo, hi}}
		}
		out = append(out, gatewayRoute(m, b, seg))
	}
	return out
}

func gatewayRoute(m *gwMatch, b gwBackend, seg *eskip.Predicate) Route {
	origin := &GatewayOrigin{HTTPRoute: m.ref, Rule: m.rule, RuleName: m.ruleName, Match: m.match,
		Gateway: m.l.ref, Listener: string(m.l.spec.Name), Port: m.l.spec.Port, BackendRef: b.index}
	if m.grpc {
		origin.Kind = kindGRPC
	}
	r := Route{Gateway: origin, Host: m.vhost, VirtualHost: m.vhost, Path: cmp.Or(m.regex, m.path.path), PathType: m.pathType}
	def := &eskip.Route{Id: gatewayRouteID(m, b.index), Namespace: m.ref.Namespace, Name: m.ref.Name}
	var preds []*eskip.Predicate
	if m.path.kind == exactMatch {
		def.Path = m.treePath()
	} else {
		preds = append(preds, &eskip.Predicate{Name: predicates.PathSubtreeName, Args: []any{m.treePath()}})
	}
	// Host, Method and headers in the fields eskip's parser puts them in,
	// so that the route prints and parses back the same.
	others := 1 // the port predicate
	if m.deep {
		def.HostRegexps = []string{deepWildcardRegexp(m.vhost)}
		others++
	}
	if m.method != "" {
		def.Method = m.method
		others++
	}
	for _, h := range m.headers {
		name, value := h.Args[0].(string), h.Args[1].(string)
		if h.Name == predicates.HeaderRegexpName {
			if def.HeaderRegexps == nil {
				def.HeaderRegexps = map[string][]string{}
			}
			def.HeaderRegexps[name] = []string{value}
		} else {
			if def.Headers == nil {
				def.Headers = map[string]string{}
			}
			def.Headers[name] = value
		}
	}
	others += len(m.headers)
	if m.regex != "" {
		preds = append(preds, &eskip.Predicate{Name: PathRegexpName, Args: []any{m.regex}})
		others++
	}
	portArgs := []any{float64(m.l.spec.Port)}
	if m.l.addr.IsValid() {
		portArgs = append(portArgs, m.l.addr.String())
	}
	preds = append(preds, &eskip.Predicate{Name: GatewayPortName, Args: portArgs})
	if len(m.shadows) > 0 {
		args := make([]any, len(m.shadows))
		for i, h := range m.shadows {
			args[i] = h
		}
		preds = append(preds, &eskip.Predicate{Name: ListenerIsolationName, Args: args})
		others++
	}
	preds = append(preds, m.queries...)
	others += len(m.queries)
	if seg != nil {
		preds = append(preds, seg) // weighs -1 and counts one: 0 in all
	}
	preds = append(preds, &eskip.Predicate{Name: predicates.WeightName, Args: []any{float64(m.weight - others)}})
	def.Predicates = preds
	switch {
	case m.redirect != nil && !m.fail:
		// The redirect answers; the other filters (header modifiers) run
		// before it, and their response side on its answer.
		def.Filters = []*eskip.Filter{{Name: RestorePathName}}
		for _, f := range m.filters {
			def.Filters = append(def.Filters, f.eskip(m))
		}
		def.Filters = append(def.Filters, m.redirect.eskip(m))
		def.BackendType = eskip.ShuntBackend
		def.Shunt = true
	case m.grpc && (b.b == nil || !b.b.usable()):
		def.Filters = grpcFailFilters()
		def.BackendType = eskip.ShuntBackend
		def.Shunt = true
	case b.b == nil || !b.b.usable():
		def.Filters = []*eskip.Filter{
			{Name: RestorePathName},
			{Name: "status", Args: []any{float64(500)}},
			{Name: "inlineContent", Args: []any{internalErrorBody}},
		}
		def.BackendType = eskip.ShuntBackend
		def.Shunt = true
	default:
		r.Service, r.Port, r.Backend = b.b.service, b.b.port, b.b.key
		def.Filters = []*eskip.Filter{{Name: RestorePathName}}
		if len(m.policy) > 0 {
			def.Filters = append(def.Filters, &eskip.Filter{Name: upstreamPolicyFilter, Args: m.policy})
		}
		for _, f := range m.filters {
			def.Filters = append(def.Filters, f.eskip(m))
		}
		// Mirrors copy the request as the rule's filters left it; a
		// backendRef's own filters are for its share only.
		for _, mr := range m.mirrors {
			def.Filters = append(def.Filters, &eskip.Filter{Name: mirrorFilter, Args: []any{mr.key.String(), mr.fraction}})
			origin.Mirrors = append(origin.Mirrors, mr.key)
		}
		def.Filters = append(def.Filters, b.filters...)
		be := b.b
		if m.grpc {
			be = grpcBackend(be)
		}
		def.Filters = append(def.Filters, backendChooser(be, ""))
		def.BackendType = eskip.DynamicBackend
	}
	if b.b != nil && !b.b.usable() {
		r.Service, r.Port = b.b.service, b.b.port
	}
	r.Eskip = def
	return r
}

// deepWildcardRegexp matches the hosts of "*.foo.com" with two or more
// labels before "foo.com" (one label is the tree's "/foo.com/:label"),
// with an optional trailing dot and port, case-insensitively.
func deepWildcardRegexp(vhost string) string {
	suffix := strings.TrimPrefix(vhost, wildcardPrefix)
	return `(?i)^[a-z0-9_-]+(\.[a-z0-9_-]+)+\.` + regexp.QuoteMeta(suffix) + `\.?(:[0-9]+)?$`
}

func gatewayRouteID(m *gwMatch, backendIndex int) string {
	var b strings.Builder
	if m.grpc {
		b.WriteString(grpcRouteIDPrefix)
	} else {
		b.WriteString("gw")
	}
	writeIDPart(&b, m.ref.Namespace, "")
	writeIDPart(&b, m.ref.Name, "")
	rule := m.ruleName
	if rule == "" {
		rule = "rule" + strconv.Itoa(m.rule)
	}
	writeIDPart(&b, rule, "")
	writeIDPart(&b, "m"+strconv.Itoa(m.match), "")
	writeIDPart(&b, m.l.ref.Namespace, "")
	writeIDPart(&b, m.l.ref.Name, "")
	writeIDPart(&b, string(m.l.spec.Name), "")
	host := hostIDText(m.vhost)
	if m.deep {
		host = "deep." + host
	}
	writeIDPart(&b, host, "anyhost")
	be := "fail"
	switch {
	case backendIndex >= 0:
		be = "b" + strconv.Itoa(backendIndex)
	case m.redirect != nil && !m.fail:
		be = "redirect"
	}
	writeIDPart(&b, be, "")
	writeIDPart(&b, idHash(m.ref.Namespace, m.ref.Name, strconv.Itoa(m.rule), strconv.Itoa(m.match),
		m.l.ref.Namespace, m.l.ref.Name, string(m.l.spec.Name), m.vhost, strconv.FormatBool(m.deep), strconv.Itoa(backendIndex)), "")
	return b.String()
}

// mergeGatewayRoutes returns the Ingress routes and the Gateway routes in
// one list sorted by ID, without touching either input.
func mergeGatewayRoutes(ingress []*Route, gateway []Route) []*Route {
	out := make([]*Route, 0, len(ingress)+len(gateway))
	out = append(out, ingress...)
	for i := range gateway {
		out = append(out, &gateway[i])
	}
	slices.SortStableFunc(out, func(a, b *Route) int { return cmp.Compare(a.Eskip.Id, b.Eskip.Id) })
	return out
}

func hasInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// assignAddresses gives each of our Gateways one address of
// Options.GatewayAddresses (nil without a pool). A Gateway keeps the pool
// address its status already shows, unless an older Gateway (creation
// time, then namespace/name) shows it too; the others get the lowest free
// address in pool order, oldest first. So an address stays with its
// Gateway while the Gateway lives, whatever comes and goes around it.
// With more Gateways than addresses the rest share the pool round-robin,
// and are told apart by port and host alone, as without a pool.
func (t *gatewayTranslation) assignAddresses(gws []*gatewayv1.Gateway) map[types.NamespacedName]netip.Addr {
	pool := t.o.GatewayAddresses
	if len(pool) == 0 {
		return nil
	}
	var ours []*gatewayv1.Gateway
	for _, gw := range gws {
		if t.gateways[objectKey(gw.Namespace, gw.Name)] != nil {
			ours = append(ours, gw)
		}
	}
	slices.SortFunc(ours, func(a, b *gatewayv1.Gateway) int {
		return cmp.Or(a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	inPool := map[netip.Addr]bool{}
	for _, a := range pool {
		inPool[a] = true
	}
	out := make(map[types.NamespacedName]netip.Addr, len(ours))
	taken := map[netip.Addr]bool{}
	for _, gw := range ours {
		for _, sa := range gw.Status.Addresses {
			if a, err := netip.ParseAddr(sa.Value); err == nil && inPool[a] && !taken[a] {
				out[objectKey(gw.Namespace, gw.Name)], taken[a] = a, true
				break
			}
		}
	}
	next, shared := 0, 0
	for _, gw := range ours {
		ref := objectKey(gw.Namespace, gw.Name)
		if _, ok := out[ref]; ok {
			continue
		}
		for next < len(pool) && taken[pool[next]] {
			next++
		}
		if next < len(pool) {
			out[ref], taken[pool[next]] = pool[next], true
			continue
		}
		out[ref] = pool[shared%len(pool)]
		shared++
	}
	return out
}
