package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestProxyReachesBothPods is the foundation's proof: a real control plane,
// two pods with their own addresses, the built router proxying to them
// through skipper, and both pods answering.
func TestProxyReachesBothPods(t *testing.T) {
	e := newEnv(t)
	e.ingressClass("bulkhead", false)
	e.startPods("shop", "web", 2)
	e.apply(ingress("shop", "web", "bulkhead", rule("shop.example", path("/", prefix(), "web"))))
	e.router.WaitReady(30 * time.Second)
	e.expectPod("shop.example", "/", "web", "")

	seen := map[string]int{}
	for range 40 {
		a, err := e.get("shop.example", "/cart?item=7", "X-Forwarded-For", "203.0.113.9")
		if err != nil {
			t.Fatal(err)
		}
		if a.status != http.StatusOK {
			t.Fatalf("status %d: %s", a.status, a.body)
		}
		seen[a.echo.Pod]++
		if a.echo.Host != "shop.example" {
			t.Errorf("pod saw Host %q, want the client's shop.example", a.echo.Host)
		}
		if a.echo.Path != "/cart" || a.echo.RawQuery != "item=7" {
			t.Errorf("pod saw %s?%s, want /cart?item=7", a.echo.Path, a.echo.RawQuery)
		}
		h := http.Header(a.echo.Headers)
		if got := h.Get("X-Forwarded-For"); got != "203.0.113.9, 127.0.0.1" {
			t.Errorf("X-Forwarded-For at the pod = %q", got)
		}
		if h.Get("X-Forwarded-Proto") != "http" || h.Get("X-Forwarded-Host") != "shop.example" || len(h.Get("X-Request-Id")) != 32 {
			t.Errorf("forwarding headers at the pod: proto %q host %q id %q",
				h.Get("X-Forwarded-Proto"), h.Get("X-Forwarded-Host"), h.Get("X-Request-Id"))
		}
	}
	if len(seen) != 2 || seen["web-0"] == 0 || seen["web-1"] == 0 {
		t.Fatalf("want both pods to answer, got %v", seen)
	}
	if !strings.Contains(e.router.Log(), "route table loaded; serving traffic and ready") {
		t.Error("no readiness line in the log")
	}
}
