package routing

import (
	"context"
	"fmt"
	"net/http"

	skrouting "github.com/zalando/skipper/routing"
)

// GatewayPortName is the predicate every Gateway API route carries:
// BulkheadGatewayPort(80) matches only requests that arrived on the
// router's listener serving Gateway port 80. A per-node router listens on
// fixed ports, and a Gateway listener's routes must not answer requests of
// another listener (same host and path on ports 80 and 8080 are separate
// routes, with separate attachments).
//
// The contract with the proxy: for every request it accepted on a port that
// serves a Gateway listener port, it stores that Gateway port in the request
// context with WithGatewayPort before skipper's lookup. A request without it
// (no proxy wiring yet, a listener serving no Gateway port) matches no
// Gateway route: failing closed keeps one listener's routes off another.
const GatewayPortName = "BulkheadGatewayPort"

type gatewayPortKey struct{}

// WithGatewayPort returns ctx carrying the Gateway listener port the request
// arrived on.
func WithGatewayPort(ctx context.Context, port int32) context.Context {
	return context.WithValue(ctx, gatewayPortKey{}, port)
}

// GatewayPortFrom returns the Gateway listener port stored by
// WithGatewayPort.
func GatewayPortFrom(ctx context.Context) (int32, bool) {
	p, ok := ctx.Value(gatewayPortKey{}).(int32)
	return p, ok
}

// NewGatewayPortSpec returns the spec of the BulkheadGatewayPort predicate,
// for skipper's predicate registry.
func NewGatewayPortSpec() skrouting.PredicateSpec { return gatewayPortSpec{} }

type gatewayPortSpec struct{}

func (gatewayPortSpec) Name() string { return GatewayPortName }

func (gatewayPortSpec) Create(args []any) (skrouting.Predicate, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("%s: want one port argument, got %d", GatewayPortName, len(args))
	}
	f, ok := args[0].(float64)
	if !ok || f != float64(int32(f)) || f < 1 || f > 65535 {
		return nil, fmt.Errorf("%s: %v is not a port", GatewayPortName, args[0])
	}
	return gatewayPortPredicate(int32(f)), nil
}

type gatewayPortPredicate int32

func (p gatewayPortPredicate) Match(r *http.Request) bool {
	port, ok := GatewayPortFrom(r.Context())
	return ok && port == int32(p)
}
