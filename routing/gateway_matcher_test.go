package routing

import (
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zalando/skipper/filters"
	"github.com/zalando/skipper/filters/filtertest"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/zalando/skipper/predicates/query"
	"github.com/zalando/skipper/predicates/traffic"
	skrouting "github.com/zalando/skipper/routing"
	"github.com/zalando/skipper/routing/testdataclient"
)

// newGatewayRouter loads a table into skipper's real routing with the
// predicates Gateway routes use beside skipper's built-in ones.
func newGatewayRouter(t *testing.T, table Table) *router {
	t.Helper()
	dc := testdataclient.New(table.EskipRoutes())
	log := &recordingLog{}
	rt := skrouting.New(skrouting.Options{
		FilterRegistry:  gatewayFilterRegistry(),
		Predicates:      []skrouting.PredicateSpec{NewGatewayPortSpec(), NewPathRegexpSpec(), NewListenerIsolationSpec(), traffic.NewSegment(), query.New()},
		DataClients:     []skrouting.DataClient{dc},
		SignalFirstLoad: true,
		Log:             log,
	})
	t.Cleanup(func() {
		dc.Close()
		rt.Close()
	})
	<-rt.FirstLoad()
	if errs := log.errors(); len(errs) > 0 {
		t.Fatalf("skipper rejected routes: %v", errs)
	}
	if got := routeCount(t, rt, false); got != len(table.Routes) {
		t.Fatalf("skipper holds %d valid routes, want %d", got, len(table.Routes))
	}
	r := &router{routing: rt, byID: map[string]Route{}}
	for _, route := range table.Routes {
		r.byID[route.Eskip.Id] = *route
	}
	return r
}

// gatewayLookup asks as the proxy will: the Gateway port in the context
// (none when port is 0), skipper's routing context, PrepareRequest.
func (r *router) gatewayLookup(t *testing.T, port int32, method, host, target string, header http.Header) string {
	t.Helper()
	u, err := url.ParseRequestURI(target)
	if err != nil {
		t.Fatal(err)
	}
	if header == nil {
		header = http.Header{}
	}
	req := &http.Request{Method: method, Host: host, URL: u, Header: header}
	ctx := skrouting.NewContext(t.Context())
	if port != 0 {
		ctx = WithGatewayPort(ctx, port)
	}
	req = req.WithContext(ctx)
	chosen := r.route(req)
	if chosen == nil {
		return "404"
	}
	route := r.byID[chosen.Id]
	g := route.Gateway
	if g == nil {
		return "ingress " + route.Ingress.String()
	}
	if g.BackendRef < 0 {
		return fmt.Sprintf("%s r%d 500", g.HTTPRoute.Name, g.Rule)
	}
	return fmt.Sprintf("%s r%d %s", g.HTTPRoute.Name, g.Rule, route.Service)
}

func TestGatewayMatcherPrecedence(t *testing.T) {
	s, o := loadFixture(t, filepath.Join("testdata", "gateway_precedence.yaml"))
	table := Translate(s, o)
	r := newGatewayRouter(t, table)
	// The table split into shards (RouteShard), each request looked up in
	// its own shard (RequestShard), chooses the same routes.
	shards := map[int][]*router{}
	for _, n := range []int{2, 3} {
		for i := range n {
			sub := Table{Backends: table.Backends}
			for _, route := range table.Routes {
				if s := RouteShard(route.Eskip, n); s == i || s < 0 {
					sub.Routes = append(sub.Routes, route)
				}
			}
			sr := newGatewayRouter(t, sub)
			sr.byID = r.byID
			shards[n] = append(shards[n], sr)
		}
	}
	canary := http.Header{"X-Canary": {"yes"}}
	for _, c := range []struct {
		port         int32
		method, host string
		target       string
		header       http.Header
		want         string
	}{
		// Host: exact before wildcard; the wildcard matches one or more
		// labels, never the bare domain.
		{80, "GET", "shop.example.com", "/x", nil, "b-shop r0 app"},
		{80, "GET", "x.example.com", "/x", nil, "a-wild r0 app"},
		{80, "GET", "a.b.example.com", "/x", nil, "a-wild r0 app"},
		{80, "GET", "A.B.C.Example.COM:80", "/", nil, "a-wild r0 app"},
		{80, "GET", "example.com", "/", nil, "404"},
		{80, "GET", "x.example.org", "/", nil, "404"},
		// Path: Exact before prefix, longer prefix first; then method, then
		// the number of header matches; then the oldest route.
		{80, "GET", "api.example.com", "/v1", nil, "d-older r3 app"},
		{80, "GET", "api.example.com", "/v1/x", nil, "d-older r0 app"},
		{80, "GET", "api.example.com", "/v1/x", canary, "d-older r1 app"},
		{80, "POST", "api.example.com", "/v1/x", canary, "d-older r2 app"},
		{80, "GET", "api.example.com", "/v1/deep/x", nil, "d-older r4 app"}, // rule order breaks the tie
		{80, "GET", "api.example.com", "/v1x", nil, "a-wild r0 app"},        // element-wise prefix
		// Query params count.
		{80, "GET", "api.example.com", "/q?debug=1", nil, "d-older r6 app"},
		{80, "GET", "api.example.com", "/q?debug=2", nil, "d-older r7 app"},
		// Ports: the listener on 8080 serves only requests that came in
		// on 8080; without a port in the context no Gateway route matches.
		{8080, "GET", "api.example.com", "/v1", nil, "e-alt r0 app"},
		{8080, "GET", "shop.example.com", "/", nil, "404"},
		{0, "GET", "shop.example.com", "/", nil, "404"},
		// All weights 0: 500.
		{80, "GET", "split.example.com", "/zero", nil, "f-split r1 500"},
	} {
		if got := r.gatewayLookup(t, c.port, c.method, c.host, c.target, c.header); got != c.want {
			t.Errorf("port %d %s %s%s %v: got %q, want %q", c.port, c.method, c.host, c.target, c.header, got, c.want)
		}
		for n, rs := range shards {
			probe := &http.Request{Host: c.host, URL: &url.URL{Path: c.target}}
			PrepareRequest(probe)
			if got := rs[RequestShard(probe, n)].gatewayLookup(t, c.port, c.method, c.host, c.target, c.header); got != c.want {
				t.Errorf("%d shards: port %d %s %s%s: got %q, want %q", n, c.port, c.method, c.host, c.target, got, c.want)
			}
		}
	}
}

// Weighted backendRefs split a rule's traffic with TrafficSegment: every
// request matches exactly one share, zero-weight backends none, and the
// shares follow the weights (3:1 here).
func TestGatewayMatcherWeights(t *testing.T) {
	s, o := loadFixture(t, filepath.Join("testdata", "gateway_precedence.yaml"))
	r := newGatewayRouter(t, Translate(s, o))
	counts := map[string]int{}
	const n = 2000
	for range n {
		counts[r.gatewayLookup(t, 80, "GET", "split.example.com", "/", nil)]++
	}
	if len(counts) != 2 || counts["f-split r0 app"]+counts["f-split r0 canary"] != n {
		t.Fatalf("requests went to %v", counts)
	}
	// 3:1 of 2000 is 1500:500; 1300 is more than 9 standard deviations away.
	if c := counts["f-split r0 canary"]; c < 300 || c > 700 {
		t.Errorf("canary got %d of %d requests, want about %d", c, n, n/4)
	}
}

func TestGatewayPortPredicate(t *testing.T) {
	spec := NewGatewayPortSpec()
	for _, bad := range [][]any{nil, {"80"}, {float64(0)}, {float64(70000)}, {1.5}, {float64(80), float64(81)}} {
		if _, err := spec.Create(bad); err == nil {
			t.Errorf("Create(%v) accepted", bad)
		}
	}
	p, err := spec.Create([]any{float64(8080)})
	if err != nil {
		t.Fatal(err)
	}
	req := &http.Request{}
	if p.Match(req) {
		t.Error("a request without a Gateway port matched")
	}
	if !p.Match(req.WithContext(WithGatewayPort(t.Context(), 8080))) {
		t.Error("port 8080 did not match")
	}
	if p.Match(req.WithContext(WithGatewayPort(t.Context(), 80))) {
		t.Error("port 80 matched BulkheadGatewayPort(8080)")
	}
}

func gatewayFilterRegistry() filters.Registry {
	reg := filterRegistry()
	reg.Register(NewRequestHeadersSpec())
	reg.Register(NewResponseHeadersSpec())
	reg.Register(NewRedirectSpec())
	reg.Register(NewRewriteSpec())
	reg.Register(stubPolicySpec{})
	reg.Register(stubMirrorSpec{})
	return reg
}

// The header filters take values literally (skipper's setRequestHeader
// would expand "${...}"), in the spec's order: set, add, remove.
func TestGatewayHeaderFilters(t *testing.T) {
	for _, bad := range [][]any{nil, {"set", "X"}, {"replace", "X", "v"}, {"set", "", "v"}, {"set", "X", 1.0}} {
		if _, err := NewRequestHeadersSpec().CreateFilter(bad); err == nil {
			t.Errorf("CreateFilter(%v) accepted", bad)
		}
	}
	if _, err := headerFilterArgs(&gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: "bad name", Value: "v"}}}); err == "" {
		t.Error("a header name with a space was accepted")
	}
	args, _ := headerFilterArgs(&gatewayv1.HTTPHeaderFilter{
		Set:    []gatewayv1.HTTPHeader{{Name: "x-template", Value: "${request.path}"}},
		Add:    []gatewayv1.HTTPHeader{{Name: "X-Added", Value: "2"}},
		Remove: []string{"x-internal"},
	})
	f, err := NewRequestHeadersSpec().CreateFilter(args)
	if err != nil {
		t.Fatal(err)
	}
	req := &http.Request{Header: http.Header{"X-Template": {"old"}, "X-Added": {"1"}, "X-Internal": {"secret"}}, URL: &url.URL{Path: "/p"}}
	f.Request(&filtertest.Context{FRequest: req})
	want := http.Header{"X-Template": {"${request.path}"}, "X-Added": {"1", "2"}}
	if !reflect.DeepEqual(req.Header, want) {
		t.Errorf("request headers %v, want %v", req.Header, want)
	}
	rf, err := NewResponseHeadersSpec().CreateFilter([]any{"set", "cache-control", "no-store"})
	if err != nil {
		t.Fatal(err)
	}
	rsp := &http.Response{Header: http.Header{"Cache-Control": {"max-age=60"}}}
	rf.Request(&filtertest.Context{FRequest: req, FResponse: rsp})
	rf.Response(&filtertest.Context{FRequest: req, FResponse: rsp})
	if got := rsp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", got)
	}
}

// stubPolicySpec stands in for the upstream layer's bulkheadUpstream
// filter, which this package must not import: it accepts the keys
// Gateway timeouts set, with durations, and does nothing.
type stubPolicySpec struct{}

func (stubPolicySpec) Name() string { return upstreamPolicyFilter }

func (stubPolicySpec) CreateFilter(args []any) (filters.Filter, error) {
	for _, a := range args {
		s, _ := a.(string)
		k, v, _ := strings.Cut(s, "=")
		if _, err := time.ParseDuration(v); err != nil || k != policyRequestTimeout && k != policyResponseHeaderTimeout {
			return nil, filters.ErrInvalidFilterParameters
		}
	}
	return stubPolicy{}, nil
}

type stubPolicy struct{}

func (stubPolicy) Request(filters.FilterContext)  {}
func (stubPolicy) Response(filters.FilterContext) {}
