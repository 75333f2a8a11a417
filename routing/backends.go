package routing

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// backend is a resolved Ingress backend: the Service port routes send to,
// or why there is nowhere to send requests. Its endpoints are not part of
// it: they live beside the routes (Table.Backends), so that an endpoint
// change never touches a route.
type backend struct {
	service, port string // as written in the Ingress
	key           BackendKey
	// reason is empty when key is usable; otherwise the route answers
	// 503 (a generic body) and the Ingress gets a problem saying unavailable.
	reason      Reason
	unavailable string
	// protocol is how the pods of the Service port are spoken to, from
	// its appProtocol (see backendProtocol): protocolHTTP1 (empty),
	// protocolH2C or protocolTLS.
	protocol string
}

func (b *backend) usable() bool { return b.reason == "" }

func unusable(service, port string, reason Reason, format string, args ...any) *backend {
	return &backend{service: service, port: port, reason: reason, unavailable: fmt.Sprintf(format, args...)}
}

// serviceBackendKey names a Service port the way the Ingress does: by
// number, or (number 0) by name.
type serviceBackendKey struct {
	namespace, service string
	portNumber         int32
	portName           string
}

// port is the port as written, for messages and Route.Port.
func (k serviceBackendKey) port() string {
	if k.portNumber != 0 {
		return strconv.Itoa(int(k.portNumber))
	}
	return k.portName
}

func resourceKind(ref *corev1.TypedLocalObjectReference) string {
	if ref.APIGroup != nil && *ref.APIGroup != "" {
		return ref.Kind + "." + *ref.APIGroup
	}
	return ref.Kind
}

// resolveService resolves a backend naming a Service port against the
// Service of that name (nil when there is none, or several).
func resolveService(key serviceBackendKey, svc *Service) *backend {
	svcRef := key.namespace + "/" + key.service
	port := key.port()
	if svc == nil {
		return unusable(key.service, port, ServiceNotFound, "service %s not found", svcRef)
	}
	if svc.Type == corev1.ServiceTypeExternalName {
		return unusable(key.service, port, ExternalNameService,
			"service %s is of type ExternalName, which is not supported", svcRef)
	}
	if key.portNumber == 0 && key.portName == "" {
		return unusable(key.service, port, ServicePortNotFound, "backend of service %s names no port", svcRef)
	}
	svcPort, ok := findServicePort(svc, key)
	if !ok {
		return unusable(key.service, port, ServicePortNotFound, "service %s has no TCP port %q", svcRef, port)
	}
	return &backend{service: key.service, port: port,
		key:      BackendKey{Namespace: key.namespace, Service: key.service, Port: svcPort.Port},
		protocol: backendProtocol(svcPort.AppProtocol)}
}

// The protocols toward pods, as the bulkheadBackend filter's
// "protocol=" argument names them. Plain HTTP/1.1 is the default and is
// never written, so routes of ordinary Services read as before.
const (
	protocolHTTP1 = ""
	protocolH2C   = "h2c"
	protocolTLS   = "tls"
)

// backendProtocol maps a Service port's appProtocol to the protocol the
// router speaks to its pods:
//
//   - kubernetes.io/h2c (the standard name), h2c, grpc and http2 (Istio's
//     name for cleartext HTTP/2): HTTP/2 with prior knowledge, no TLS;
//   - https, tls and h2 (Contour's names): TLS, HTTP/2 or HTTP/1.1 as the
//     pod's ALPN answer says;
//   - anything else (empty, http, kubernetes.io/ws, kubernetes.io/wss,
//     and the domain-prefixed values Kubernetes allows for any purpose):
//     HTTP/1.1 in the clear, as before. An unknown value is not a
//     problem: it is the Service owner's to give, often for other tools.
//
// The comparison ignores case. WebSocket over TLS (kubernetes.io/wss)
// stays plain: upgrades bypass the round tripper that speaks TLS.
func backendProtocol(appProtocol *string) string {
	if appProtocol == nil {
		return protocolHTTP1
	}
	switch strings.ToLower(*appProtocol) {
	case "kubernetes.io/h2c", "h2c", "grpc", "http2":
		return protocolH2C
	case "https", "tls", "h2":
		return protocolTLS
	}
	return protocolHTTP1
}

// ResolveEndpoints chooses the endpoints of one Service port from the
// Service and its EndpointSlices (those labelled with its name; others are
// ignored). It is pure, and what an endpoint change costs: the data
// client calls it for the Services whose slices changed, translation for
// every backend. Problems are the Service's: NoEndpoints when none is
// usable, RefusedEndpoint for each address the router never sends to.
// With no Service, or no such TCP port, there are no endpoints and no
// problem (translation reports the route's).
func ResolveEndpoints(key BackendKey, svc *Service, endpointSlices []*EndpointSlice, o Options) (Backend, []Problem) {
	return resolveEndpoints(key, svc, endpointSlices, newRefusal(o))
}

func resolveEndpoints(key BackendKey, svc *Service, endpointSlices []*EndpointSlice, refuse refusal) (Backend, []Problem) {
	out := Backend{Key: key, Endpoints: []Endpoint{}}
	if svc == nil || svc.Type == corev1.ServiceTypeExternalName {
		return out, nil
	}
	svcPort, ok := findServicePort(svc, serviceBackendKey{namespace: key.Namespace, service: key.Service, portNumber: key.Port})
	if !ok {
		return out, nil
	}
	own := endpointSlices[:0:0]
	for _, s := range endpointSlices {
		if s != nil && s.Namespace == key.Namespace && s.Service == key.Service {
			own = append(own, s)
		}
	}
	endpoints, refused := chooseEndpoints(own, svcPort, refuse)
	svcRef := key.Namespace + "/" + key.Service
	port := strconv.Itoa(int(key.Port))
	var problems []Problem
	problem := func(reason Reason, format string, args ...any) {
		problems = append(problems, Problem{Kind: "Service", Namespace: key.Namespace, Name: key.Service,
			Reason: reason, Message: fmt.Sprintf(format, args...)})
	}
	for _, r := range refused {
		problem(RefusedEndpoint, "endpoint %s of service %s port %s refused: %s; endpoint skipped", r.addr, svcRef, port, r.why)
	}
	if len(endpoints) == 0 {
		if len(refused) > 0 {
			problem(RefusedEndpoint, "no endpoint left for service %s port %s: the refused ones are skipped and no other is ready", svcRef, port)
		} else {
			problem(NoEndpoints, "no ready endpoints for service %s port %s; its routes answer 503", svcRef, port)
		}
		return out, problems
	}
	out.Endpoints = endpoints
	return out, problems
}

func findServicePort(svc *Service, key serviceBackendKey) (corev1.ServicePort, bool) {
	for _, p := range svc.Ports {
		if protocolOrTCP(p.Protocol) != corev1.ProtocolTCP {
			continue // HTTP cannot go to a UDP or SCTP port
		}
		if key.portNumber != 0 && p.Port == key.portNumber || key.portNumber == 0 && p.Name == key.portName {
			return p, true
		}
	}
	return corev1.ServicePort{}, false
}

// candidate is one endpoint address with its conditions (as
// NewSliceEndpoint reads them).
type candidate struct {
	addr                        netip.AddrPort
	ready, serving, terminating bool
}

// rank orders copies of one address seen in several slices (which happens
// while a slice is being replaced): the most usable copy wins, and equal
// ranks have equal conditions, so the slice order does not matter.
func (c candidate) rank() int {
	r := 0
	if c.ready {
		r += 4
	}
	if c.serving {
		r += 2
	}
	if !c.terminating {
		r++
	}
	return r
}

// refusedEndpoint is an endpoint address the router never sends to.
type refusedEndpoint struct {
	addr netip.AddrPort
	why  string
}

// chooseEndpoints applies the Kubernetes rule: the ready endpoints; when none
// is ready, those serving and terminating (a pod shutting down gracefully is
// better than a 503). Refused addresses are taken out first, whatever their
// conditions, so that a refused ready endpoint cannot hide usable
// terminating ones; they are returned sorted, to be reported.
func chooseEndpoints(endpointSlices []*EndpointSlice, port corev1.ServicePort, refuse refusal) ([]Endpoint, []refusedEndpoint) {
	all := map[netip.AddrPort]candidate{}
	refusedAt := map[netip.AddrPort]string{}
	for _, s := range endpointSlices {
		for _, c := range sliceCandidates(s, port) {
			if why := refuse.why(c.addr.Addr()); why != "" {
				refusedAt[c.addr] = why
				continue
			}
			if old, seen := all[c.addr]; !seen || c.rank() > old.rank() {
				all[c.addr] = c
			}
		}
	}
	refused := make([]refusedEndpoint, 0, len(refusedAt))
	for addr, why := range refusedAt {
		refused = append(refused, refusedEndpoint{addr: addr, why: why})
	}
	slices.SortFunc(refused, func(a, b refusedEndpoint) int { return a.addr.Compare(b.addr) })
	chosen := filterCandidates(all, func(c candidate) bool { return c.ready })
	if len(chosen) == 0 {
		chosen = filterCandidates(all, func(c candidate) bool { return c.serving && c.terminating })
	}
	return chosen, refused
}

func filterCandidates(all map[netip.AddrPort]candidate, keep func(candidate) bool) []Endpoint {
	var kept []candidate
	for _, c := range all {
		if keep(c) {
			kept = append(kept, c)
		}
	}
	slices.SortFunc(kept, func(a, b candidate) int { return a.addr.Compare(b.addr) })
	out := make([]Endpoint, len(kept))
	for i, c := range kept {
		out[i] = Endpoint{Address: c.addr.String(), Ready: c.ready, Serving: c.serving, Terminating: c.terminating}
	}
	return out
}

// sliceCandidates reads the endpoints of one slice for a Service port. The
// slice port with the Service port's name (and protocol) gives the target
// port number; that is how named targetPorts resolve, per pod.
func sliceCandidates(s *EndpointSlice, port corev1.ServicePort) []candidate {
	if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
		return nil // FQDN slices, or garbage
	}
	target, ok := slicePort(s, port)
	if !ok {
		return nil
	}
	var out []candidate
	for _, ep := range s.Endpoints {
		ip, ok := endpointIP(ep, s.AddressType)
		if !ok {
			continue
		}
		out = append(out, candidate{
			addr:  netip.AddrPortFrom(ip, target),
			ready: ep.Ready, serving: ep.Serving, terminating: ep.Terminating,
		})
	}
	return out
}

func slicePort(s *EndpointSlice, port corev1.ServicePort) (uint16, bool) {
	for _, p := range s.Ports {
		if p.Port == nil || *p.Port < 1 || *p.Port > 65535 {
			continue
		}
		if deref(p.Name) == port.Name && protocolOrTCP(deref(p.Protocol)) == protocolOrTCP(port.Protocol) {
			return uint16(*p.Port), true
		}
	}
	return 0, false
}

// endpointIP reads the first address of an endpoint, the one Kubernetes
// says consumers may use; the others are fungible copies. Addresses that do
// not parse, do not fit the slice's family, or carry an IPv6 zone are
// skipped: they would not make a valid, unambiguous URL.
func endpointIP(ep SliceEndpoint, family discoveryv1.AddressType) (netip.Addr, bool) {
	if ep.Address == "" {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(ep.Address)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	wantIPv4 := family == discoveryv1.AddressTypeIPv4
	if ip.Is4() != wantIPv4 {
		return netip.Addr{}, false
	}
	return ip, true
}

func protocolOrTCP(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
