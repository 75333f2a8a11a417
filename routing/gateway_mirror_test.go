package routing

import (
	"testing"

	"github.com/zalando/skipper/filters"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// stubMirrorSpec stands in for the upstream layer's bulkheadMirror filter,
// which this package must not import: it takes a backend key and a
// fraction from 0 to 1, as the real one does, and does nothing.
type stubMirrorSpec struct{}

func (stubMirrorSpec) Name() string { return mirrorFilter }

func (stubMirrorSpec) CreateFilter(args []any) (filters.Filter, error) {
	if len(args) != 2 {
		return nil, filters.ErrInvalidFilterParameters
	}
	key, ok1 := args[0].(string)
	frac, ok2 := args[1].(float64)
	if !ok1 || key == "" || !ok2 || !(frac >= 0 && frac <= 1) {
		return nil, filters.ErrInvalidFilterParameters
	}
	return stubPolicy{}, nil
}

// A mirror backend that no route sends to still gets its endpoints in the
// table; when the last mirror naming it goes, so does it.
func TestGatewayMirrorBackends(t *testing.T) {
	s, o := gatewayFuzzSnapshot()
	s.Services = append(s.Services, service("default", "shadow", servicePort("http", 80)))
	s.EndpointSlices = append(s.EndpointSlices, endpointSlice("default", "shadow", "shadow-1", 8080, "10.0.0.9"))
	rule := &s.HTTPRoutes[0].Spec.Rules[0]
	rule.Filters = append(rule.Filters, mirrorRouteFilter("shadow"))
	tr := NewTranslator()
	table := tr.Translate(s, o)
	checkGatewaySpecs(t, table)
	key := BackendKey{Namespace: "default", Service: "shadow", Port: 80}
	b, ok := table.Backend(key)
	if !ok || len(b.Endpoints) != 1 {
		t.Fatalf("mirror backend %v: %+v, %v", key, b, ok)
	}
	mirrored := 0
	for _, r := range table.Routes {
		if r.Backend == key {
			t.Fatalf("route %s sends to the mirror", r.Eskip.Id)
		}
		if r.Gateway != nil && len(r.Gateway.Mirrors) == 1 && r.Gateway.Mirrors[0] == key {
			mirrored++
		}
	}
	if mirrored == 0 {
		t.Fatal("no route names the mirror")
	}
	rule.Filters = nil
	if _, ok := tr.Translate(s, o).Backend(key); ok {
		t.Fatal("the mirror backend outlived its last mirror")
	}
}

func mirrorRouteFilter(service string) gatewayv1.HTTPRouteFilter {
	return gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestMirror, RequestMirror: &gatewayv1.HTTPRequestMirrorFilter{
		BackendRef: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(service), Port: ptr(gatewayv1.PortNumber(80))},
	}}
}
