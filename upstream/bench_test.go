package upstream

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/loadbalancer"
	"github.com/zalando/skipper/routing"
)

// BenchmarkHappyPath compares one proxied GET through skipper's default
// transport shape with and without the LB wrapper + retrying round
// tripper (all breakers closed, backend answers 200).
func BenchmarkHappyPath(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	host := srv.Listener.Addr().String()
	others := []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"}

	run := func(b *testing.B, rt http.RoundTripper, r *routing.Route) {
		lbReq, _ := http.NewRequest("GET", "http://x/", nil)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if r != nil {
				ctx := &routing.LBContext{Request: lbReq, Route: r, LBEndpoints: r.LBEndpoints}
				_ = r.LBAlgorithm.Apply(ctx)
			}
			req, _ := http.NewRequest("GET", "http://"+host+"/", nil)
			resp, err := rt.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	b.Run("plain", func(b *testing.B) {
		u, _ := newUpstream(b, Config{})
		rs := lbRoutes(b, u, append([]string{host}, others...))
		_ = rs
		run(b, newTransport(b), skipperRoute(b, append([]string{host}, others...)))
	})
	b.Run("bulkhead", func(b *testing.B) {
		u, _ := newUpstream(b, Config{})
		rs := lbRoutes(b, u, append([]string{host}, others...))
		run(b, u.WrapRoundTripper(newTransport(b)), rs[0])
	})
}

// skipperRoute is an LB route with skipper's own round robin only.
func skipperRoute(b *testing.B, eps []string) *routing.Route {
	var addrs []string
	for _, e := range eps {
		addrs = append(addrs, "http://"+e)
	}
	r := &routing.Route{Route: eskip.Route{Id: "plain", BackendType: eskip.LBBackend, LBAlgorithm: "roundRobin", LBEndpoints: eskip.NewLBEndpoints(addrs)}}
	return loadbalancer.NewAlgorithmProvider().Do([]*routing.Route{r})[0]
}

// BenchmarkLBApplyParallel measures the balancer's read path under
// contention (no global lock: sync.Map + atomics).
func BenchmarkLBApplyParallel(b *testing.B) {
	for _, name := range []string{"inner", "wrapped", "wrapped-one-open"} {
		b.Run(name, func(b *testing.B) {
			u, _ := newUpstream(b, Config{})
			eps := []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80", "10.0.0.5:80"}
			r := lbRoutes(b, u, eps)[0]
			alg := r.LBAlgorithm
			if name == "inner" { // skipper's own round robin
				alg = skipperRoute(b, eps).LBAlgorithm
			}
			for _, ep := range eps {
				u.Breakers().Record(ep, Success)
			}
			if name == "wrapped-one-open" {
				openBreaker(u, eps[0])
			}
			req, _ := http.NewRequest("GET", "http://x/", nil)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ctx := &routing.LBContext{Request: req, Route: r, LBEndpoints: r.LBEndpoints}
					_ = alg.Apply(ctx)
				}
			})
		})
	}
}
