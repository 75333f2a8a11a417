package routing

import (
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// DefaultGatewayControllerName is the GatewayClass spec.controllerName
// served when Options.GatewayControllerName is empty.
const DefaultGatewayControllerName = "bulkhead.io/gateway-controller"

// GatewayClassStatus is the status the leader writes to one of our
// GatewayClasses. Conditions carry no lastTransitionTime: translation has
// no clock; the writer keeps the old time when a condition's status did
// not change, and sets now otherwise.
type GatewayClassStatus struct {
	Name   string                       `json:"name"`
	Status gatewayv1.GatewayClassStatus `json:"status"`
}

// GatewayStatus is the status of one of our Gateways (its class is ours).
type GatewayStatus struct {
	Gateway types.NamespacedName    `json:"gateway"`
	Status  gatewayv1.GatewayStatus `json:"status"`
}

// HTTPRouteStatus is the status of an HTTPRoute: one entry per parentRef
// that names one of our Gateways, in parentRefs order. The writer replaces
// only the entries of our controllerName in status.parents, leaving other
// controllers' entries alone.
type HTTPRouteStatus struct {
	Route   types.NamespacedName          `json:"route"`
	Parents []gatewayv1.RouteParentStatus `json:"parents"`
}

// GRPCRouteStatus is the status of a GRPCRoute, as HTTPRouteStatus is an
// HTTPRoute's.
type GRPCRouteStatus HTTPRouteStatus

// GatewayOrigin is where a Gateway API route came from: set on a Route
// instead of Ingress (which is then zero).
type GatewayOrigin struct {
	// Kind is the route's kind: empty for an HTTPRoute (so that stored
	// tables read as before), "GRPCRoute" for a GRPCRoute, which
	// HTTPRoute then names.
	Kind      string               `json:"kind,omitempty"`
	HTTPRoute types.NamespacedName `json:"httpRoute"`
	// Rule is the index of the rule in spec.rules, RuleName its name if any;
	// Match the index of the match in the rule's matches (0 when it has none).
	Rule     int    `json:"rule"`
	RuleName string `json:"ruleName,omitempty"`
	Match    int    `json:"match"`
	// Gateway, Listener and Port are the listener the route serves.
	Gateway  types.NamespacedName `json:"gateway"`
	Listener string               `json:"listener"`
	Port     int32                `json:"port"`
	// BackendRef is the index of the backendRef this route sends its share
	// of the rule's traffic to; -1 when the route answers for the whole
	// rule (no backend, all weights 0, or an unsupported filter).
	BackendRef int `json:"backendRef"`
	// Mirrors are the backends the route sends copies of its requests to
	// (the rule's RequestMirror filters: bulkheadMirror), in filter order.
	// Their endpoints are in Table.Backends too, though no route's Backend
	// may be one of them. Here rather than on Route, which is compared.
	// Not stored (json "-"): it only tells the translation which backends
	// to resolve, and a stored table keeps those in its Backends; the
	// stored format stays as it was.
	Mirrors []BackendKey `json:"-"`
}
