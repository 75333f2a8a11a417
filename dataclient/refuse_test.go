package dataclient

import (
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bulkhead-router/bulkhead/routing"
)

// TestSetNodeAddressesRebuilds: node addresses set after start reach the
// translation without any object changing (the node watch learns them on
// its own schedule): an endpoint at one of them is refused at once, counted
// and listed, and served again when they change back.
func TestSetNodeAddressesRebuilds(t *testing.T) {
	c, _, _ := started(t, ingressClass(), service("web"), slice("web", "10.0.0.5", "10.0.0.6"), ingress("web", "web.example.com", "web"))
	awaitLoadAll(t, c)
	await := func(what string, cond func(routing.Table) bool) routing.Table {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if tab, ok := c.Table(); ok && cond(tab) {
				return tab
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(time.Millisecond) // the rebuild runs on its own goroutine
		}
	}
	endpoints := func(tab routing.Table) int {
		if len(tab.Routes) != 1 {
			return -1
		}
		b, _ := tab.Backend(tab.Routes[0].Backend)
		return len(b.Endpoints)
	}
	await("both endpoints", func(tab routing.Table) bool { return endpoints(tab) == 2 })

	c.SetNodeAddresses([]netip.Addr{netip.MustParseAddr("10.0.0.5")})
	tab := await("10.0.0.5 refused", func(tab routing.Table) bool { return endpoints(tab) == 1 })
	if b, _ := tab.Backend(tab.Routes[0].Backend); len(b.Endpoints) == 0 || b.Endpoints[0].Address != "10.0.0.6:8080" {
		got := b.Endpoints
		t.Fatalf("endpoints left: %+v, want 10.0.0.6:8080", got)
	}
	if len(tab.Problems) != 1 || tab.Problems[0].Reason != routing.RefusedEndpoint {
		t.Fatalf("problems %+v, want one RefusedEndpoint", tab.Problems)
	}
	if v := testutil.ToFloat64(c.metrics.problems.WithLabelValues(string(routing.RefusedEndpoint))); v != 1 {
		t.Errorf("%s{reason=RefusedEndpoint} = %v, want 1", MetricProblems, v)
	}

	c.SetNodeAddresses([]netip.Addr{netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.0.6")})
	tab = await("every endpoint refused: 503", func(tab routing.Table) bool { return endpoints(tab) == 0 })
	if tab.Routes[0].Backend.IsZero() {
		t.Errorf("a route whose endpoints are all refused lost its backend (it answers 503 from the upstream layer): %s", tab.Routes[0].Eskip)
	}

	c.SetNodeAddresses(nil)
	await("both endpoints back", func(tab routing.Table) bool { return endpoints(tab) == 2 && len(tab.Problems) == 0 })
	if v := testutil.ToFloat64(c.metrics.problems.WithLabelValues(string(routing.RefusedEndpoint))); v != 0 {
		t.Errorf("%s{reason=RefusedEndpoint} = %v after the refusal ended, want 0", MetricProblems, v)
	}
}
