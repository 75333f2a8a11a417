package dataclient

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// grpcRoute adds a GRPCRoute ns/name for host attached to the Gateway
// ns/gw, sending every call to the Service svc of ns on port 80.
func (c *cluster) grpcRoute(name, host, gw, svc string) {
	gwNS, port := gatewayv1.Namespace("ns"), gatewayv1.PortNumber(80)
	c.created++
	c.grpcRoutes["ns/"+name] = &gatewayv1.GRPCRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Generation: 1,
			CreationTimestamp: metav1.NewTime(time.Unix(int64(c.created), 0))},
		Spec: gatewayv1.GRPCRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: gatewayv1.ObjectName(gw), Namespace: &gwNS}}},
			Hostnames:       []gatewayv1.Hostname{gatewayv1.Hostname(host)},
			Rules: []gatewayv1.GRPCRouteRule{{BackendRefs: []gatewayv1.GRPCBackendRef{{BackendRef: gatewayv1.BackendRef{
				BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(svc), Port: &port}}}}}},
		},
	}
}

func (w *world) deleteGRPCRoute(announced bool, names ...string) {
	for _, n := range names {
		delete(w.c.grpcRoutes, "ns/"+n)
		w.gone.add(objectRef{Kind: kindGRPCRoute, Namespace: "ns", Name: n}, announced)
	}
}

// GRPCRoutes are judged as HTTPRoutes are, as a kind of their own: a mass
// deletion is held (their routes kept, following their Services'
// endpoints) and told apart from HTTPRoutes of the same name; one
// deletion alone is applied.
func TestGuardGRPCRouteMassDeletionIsHeld(t *testing.T) {
	w := newWorld(t, GuardOptions{})
	w.c.gateway("web")
	for i := range 3 {
		name := fmt.Sprintf("g%d", i)
		w.c.app(name, 2)
		w.c.grpcRoute(name, name+".example", "web", name)
	}
	// An HTTPRoute with a GRPCRoute's name, for another host.
	w.c.route("ns", "g0", "http-g0.example", "web", "g0")
	w.build()
	for _, h := range []string{"g0.example", "g1.example", "g2.example", "http-g0.example"} {
		w.expect(h, 2)
	}

	w.deleteGRPCRoute(true, "g0", "g1", "g2")
	w.after(time.Second).build()
	w.expectHeld("GRPCRoute ns/g0", "GRPCRoute ns/g1", "GRPCRoute ns/g2")
	for _, h := range []string{"g0.example", "g1.example", "g2.example", "http-g0.example"} {
		w.expect(h, 2)
	}
	if got := w.last.window[kindGRPCRoute]; got != "3 of 3" {
		t.Errorf("window GRPCRoutes %q, want 3 of 3", got)
	}
	if got := w.last.window[kindHTTPRoute]; got != "0 of 1" {
		t.Errorf("window HTTPRoutes %q, want 0 of 1", got)
	}
	if got := describe(w.last.held); !strings.HasPrefix(got, "0 Ingresses, 0 HTTPRoutes, 0 Services, 3 GRPCRoutes") {
		t.Errorf("describe: %q", got)
	}
	// A held GRPCRoute's routes follow their Service's live endpoints.
	w.c.setEndpoints("g1", 3)
	w.after(time.Second).build()
	w.expect("g1.example", 3)
	// Applied HoldPeriod after they were held; the HTTPRoute of the same
	// name stays.
	w.after(2 * time.Minute).build()
	w.expectHeld()
	w.expect("g0.example", -1)
	w.expect("http-g0.example", 2)
}

func TestGuardSingleGRPCRouteDeletionIsApplied(t *testing.T) {
	w := newWorld(t, GuardOptions{})
	w.c.gateway("web")
	for i := range 3 {
		name := fmt.Sprintf("g%d", i)
		w.c.app(name, 2)
		w.c.grpcRoute(name, name+".example", "web", name)
	}
	w.build()
	w.deleteGRPCRoute(true, "g1")
	w.after(time.Second).build()
	w.expectHeld()
	w.expect("g1.example", -1)
	w.expect("g0.example", 2)
}

// /status counts held GRPCRoutes apart from HTTPRoutes.
func TestHoldStatusCountsGRPCRoutes(t *testing.T) {
	c := &Client{holdView: []HeldObject{
		{Kind: kindGRPCRoute, Namespace: "ns", Name: "g0"}, {Kind: kindGRPCRoute, Namespace: "ns", Name: "g1"},
		{Kind: kindHTTPRoute, Namespace: "ns", Name: "g0"},
	}}
	h := c.Status().Hold
	if h == nil || h.HTTPRoutes != 1 || h.GRPCRoutes != 2 || !strings.Contains(h.Summary, "1 HTTPRoutes, 2 GRPCRoutes") {
		t.Fatalf("hold status %+v", h)
	}
}
