package upstream

import (
	"net/http"
	"testing"

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
	if _, ok := r.LBAlgorithm.(*lbWrapper); !ok {
		t.Fatalf("LBAlgorithm not wrapped: %T", r.LBAlgorithm)
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
	if u.Breakers().Len() != 2 {
		t.Fatalf("breakers after prune: %d", u.Breakers().Len())
	}
}
