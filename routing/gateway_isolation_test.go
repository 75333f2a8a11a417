package routing

import (
	"net/http"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// A request belongs to the most specific listener of the Gateway that
// matches its host; the routes of less specific listeners never answer it
// (the conformance suite's GatewayHTTPListenerIsolation, in small).
func TestGatewayListenerIsolation(t *testing.T) {
	listeners := map[string]string{"empty-hostname": "", "wildcard-example-com": "*.example.com",
		"wildcard-foo-example-com": "*.foo.example.com", "abc-foo-example-com": "abc.foo.example.com"}
	all := gatewayv1.NamespacesFromAll
	gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "iso"},
		Spec: gatewayv1.GatewaySpec{GatewayClassName: "bulkhead"}}
	s := &Snapshot{GatewayClasses: []*gatewayv1.GatewayClass{{ObjectMeta: metav1.ObjectMeta{Name: "bulkhead"},
		Spec: gatewayv1.GatewayClassSpec{ControllerName: DefaultGatewayControllerName}}}}
	port := gatewayv1.PortNumber(80)
	for _, name := range []string{"empty-hostname", "wildcard-example-com", "wildcard-foo-example-com", "abc-foo-example-com"} {
		l := gatewayv1.Listener{Name: gatewayv1.SectionName(name), Port: 80, Protocol: gatewayv1.HTTPProtocolType,
			AllowedRoutes: &gatewayv1.AllowedRoutes{Namespaces: &gatewayv1.RouteNamespaces{From: &all}}}
		if h := listeners[name]; h != "" {
			hn := gatewayv1.Hostname(h)
			l.Hostname = &hn
		}
		gw.Spec.Listeners = append(gw.Spec.Listeners, l)
		section := gatewayv1.SectionName(name)
		prefix, kind := "/"+name, gatewayv1.PathMatchPathPrefix
		s.HTTPRoutes = append(s.HTTPRoutes, &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: name},
			Spec: gatewayv1.HTTPRouteSpec{
				CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "iso", SectionName: &section}}},
				Rules: []gatewayv1.HTTPRouteRule{{
					Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: &kind, Value: &prefix}}},
					BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
						BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName("svc-" + name), Port: &port}}}}}}}})
		s.Services = append(s.Services, &Service{Namespace: "infra", Name: "svc-" + name,
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}})
	}
	s.Gateways = []*gatewayv1.Gateway{gw}
	r := newGatewayRouter(t, Translate(s, Options{GatewayPorts: []int32{80}, PublishAddresses: []string{"192.0.2.1"}}))
	for _, tc := range []struct{ host, path, want string }{
		{"bar.com", "/empty-hostname", "empty-hostname r0 svc-empty-hostname"},
		{"bar.example.com", "/empty-hostname", "404"},
		{"bar.example.com", "/wildcard-example-com", "wildcard-example-com r0 svc-wildcard-example-com"},
		{"bar.foo.example.com", "/wildcard-example-com", "404"},
		{"bar.foo.example.com", "/wildcard-foo-example-com", "wildcard-foo-example-com r0 svc-wildcard-foo-example-com"},
		{"abc.foo.example.com", "/wildcard-foo-example-com", "404"},
		{"ABC.foo.example.com.:80", "/abc-foo-example-com", "abc-foo-example-com r0 svc-abc-foo-example-com"},
		{"abc.foo.example.com", "/empty-hostname", "404"},
	} {
		if got := r.gatewayLookup(t, 80, http.MethodGet, tc.host, tc.path, nil); got != tc.want {
			t.Errorf("%s%s: %s, want %s", tc.host, tc.path, got, tc.want)
		}
	}
}
