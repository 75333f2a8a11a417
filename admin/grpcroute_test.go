package admin

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/bulkhead-router/bulkhead/routing"
)

// /routes names a GRPCRoute's routes as grpcroute, never as an HTTPRoute of
// the same name, and says an unusable backend answers UNAVAILABLE.
func TestRoutesNameTheGRPCRoute(t *testing.T) {
	rt := routing.Route{
		Gateway: &routing.GatewayOrigin{Kind: "GRPCRoute", HTTPRoute: types.NamespacedName{Namespace: "shop", Name: "echo"}, Rule: 0, Match: 1,
			Gateway: types.NamespacedName{Namespace: "infra", Name: "edge"}, Listener: "http", Port: 80, BackendRef: 0},
		Host: "grpc.shop.com", Path: "/echo.Echo/Echo", PathType: "Exact", Service: "echo", Port: "9000",
	}
	got := origin(rt)
	want := "grpcroute shop/echo rule 0 match 1, gateway infra/edge listener http port 80: host grpc.shop.com path /echo.Echo/Echo (Exact) -> backendRef 0 service echo port 9000, unusable (gRPC UNAVAILABLE; see /problems)"
	if got != want {
		t.Errorf("origin:\n got  %s\n want %s", got, want)
	}
	rt.Gateway.Kind = ""
	if got := origin(rt); !strings.HasPrefix(got, "httproute shop/echo ") || !strings.Contains(got, "unusable (500;") {
		t.Errorf("HTTPRoute origin: %s", got)
	}
}
