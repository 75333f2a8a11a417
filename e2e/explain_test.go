package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/bulkhead-router/bulkhead/internal/testrouter"
)

// bulkheadCommand runs the bulkhead binary with args (a subcommand asking
// a router) and returns its exit code, stdout and stderr.
func bulkheadCommand(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(testrouter.Binary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("running bulkhead %v: %v", args, err)
	}
	return code, stdout.String(), stderr.String()
}

// TestExplainSubcommands: a real router serving two Ingresses on one host
// (Prefix / and Exact /cart) and an HTTPRoute with a header-matched rule,
// real pods behind them; "bulkhead explain" run as an operator runs it
// names the rule that answers (checked against the pod that really
// answers), the losers with their reasons, the endpoints with their
// breakers; "bulkhead routes" and "bulkhead status" print the table and
// the source's state; an unreachable admin endpoint is exit 1.
func TestExplainSubcommands(t *testing.T) {
	e := newGatewayEnv(t, "-publish-address", "192.0.2.10") // Gateway port 80 on the proxy listener
	e.startPods("shop", "web", 2)
	e.startPods("shop", "cart", 1)
	e.startPods("shop", "canary", 1)
	e.ingressClass("bulkhead", false)
	e.apply(ingress("shop", "web", "bulkhead", rule("shop.example", path("/", prefix(), "web"))))
	e.apply(ingress("shop", "cart", "bulkhead", rule("shop.example", path("/cart", exact(), "cart"))))
	e.gatewayClass("bulkhead")
	e.gateway("infra", "edge", 80)
	canary := toService("/", "canary", 1)
	canary.Matches[0].Headers = []gatewayv1.HTTPHeaderMatch{{Name: "X-Canary", Value: "yes"}}
	e.applyRoute(httpRoute("shop", "beta", "infra", "edge", "beta.example", toService("/", "web", 1), canary))
	e.router.WaitReady(30 * time.Second)
	e.expectPod("shop.example", "/cart", "cart", "")
	e.expectPod("shop.example", "/cart/x", "web", "")
	e.eventually(10*time.Second, "beta.example with X-Canary: yes -> canary", func() error {
		a, err := e.get("beta.example", "/", "X-Canary", "yes")
		if err != nil || a.echo.Service != "canary" {
			return fmt.Errorf("%v: %d from %q", err, a.status, a.echo.Service)
		}
		return nil
	})
	admin := strings.TrimPrefix(e.router.AdminURL, "http://")

	explain := func(args ...string) string {
		t.Helper()
		code, out, errs := bulkheadCommand(t, append(append([]string{"explain"}, args...), "-admin-address", admin)...)
		if code != 0 || errs != "" {
			t.Fatalf("bulkhead explain %v: exit %d\n%s\n%s", args, code, errs, out)
		}
		return out
	}
	expect := func(out string, wants ...string) {
		t.Helper()
		for _, want := range wants {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in:\n%s", want, out)
			}
		}
	}

	out := explain("http://shop.example/cart")
	expect(out,
		"ROUTE ing__shop__cart__",
		"ingress shop/cart: host shop.example path /cart (Exact) -> service cart port 80, backend shop/cart:80",
		"ANSWER forwarded to backend shop/cart:80: one of its 1 endpoints (least-in-flight), 1 with the breaker not open",
		"BACKEND shop/cart:80",
		"breaker=closed",
		"ingress shop/web: host shop.example path / (Prefix)",
		"matches too, lower precedence: the winner's path is longer",
		"POLICY (the router's defaults)",
		"connect timeout 1s, response header timeout 30s",
		"retries: up to 2 per request",
	)
	if n := strings.Count(out, "ready=true  serving=true  terminating=false breaker=closed"); n != 1 {
		t.Errorf("want the cart pod's one endpoint, ready, breaker closed; got %d such lines:\n%s", n, out)
	}
	out = explain("http://shop.example/cart/x")
	expect(out,
		"ingress shop/web: host shop.example path / (Prefix)",
		"BACKEND shop/web:80",
		"does not match: path: the route wants exactly /cart, the request's path is /cart/x",
	)
	if n := strings.Count(out, "breaker=closed"); n != 2 {
		t.Errorf("want web's two endpoints with closed breakers, got %d:\n%s", n, out)
	}

	// The header rule of the HTTPRoute: wins with the header, loses
	// without, saying which header.
	expect(explain("beta.example/", "-H", "X-Canary: yes", "-json"), `"origin": "httproute shop/beta rule 1 match 0`, `"name": "shop/canary:80"`)
	expect(explain("http://beta.example/"),
		"httproute shop/beta rule 0 match 0, gateway infra/edge listener http-80 port 80: host beta.example path / (PathPrefix) -> backendRef 0 service web port 80",
		`does not match: header X-Canary: the route wants "yes", the request has none`)

	// No route: 404, the near candidates and why.
	out = explain("http://www.shop.example/cart")
	expect(out, "NO ROUTE matches", "ANSWER 404 Not Found",
		"does not match: host: the route's host shop.example does not cover www.shop.example")
	if a, err := e.get("www.shop.example", "/cart"); err != nil || a.status != 404 {
		t.Errorf("the router itself: %v %d, want 404", err, a.status)
	}

	code, out, _ := bulkheadCommand(t, "routes", "-admin-address", admin)
	if code != 0 || !strings.Contains(out, "// ingress shop/cart: host shop.example path /cart (Exact)") || !strings.Contains(out, "// httproute shop/beta rule 1") {
		t.Errorf("bulkhead routes: exit %d\n%s", code, out)
	}
	code, out, _ = bulkheadCommand(t, "status", "-admin-address", admin)
	if code != 0 || !strings.Contains(out, "API server:  connected since") || !strings.Contains(out, "routes from apiserver") ||
		!strings.Contains(out, "deletion guard: nothing held") {
		t.Errorf("bulkhead status: exit %d\n%s", code, out)
	}

	// Nothing listening: exit 1 and a clear message.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	code, _, errs := bulkheadCommand(t, "explain", "http://shop.example/", "-admin-address", closed)
	if code != 1 || !strings.Contains(errs, "cannot reach the router's admin endpoint at http://"+closed) {
		t.Errorf("unreachable admin endpoint: exit %d, stderr %q", code, errs)
	}
}
