package upstream

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/filters/filtertest"
	"github.com/zalando/skipper/loadbalancer"
	"github.com/zalando/skipper/routing"
)

// BenchmarkHappyPath compares one proxied GET through skipper's default
// transport shape without the resilience layer (skipper's own round
// robin chooses) and with it (all breakers closed, backend answers 200).
func BenchmarkHappyPath(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	host := srv.Listener.Addr().String()
	others := []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"}

	b.Run("plain", func(b *testing.B) {
		r := skipperRoute(b, append([]string{host}, others...))
		rt := newTransport(b)
		lbReq, _ := http.NewRequest("GET", "http://x/", nil)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			ctx := &routing.LBContext{Request: lbReq, Route: r, LBEndpoints: r.LBEndpoints}
			_ = r.LBAlgorithm.Apply(ctx)
			req, _ := http.NewRequest("GET", "http://"+host+"/", nil)
			resp, err := rt.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	// The backend seam: the bulkheadBackend filter chooses (the live
	// endpoint is the backend's only one: the round tripper sends to the
	// endpoint chosen) and the round tripper serves the backend in the
	// request's slot (which Handler allocates: counted here).
	b.Run("backend", func(b *testing.B) {
		u, _ := newUpstream(b, Config{})
		u.SetEndpoints(map[string][]string{"k": {host}})
		f := backendFilterOf(b, u, "k")
		rt := u.WrapRoundTripper(newTransport(b))
		bag := map[string]any{}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			req, _ := http.NewRequest("GET", "http://x/", nil)
			req = req.WithContext(&policySlot{Context: req.Context()})
			f.Request(&filtertest.Context{FRequest: req, FStateBag: bag})
			req.URL.Host = host // as skipper sets the dynamic target
			resp, err := rt.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
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

// BenchmarkBackendChooseParallel measures the bulkheadBackend filter's
// choice under contention: an atomic load of the key map and of the
// backend's set, the balancer, two state bag entries (no lock).
func BenchmarkBackendChooseParallel(b *testing.B) {
	for _, name := range []string{"closed", "one-open"} {
		b.Run(name, func(b *testing.B) {
			u, _ := newUpstream(b, Config{})
			eps := []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80", "10.0.0.5:80"}
			u.SetEndpoints(map[string][]string{"k": eps})
			if name == "one-open" {
				openBreaker(u, eps[0])
			}
			f := backendFilterOf(b, u, "k")
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest("GET", "http://x/", nil)
				req = req.WithContext(&policySlot{Context: req.Context()})
				ctx := &filtertest.Context{FRequest: req, FStateBag: map[string]any{}}
				for pb.Next() {
					f.Request(ctx)
				}
			})
		})
	}
}
