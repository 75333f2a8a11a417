package routing

import (
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// addressSnapshot has two Gateways of our class on port 80 without
// hostnames, each with an HTTPRoute for "/" to a Service of its own: told
// apart only by the address a request arrived on.
func addressSnapshot(created map[string]time.Time, status map[string]string) *Snapshot {
	s := &Snapshot{GatewayClasses: []*gatewayv1.GatewayClass{{ObjectMeta: metav1.ObjectMeta{Name: "bulkhead"},
		Spec: gatewayv1.GatewayClassSpec{ControllerName: DefaultGatewayControllerName}}}}
	for _, name := range []string{"one", "two", "three"} {
		gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: name, CreationTimestamp: metav1.NewTime(created[name])},
			Spec: gatewayv1.GatewaySpec{GatewayClassName: "bulkhead", Listeners: []gatewayv1.Listener{{Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType}}}}
		if a := status[name]; a != "" {
			gw.Status.Addresses = []gatewayv1.GatewayStatusAddress{{Value: a}}
		}
		s.Gateways = append(s.Gateways, gw)
		port := gatewayv1.PortNumber(80)
		s.HTTPRoutes = append(s.HTTPRoutes, &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: name},
			Spec: gatewayv1.HTTPRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: gatewayv1.ObjectName(name)}}},
				Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
					BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName("svc-" + name), Port: &port}}}}}}}})
		s.Services = append(s.Services, &Service{Namespace: "infra", Name: "svc-" + name,
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}})
	}
	return s
}

func gatewayAddresses(t *testing.T, table Table) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, g := range table.Gateways {
		if len(g.Status.Addresses) != 1 {
			t.Fatalf("Gateway %s has addresses %+v, want one", g.Gateway, g.Status.Addresses)
		}
		out[g.Gateway.Name] = g.Status.Addresses[0].Value
	}
	return out
}

// With an address pool every Gateway gets an address of its own, oldest
// first, keeps the one its status shows, and its routes answer only on it.
func TestGatewayAddressPool(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	created := map[string]time.Time{"one": t0, "two": t0.Add(time.Minute), "three": t0.Add(2 * time.Minute)}
	pool := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}
	opts := Options{GatewayPorts: []int32{80}, PublishAddresses: []string{"lb.example"}, GatewayAddresses: pool}

	table := Translate(addressSnapshot(created, nil), opts)
	got := gatewayAddresses(t, table)
	if got["one"] != "127.0.0.1" || got["two"] != "127.0.0.2" || got["three"] != "127.0.0.3" {
		t.Fatalf("addresses %v, want the pool in creation order", got)
	}
	// Gateway "one" is deleted: the others keep the addresses their status
	// shows; a new Gateway takes the free one.
	s := addressSnapshot(created, got)
	s.Gateways[0].Name = "four"
	s.Gateways[0].Status.Addresses = nil
	s.Gateways[0].CreationTimestamp = metav1.NewTime(t0.Add(3 * time.Minute))
	s.HTTPRoutes[0].Spec.ParentRefs[0].Name = "four"
	if got := gatewayAddresses(t, Translate(s, opts)); got["two"] != "127.0.0.2" || got["three"] != "127.0.0.3" || got["four"] != "127.0.0.1" {
		t.Fatalf("after a deletion, addresses %v: the survivors must keep theirs", got)
	}

	r := newGatewayRouter(t, table)
	for addr, want := range map[string]string{"127.0.0.1": "svc-one", "127.0.0.2": "svc-two", "127.0.0.3": "svc-three", "127.0.0.9": "404"} {
		req := &http.Request{Method: http.MethodGet, Host: "any.example", URL: mustURL(t, "/x"), Header: http.Header{}}
		req = req.WithContext(WithGatewayConn(t.Context(), 80, netip.MustParseAddr(addr)))
		chosen := r.route(req)
		got := "404"
		if chosen != nil {
			got = r.byID[chosen.Id].Service
		}
		if got != want {
			t.Errorf("a request on %s answered by %s, want %s", addr, got, want)
		}
	}
	for _, rt := range table.Routes {
		if !strings.Contains(rt.Eskip.String(), `BulkheadGatewayPort(80, "127.0.0.`) {
			t.Errorf("route %s does not name its Gateway's address: %s", rt.Eskip.Id, rt.Eskip)
		}
	}

	// Without a pool: the publish addresses, and any local address.
	opts.GatewayAddresses = nil
	for name, a := range gatewayAddresses(t, Translate(addressSnapshot(created, nil), opts)) {
		if a != "lb.example" {
			t.Errorf("Gateway %s without a pool: address %s, want the publish address", name, a)
		}
	}
}

func mustURL(t *testing.T, target string) *url.URL {
	t.Helper()
	u, err := url.ParseRequestURI(target)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
