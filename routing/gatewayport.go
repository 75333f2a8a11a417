package routing

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"

	skrouting "github.com/zalando/skipper/routing"
)

// GatewayPortName is the predicate every Gateway API route carries:
// BulkheadGatewayPort(80) matches only requests that arrived on the
// router's listener serving Gateway port 80; BulkheadGatewayPort(80,
// "127.0.0.2") only those whose connection was also accepted on local
// address 127.0.0.2 (a Gateway's own address, Options.GatewayAddresses). A per-node router listens on
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

// gatewayConn is where a request arrived: the Gateway port and the local
// address of its connection.
type gatewayConn struct {
	port  int32
	local netip.Addr
}

// WithGatewayPort returns ctx carrying the Gateway listener port the request
// arrived on.
func WithGatewayPort(ctx context.Context, port int32) context.Context {
	return context.WithValue(ctx, gatewayPortKey{}, gatewayConn{port: port})
}

// WithGatewayConn is WithGatewayPort with the local address the connection
// was accepted on, which BulkheadGatewayPort(port, address) also checks
// (Options.GatewayAddresses).
func WithGatewayConn(ctx context.Context, port int32, local netip.Addr) context.Context {
	return context.WithValue(ctx, gatewayPortKey{}, gatewayConn{port: port, local: local.Unmap()})
}

// GatewayPortFrom returns the Gateway listener port stored by
// WithGatewayPort or WithGatewayConn.
func GatewayPortFrom(ctx context.Context) (int32, bool) {
	c, ok := ctx.Value(gatewayPortKey{}).(gatewayConn)
	return c.port, ok
}

// NewGatewayPortSpec returns the spec of the BulkheadGatewayPort predicate,
// for skipper's predicate registry.
func NewGatewayPortSpec() skrouting.PredicateSpec { return gatewayPortSpec{} }

type gatewayPortSpec struct{}

func (gatewayPortSpec) Name() string { return GatewayPortName }

func (gatewayPortSpec) Create(args []any) (skrouting.Predicate, error) {
	if len(args) != 1 && len(args) != 2 {
		return nil, fmt.Errorf("%s: want a port and optionally an address, got %d arguments", GatewayPortName, len(args))
	}
	f, ok := args[0].(float64)
	if !ok || f != float64(int32(f)) || f < 1 || f > 65535 {
		return nil, fmt.Errorf("%s: %v is not a port", GatewayPortName, args[0])
	}
	p := gatewayPortPredicate{port: int32(f)}
	if len(args) == 2 {
		s, _ := args[1].(string)
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %v is not an IP address", GatewayPortName, args[1])
		}
		p.local = a.Unmap()
	}
	return p, nil
}

type gatewayPortPredicate struct {
	port  int32
	local netip.Addr // zero: any
}

func (p gatewayPortPredicate) Match(r *http.Request) bool {
	c, ok := r.Context().Value(gatewayPortKey{}).(gatewayConn)
	return ok && c.port == p.port && (!p.local.IsValid() || c.local == p.local)
}
