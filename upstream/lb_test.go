package upstream

import (
	"net/http"
	"testing"
	"time"

	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/loadbalancer"
	"github.com/zalando/skipper/routing"
)

func choices(r *routing.Route, n int) map[string]int {
	got := map[string]int{}
	req, _ := http.NewRequest("GET", "http://x/", nil)
	for i := 0; i < n; i++ {
		ctx := &routing.LBContext{Request: req, Route: r, LBEndpoints: r.LBEndpoints, Params: map[string]any{}}
		got[r.LBAlgorithm.Apply(ctx).Host]++
	}
	return got
}

func openBreaker(u *Upstream, ep string) {
	for i := 0; i < 5; i++ {
		u.Breakers().Record(ep, Failure)
	}
}

func TestLBSkipsOpenAndPanicThreshold(t *testing.T) {
	u, _ := newUpstream(t, Config{})
	eps := []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"}
	r := lbRoutes(t, u, eps)[0]
	if _, ok := r.LBAlgorithm.(*balancer); !ok {
		t.Fatalf("LBAlgorithm is not ours: %T", r.LBAlgorithm)
	}
	if got := choices(r, 100); len(got) != 4 {
		t.Fatalf("all closed: %v", got)
	}

	openBreaker(u, eps[0])
	got := choices(r, 100)
	if got[eps[0]] != 0 || len(got) != 3 {
		t.Fatalf("one open: %v", got)
	}
	openBreaker(u, eps[1]) // exactly half: still skipped
	got = choices(r, 100)
	if got[eps[0]] != 0 || got[eps[1]] != 0 || len(got) != 2 {
		t.Fatalf("half open: %v", got)
	}
	openBreaker(u, eps[2]) // 3 of 4 open: panic, breakers ignored
	if got = choices(r, 100); len(got) != 4 {
		t.Fatalf("panic threshold: %v", got)
	}

	// A rebuilt table keeps the breaker state (keyed by ip:port) and
	// prunes endpoints that left.
	r = lbRoutes(t, u, eps[1:])[0]
	if got = choices(r, 100); len(got) != 3 { // 2 of 3 open: panic
		t.Fatalf("after rebuild: %v", got)
	}
	if _, kept := u.breakers.m.Load(eps[0]); kept || u.Breakers().Len() != 3 {
		t.Fatalf("breakers after prune: %d, the one that left kept: %v", u.Breakers().Len(), kept)
	}
}

// lbRoute is one LB route with the given algorithm and policy filter args.
func lbRoute(t testing.TB, u *Upstream, algorithm string, eps []string, policyArgs ...string) *routing.Route {
	var addrs []string
	for _, e := range eps {
		addrs = append(addrs, "http://"+e)
	}
	r := &routing.Route{Route: eskip.Route{
		Id: "r", BackendType: eskip.LBBackend, LBAlgorithm: algorithm, LBEndpoints: eskip.NewLBEndpoints(addrs),
	}}
	if len(policyArgs) > 0 {
		var args []any
		for _, a := range policyArgs {
			args = append(args, a)
		}
		r.Route.Filters = []*eskip.Filter{{Name: PolicyFilterName, Args: args}}
	}
	rs := loadbalancer.NewAlgorithmProvider().Do([]*routing.Route{r})
	return u.PostProcessor().Do(rs)[0]
}

func TestRoundRobinIsEven(t *testing.T) {
	u, _ := newUpstream(t, Config{})
	eps := []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"}
	got := choices(lbRoute(t, u, AlgorithmRoundRobin, eps), 300)
	for _, e := range eps {
		if got[e] != 100 {
			t.Fatalf("round robin not even: %v", got)
		}
	}
}

func TestLeastInFlightAvoidsBusyEndpoint(t *testing.T) {
	u, _ := newUpstream(t, Config{})
	eps := []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"}
	r := lbRoute(t, u, "", eps) // the default algorithm
	if bl, ok := r.LBAlgorithm.(*balancer); !ok || !bl.leastInFlight {
		t.Fatalf("default algorithm is not least in-flight: %T", r.LBAlgorithm)
	}
	// A hanging endpoint accumulates attempts in flight: with power of
	// two choices it is picked only when drawn against... nobody: never.
	u.Breakers().get(eps[0]).inflight.Store(50)
	got := choices(r, 2000)
	if got[eps[0]] != 0 {
		t.Fatalf("busy endpoint still chosen: %v", got)
	}
	for _, e := range eps[1:] {
		if got[e] < 500 { // ~667 each expected
			t.Fatalf("idle endpoints not shared evenly: %v", got)
		}
	}
}

func TestSlowStart(t *testing.T) {
	for _, alg := range []string{AlgorithmRoundRobin, AlgorithmLeastInFlight} {
		t.Run(alg, func(t *testing.T) {
			u, _ := newUpstream(t, Config{})
			now := time.Unix(1000, 0)
			u.breakers.now = func() time.Time { return now }
			old := []string{"10.0.0.1:80", "10.0.0.2:80"}
			// The first table's endpoints were serving before the router
			// started: no slow start for them, and all share evenly.
			r := lbRoute(t, u, alg, old, "slow-start=100s")
			if got := choices(r, 1000); got[old[0]] < 400 || got[old[1]] < 400 {
				t.Fatalf("first table: %v", got)
			}
			// A new endpoint starts at 10% of its share and ramps up.
			fresh := "10.0.0.3:80"
			r = lbRoute(t, u, alg, append(old, fresh), "slow-start=100s")
			r.LBAlgorithm.(*balancer).now = func() time.Time { return now }
			share := func() float64 { return float64(choices(r, 6000)[fresh]) / 6000 }
			if s := share(); s > 0.12 {
				t.Fatalf("new endpoint got %.2f of traffic at once", s)
			}
			now = now.Add(50 * time.Second)
			mid := share()
			now = now.Add(60 * time.Second)
			full := share()
			if !(mid > 0.15 && mid < full && full > 0.28) {
				t.Fatalf("shares: half-way %.2f, after %.2f", mid, full)
			}
		})
	}
}
