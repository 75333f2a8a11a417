package routing

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/zalando/skipper/eskip"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// DefaultControllerName is the IngressClass spec.controller served when
// Options.ControllerName is empty.
const DefaultControllerName = "bulkhead.io/ingress-controller"

// Snapshot is every input of a translation: plain objects, YAML/JSON-serialisable
// (json tags; Services and EndpointSlices read and write as the Kubernetes
// objects), so a bug report is reproducible offline. Translate only reads it.
type Snapshot struct {
	IngressClasses []*networkingv1.IngressClass `json:"ingressClasses,omitempty"`
	Ingresses      []*networkingv1.Ingress      `json:"ingresses,omitempty"`
	Services       []*Service                   `json:"services,omitempty"`
	EndpointSlices []*EndpointSlice             `json:"endpointSlices,omitempty"`
	// HeldIngresses are Ingresses the deletion guard keeps serving after
	// they left the cluster (or stopped being ours) in a removal it cannot
	// explain. They are translated as served whatever their class, but lose
	// every conflict to the Ingresses above (an addition is never held back
	// by a removal that is), a live Ingress of the same namespace and name
	// replaces its held copy, and they are not listed in Table.Served (there
	// is no object to write status to).
	HeldIngresses []*networkingv1.Ingress `json:"heldIngresses,omitempty"`
	// Gateway API inputs (see doc.go, "Gateway API"); Namespaces only for
	// their labels (allowedRoutes selectors).
	GatewayClasses  []*gatewayv1.GatewayClass   `json:"gatewayClasses,omitempty"`
	Gateways        []*gatewayv1.Gateway        `json:"gateways,omitempty"`
	HTTPRoutes      []*gatewayv1.HTTPRoute      `json:"httpRoutes,omitempty"`
	GRPCRoutes      []*gatewayv1.GRPCRoute      `json:"grpcRoutes,omitempty"`
	ReferenceGrants []*gatewayv1.ReferenceGrant `json:"referenceGrants,omitempty"`
	Namespaces      []*corev1.Namespace         `json:"namespaces,omitempty"`
	// Secrets are the Secrets HTTPS listeners may name in
	// tls.certificateRefs: the data client lists those of type
	// kubernetes.io/tls only. They hold private keys: a snapshot written out
	// for a bug report must have their data removed first.
	Secrets []*corev1.Secret `json:"secrets,omitempty"`
}

// Options tune a translation.
type Options struct {
	// ControllerName is the IngressClass spec.controller we implement;
	// empty means DefaultControllerName.
	ControllerName string `json:"controllerName,omitempty"`
	// SelfAddresses are the router's own addresses (its pod IPs, the
	// addresses of its local interfaces) and NodeAddresses its Node's
	// (status.addresses). An endpoint at one of them is refused on every
	// port, with a RefusedEndpoint problem, as are loopback, link-local
	// (169.254.169.254 among them), unspecified, multicast and instance
	// metadata (fd00:ec2::254) endpoints, whatever these say.
	//
	// Every port, not only the router's own: the node's address reaches
	// what the node runs for itself (the kubelet, node exporters, hostPort
	// and hostNetwork daemons, the router's own hostPorts) and no list of
	// ports can know them all. The cost: pods on hostNetwork share the node
	// IP, so this router does not send to a hostNetwork backend on its own
	// node; the routers of the other nodes do (each refuses only its own
	// node), and a route keeps its other endpoints.
	SelfAddresses []netip.Addr `json:"selfAddresses,omitempty"`
	NodeAddresses []netip.Addr `json:"nodeAddresses,omitempty"`
	// GatewayControllerName is the GatewayClass spec.controllerName we
	// implement; empty means DefaultGatewayControllerName.
	GatewayControllerName string `json:"gatewayControllerName,omitempty"`
	// GatewayPorts are the Gateway listener ports this router serves; a
	// listener on another port is not accepted (PortUnavailable).
	GatewayPorts []int32 `json:"gatewayPorts,omitempty"`
	// PublishAddresses are the addresses reported in Gateway status (IPs
	// or hostnames, such as the load balancer's); without any a Gateway is
	// not Programmed (AddressNotAssigned).
	PublishAddresses []string `json:"publishAddresses,omitempty"`
	// GatewayAddresses, when set, is a pool of the router's own IPs, one
	// per Gateway: each of our Gateways gets one (see doc.go, "Gateway
	// addresses") as its only status address, and its routes match only
	// requests that arrived on that local address. Empty: every Gateway
	// has the PublishAddresses and Gateways are told apart by port and
	// host alone.
	GatewayAddresses []netip.Addr `json:"gatewayAddresses,omitempty"`
	// DefaultCertificate names the kubernetes.io/tls Secret served to a
	// TLS handshake no other certificate matches (see doc.go, "TLS");
	// zero: none, and such a handshake fails.
	DefaultCertificate types.NamespacedName `json:"defaultCertificate,omitzero"`
}

func (o Options) withDefaults() Options {
	if o.ControllerName == "" {
		o.ControllerName = DefaultControllerName
	}
	return o
}

// Reason classifies a Problem. The values are stable: they are used as
// metric labels and shown on the admin endpoint.
type Reason string

const (
	// ServiceNotFound: a backend names a Service that does not exist.
	ServiceNotFound Reason = "ServiceNotFound"
	// ServicePortNotFound: the Service has no port with the number or name
	// the backend asks for.
	ServicePortNotFound Reason = "ServicePortNotFound"
	// NoEndpoints: the Service port has no ready (nor serving-and-terminating)
	// endpoint; the route answers 503 until one appears.
	NoEndpoints Reason = "NoEndpoints"
	// ExternalNameService: the backend Service is of type ExternalName, which
	// is not supported.
	ExternalNameService Reason = "ExternalNameService"
	// UnsupportedBackend: the backend is a resource backend.
	UnsupportedBackend Reason = "UnsupportedBackend"
	// InvalidBackend: the backend names neither a Service nor a resource.
	InvalidBackend Reason = "InvalidBackend"
	// InvalidPath: a rule path cannot be routed (not absolute, not clean,
	// contains ':' or '*', or has an unknown pathType); the path is skipped.
	InvalidPath Reason = "InvalidPath"
	// InvalidHost: a rule host is not a DNS name nor a "*." wildcard of one;
	// the whole rule is skipped.
	InvalidHost Reason = "InvalidHost"
	// Conflict: another Ingress (or an earlier rule of the same one) already
	// routes the same host, path and path type; this rule is skipped.
	Conflict Reason = "Conflict"
	// DuplicateDefaultBackend: an older Ingress already provides
	// spec.defaultBackend; this one is ignored.
	DuplicateDefaultBackend Reason = "DuplicateDefaultBackend"
	// DuplicateObject: the snapshot holds more than one object with this
	// namespace and name; all of them are ignored, since none can be
	// preferred in an order-independent way.
	DuplicateObject Reason = "DuplicateObject"
	// RefusedEndpoint: an endpoint of the backend is an address the router
	// never sends to (itself, its node, loopback, link-local, instance
	// metadata, unspecified, multicast); it is skipped, and with no other
	// endpoint left the route answers 503.
	RefusedEndpoint Reason = "RefusedEndpoint"
)

// Problem is one object that could not be (fully) translated, and why.
// Everything else is still translated.
type Problem struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Reason    Reason `json:"reason"`
	Message   string `json:"message"`
}

func compareProblems(a, b Problem) int {
	return cmp.Or(
		cmp.Compare(a.Kind, b.Kind),
		cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.Name, b.Name),
		cmp.Compare(a.Reason, b.Reason),
		cmp.Compare(a.Message, b.Message),
	)
}

// SortProblems sorts problems the way Table.Problems are, without
// repeats; for tables assembled from parts (the data client's endpoint
// updates).
func SortProblems(ps []Problem) []Problem { return sortedProblems(ps) }

// sortedProblems sorts and removes repeats: a backend referenced by many
// paths of one Ingress is one problem, not many.
func sortedProblems(ps []Problem) []Problem {
	slices.SortFunc(ps, compareProblems)
	return slices.Compact(ps)
}

// Endpoint is one chosen backend address with the conditions it was chosen on.
type Endpoint struct {
	// Address is ip:port; IPv6 addresses are bracketed.
	Address     string `json:"address"`
	Ready       bool   `json:"ready"`
	Serving     bool   `json:"serving"`
	Terminating bool   `json:"terminating"`
}

// Route is one emitted route and where it came from.
type Route struct {
	Eskip *eskip.Route `json:"-"`
	// Ingress is the Ingress whose rule (or defaultBackend) produced it.
	Ingress types.NamespacedName `json:"ingress"`
	// Host, Path and PathType are as written in the Ingress: "" host means
	// any host; the default backend has Path "". A nil pathType is reported
	// as ImplementationSpecific.
	Host     string `json:"host"`
	Path     string `json:"path"`
	PathType string `json:"pathType"`
	// VirtualHost is the rule's host normalised (lowercase, no trailing
	// dot): "foo.com", "*.foo.com", or "" for host-less routes and the
	// default backend. Each rule is emitted once, for its own host: it
	// always corresponds to Host.
	VirtualHost    string `json:"virtualHost"`
	DefaultBackend bool   `json:"defaultBackend,omitempty"`
	// Service and Port name the backend as written (port number or name).
	Service string `json:"service"`
	Port    string `json:"port"`
	// Backend is the Service port the route sends to; zero when the route
	// answers 503 because its backend cannot be used (no such Service or
	// port, an ExternalName Service, a resource backend). Its endpoints
	// are in Table.Backends.
	Backend BackendKey `json:"backend"`
	// Gateway is set on routes of an HTTPRoute (Ingress is then zero).
	Gateway *GatewayOrigin `json:"gateway,omitempty"`
}

// BackendKey names a Service port routes send to, the port by number
// (resolved through the Service when the Ingress names it).
type BackendKey struct {
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	Port      int32  `json:"port"`
}

// IsZero reports whether k names no backend.
func (k BackendKey) IsZero() bool { return k == BackendKey{} }

// String is "namespace/service:port", the backend's name in the upstream
// layer, the route's bulkheadBackend filter, metrics and the admin views.
func (k BackendKey) String() string {
	return k.Namespace + "/" + k.Service + ":" + strconv.Itoa(int(k.Port))
}

// CompareBackendKeys orders keys by namespace, Service and port. It is
// the comparison of a full translation's backend lookups (one per route),
// so it stops at the first difference.
func CompareBackendKeys(a, b BackendKey) int {
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	if c := strings.Compare(a.Service, b.Service); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

// Backend is the endpoints of one Service port: those a request may go
// to, sorted by address; empty when there is none (its routes answer 503).
type Backend struct {
	Key       BackendKey `json:"key"`
	Endpoints []Endpoint `json:"endpoints"`
}

// Table is the result of a translation.
type Table struct {
	Routes   []*Route  // sorted by Eskip.Id; a Route is never modified once in a table, so tables share them
	Problems []Problem // sorted, without repeats
	// Served names every Ingress this controller serves, that is, selected
	// by class (see doc.go), whether or not it produced routes: also those
	// whose rules are all invalid or lost conflicts, and those dropped as
	// DuplicateObject. Sorted by namespace, then name; each once.
	Served []types.NamespacedName
	// Backends are the endpoints of every backend a route names (its
	// Backend, or one of its Gateway.Mirrors), sorted by key, each once. They change without the routes changing: an
	// endpoint change is a change of Backends alone.
	Backends []Backend
	// Certificates are what the HTTPS Gateway listeners serve: one per
	// listener that is programmed (accepted, its certificateRefs resolved),
	// sorted by port, then the most specific hostname first (see
	// CertificateFor). They are part of the stored last-known-good table,
	// private keys included: a router restarted while the API server is
	// unreachable must still terminate TLS. The splice of the stored table
	// (tablestore) finds Backends by its JSON key, not by its place.
	Certificates []Certificate
	// Gateway API status for the leader to write (see gateway_status.go),
	// each sorted by name: our GatewayClasses, our Gateways, and the
	// HTTPRoutes and GRPCRoutes with a parentRef to one of our Gateways. Status describes
	// the live objects, so it is not part of the stored last-known-good
	// table (json "-"): a table loaded from disk has none, and the status
	// writer writes only what a translation of live objects reports.
	GatewayClasses []GatewayClassStatus `json:"-"`
	Gateways       []GatewayStatus      `json:"-"`
	HTTPRoutes     []HTTPRouteStatus    `json:"-"`
	GRPCRoutes     []GRPCRouteStatus    `json:"-"`
}

// Backend returns the endpoints of k, if a route names it.
func (t Table) Backend(k BackendKey) (Backend, bool) {
	i, ok := slices.BinarySearchFunc(t.Backends, k, func(b Backend, k BackendKey) int { return CompareBackendKeys(b.Key, k) })
	if !ok {
		return Backend{}, false
	}
	return t.Backends[i], true
}

// EskipRoutes returns the skipper route definitions of the table, in order.
func (t Table) EskipRoutes() []*eskip.Route {
	out := make([]*eskip.Route, len(t.Routes))
	for i := range t.Routes {
		out[i] = t.Routes[i].Eskip
	}
	return out
}
