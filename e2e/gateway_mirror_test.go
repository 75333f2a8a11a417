package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/bulkhead-router/bulkhead/internal/testpods"
)

// mirrorTo is a RequestMirror filter to service port 80; percent nil is
// every request.
func mirrorTo(service string, percent *int32) gatewayv1.HTTPRouteFilter {
	port := gatewayv1.PortNumber(80)
	return gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestMirror, RequestMirror: &gatewayv1.HTTPRequestMirrorFilter{
		BackendRef: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(service), Port: &port},
		Percent:    percent,
	}}
}

// TestGatewayRequestMirror: a rule with a RequestMirror is answered by its
// backend while a copy of each request reaches the mirror Service's pod
// (counted by the pod itself); a mirror at 0% gets nothing; a mirror that
// is down changes nothing for the client; a mirror Service that does not
// exist is ResolvedRefs=False and the rule is still served.
func TestGatewayRequestMirror(t *testing.T) {
	e := newGatewayEnv(t, "-publish-address", "192.0.2.10")
	e.startPods("shop", "web", 1)
	shadow := e.startPods("shop", "shadow", 1)[0]
	quiet := e.startPods("shop", "quiet", 1)[0]
	e.gatewayClass("bulkhead")
	e.gateway("infra", "edge", 80)

	all := toService("/", "web", 1)
	all.Filters = []gatewayv1.HTTPRouteFilter{mirrorTo("shadow", nil)}
	none := toService("/none", "web", 1)
	none.Filters = []gatewayv1.HTTPRouteFilter{mirrorTo("quiet", new(int32(0)))}
	sentinel := toService("/sentinel", "web", 1)
	sentinel.Filters = []gatewayv1.HTTPRouteFilter{mirrorTo("quiet", new(int32(100)))}
	e.applyRoute(httpRoute("shop", "mirror", "infra", "edge", "shop.example", all, none, sentinel))
	e.router.WaitReady(30 * time.Second)

	// Every request answered by web is copied to shadow.
	e.eventually(15*time.Second, "a copy reaches the mirror", func() error {
		before := stats(t, shadow).Requests
		a, err := e.get("shop.example", "/first")
		if err != nil {
			return err
		}
		if a.status != http.StatusOK || a.echo.Service != "web" {
			return fmt.Errorf("got %d from %q: %.200s", a.status, a.echo.Service, a.body)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = shadow.AwaitStats(ctx, func(s testpods.Stats) bool { return s.Requests > before })
		return err
	})
	base := stats(t, shadow).Requests
	const n = 10
	for i := range n {
		a, err := e.get("shop.example", fmt.Sprintf("/copy/%d", i))
		if err != nil || a.status != http.StatusOK || a.echo.Service != "web" {
			t.Fatalf("request %d: %v, %d from %q", i, err, a.status, a.echo.Service)
		}
	}
	ctx, cancel := context.WithTimeout(e.ctx(), 10*time.Second)
	defer cancel()
	if _, err := shadow.AwaitStats(ctx, func(s testpods.Stats) bool { return s.Requests >= base+n }); err != nil {
		t.Fatalf("the mirror did not get the %d copies: %v", n, err)
	}

	// 0%: nothing; the sentinel rule's copy, sent after, is the pod's only
	// request (the pod's own start-up checks are counted too: a baseline).
	quietBase := stats(t, quiet).Requests
	for i := range 20 {
		if a, err := e.get("shop.example", "/none"); err != nil || a.status != http.StatusOK || a.echo.Service != "web" {
			t.Fatalf("/none %d: %v, %d from %q", i, err, a.status, a.echo.Service)
		}
	}
	if a, err := e.get("shop.example", "/sentinel"); err != nil || a.status != http.StatusOK {
		t.Fatalf("/sentinel: %v, %d", err, a.status)
	}
	if _, err := quiet.AwaitStats(ctx, func(s testpods.Stats) bool { return s.Requests >= quietBase+1 }); err != nil {
		t.Fatalf("the sentinel's copy: %v", err)
	}
	if got := stats(t, quiet).Requests - quietBase; got != 1 {
		t.Fatalf("the 0%% mirror's pod got %d requests, want only the sentinel's copy", got)
	}

	// The mirror's pod dies (it stays in the EndpointSlice): clients see
	// nothing of it.
	if err := shadow.Kill(); err != nil {
		t.Fatal(err)
	}
	<-shadow.Exited()
	for i := range 10 {
		start := time.Now()
		a, err := e.get("shop.example", fmt.Sprintf("/down/%d", i))
		if err != nil || a.status != http.StatusOK || a.echo.Service != "web" {
			t.Fatalf("with the mirror down, request %d: %v, %d from %q: %.200s", i, err, a.status, a.echo.Service, a.body)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("with the mirror down, request %d took %s", i, d)
		}
	}

	// A mirror Service that does not exist: ResolvedRefs=False
	// BackendNotFound, the rule still served.
	ghost := toService("/", "web", 1)
	ghost.Filters = []gatewayv1.HTTPRouteFilter{mirrorTo("ghost", nil)}
	e.applyRoute(httpRoute("shop", "mirror", "infra", "edge", "shop.example", ghost))
	e.awaitStatus("HTTPRoute shop/mirror ResolvedRefs=False BackendNotFound", func() error {
		hr, err := e.gw.GatewayV1().HTTPRoutes("shop").Get(e.ctx(), "mirror", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(hr.Status.Parents) != 1 {
			return fmt.Errorf("parents %+v", hr.Status.Parents)
		}
		conds := hr.Status.Parents[0].Conditions
		if err := hasCondition(conds, "ResolvedRefs", metav1.ConditionFalse, hr.Generation); err != nil {
			return err
		}
		for _, c := range conds {
			if c.Type == "ResolvedRefs" && c.Reason != string(gatewayv1.RouteReasonBackendNotFound) {
				return fmt.Errorf("ResolvedRefs reason %s", c.Reason)
			}
		}
		return hasCondition(conds, "Accepted", metav1.ConditionTrue, hr.Generation)
	})
	e.expectPod("shop.example", "/still", "web", "")
}

func stats(t *testing.T, p *testpods.Pod) testpods.Stats {
	t.Helper()
	s, err := p.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}
