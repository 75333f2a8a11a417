package upstream

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/filters/builtin"
	"github.com/zalando/skipper/loadbalancer"
	skmetrics "github.com/zalando/skipper/metrics"
	skproxy "github.com/zalando/skipper/proxy"
	"github.com/zalando/skipper/routing"
	"github.com/zalando/skipper/routing/testdataclient"
)

// BenchmarkProxyOverhead measures the happy path through skipper's real
// routing and proxy, to two real backends, with the resilience layer off
// and on, in one run (issue: at least 95% of the throughput without it).
// Compare the ns/op: go test -bench ProxyOverhead -count 6 ./upstream/
// "off" is an LB route balanced by skipper alone, "backend" the route
// naming a backend (bulkheadBackend, skipper's dynamic backend).
func BenchmarkProxyOverhead(b *testing.B) {
	logrus.SetOutput(io.Discard) // skipper's route-update lines would garble the results
	backend := func() *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, "hello from a pod\n")
		}))
	}
	a, c := backend(), backend()
	defer a.Close()
	defer c.Close()
	// Both algorithms bulkhead offers: off, they are skipper's own; with
	// a backend, ours with breakers, budgeted retries and timeouts.
	for _, alg := range []string{AlgorithmLeastInFlight, AlgorithmRoundRobin} {
		route := &eskip.Route{Id: "web", Path: "/", BackendType: eskip.LBBackend, LBAlgorithm: alg,
			LBEndpoints: []*eskip.LBEndpoint{{Address: a.URL}, {Address: c.URL}}}
		for _, mode := range []string{"off", "backend"} {
			b.Run(alg+"/resilience="+mode, func(b *testing.B) {
				// As bulkhead's proxy: skipper's endpoint registry (its
				// powerOfRandomNChoices reads in-flight counts from it).
				registry := routing.NewEndpointRegistry(routing.RegistryOptions{})
				post := []routing.PostProcessor{loadbalancer.NewAlgorithmProvider(), registry}
				var wrap func(http.Handler) http.Handler
				params := skproxy.Params{Metrics: skmetrics.Void, AccessLogDisabled: true, EndpointRegistry: registry}
				filterRegistry := builtin.MakeRegistry()
				r := route
				if mode == "backend" {
					u, err := New(Config{RefuseUnrouted: true}, prometheus.NewRegistry(), nil)
					if err != nil {
						b.Fatal(err)
					}
					post = append(post, u.PostProcessor())
					params.CustomHttpRoundTripperWrap = u.WrapRoundTripper
					wrap = u.Handler // as bulkhead serves: the request context carries route policies
					filterRegistry.Register(u.BackendSpec())
					// The route names a backend; its endpoints are outside the table.
					u.SetEndpoints(map[string][]string{"default/web:80": {a.Listener.Addr().String(), c.Listener.Addr().String()}})
					r = &eskip.Route{Id: "web", Path: "/", BackendType: eskip.DynamicBackend,
						Filters: []*eskip.Filter{{Name: BackendFilterName, Args: []any{"default/web:80", alg}}}}
				}
				dc := testdataclient.New([]*eskip.Route{r})
				rt := routing.New(routing.Options{FilterRegistry: filterRegistry, DataClients: []routing.DataClient{dc},
					PostProcessors: post, SignalFirstLoad: true})
				defer rt.Close()
				<-rt.FirstLoad()
				params.Routing = rt
				px := skproxy.WithParams(params)
				defer px.Close()
				var h http.Handler = px
				if wrap != nil {
					h = wrap(px)
				}
				front := httptest.NewServer(h)
				defer front.Close()
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						resp, err := client.Get(front.URL + "/")
						if err != nil {
							b.Fatal(err)
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							b.Fatalf("status %d", resp.StatusCode)
						}
					}
				})
			})
		}
	}
}
