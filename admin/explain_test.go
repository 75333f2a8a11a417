package admin

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/filters"
	"github.com/zalando/skipper/predicates/query"
	"github.com/zalando/skipper/predicates/traffic"
	skrouting "github.com/zalando/skipper/routing"
	"github.com/zalando/skipper/routing/testdataclient"
	"sigs.k8s.io/yaml"

	"github.com/bulkhead-router/bulkhead/proxy"
	"github.com/bulkhead-router/bulkhead/routing"
	"github.com/bulkhead-router/bulkhead/upstream"
)

// explainHandler serves the admin endpoint over testdata/explain.yaml's
// table, translated as the router translates it and loaded into a real
// proxy (skipper's routing and matcher, bulkhead's filters, predicates,
// PrepareRequest and upstream layer, 2 shards): /explain asks that proxy.
func explainHandler(t *testing.T) http.Handler {
	t.Helper()
	data, err := os.ReadFile("testdata/explain.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var s routing.Snapshot
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		t.Fatalf("testdata/explain.yaml: %v", err)
	}
	table := routing.Translate(&s, routing.Options{GatewayPorts: []int32{80}, PublishAddresses: []string{"192.0.2.10"}})
	if len(table.Problems) > 0 {
		t.Fatalf("the fixture has problems: %+v", table.Problems)
	}
	up, err := upstream.New(upstream.Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	update := map[string][]string{}
	for _, b := range table.Backends {
		for _, ep := range b.Endpoints {
			update[b.Key.String()] = append(update[b.Key.String()], ep.Address)
		}
	}
	up.SetEndpoints(update)
	const shards = 2
	var clients []*testdataclient.Client
	for i := range shards {
		var routes []*eskip.Route
		for _, r := range table.EskipRoutes() {
			if s := routing.RouteShard(r, shards); s < 0 || s == i {
				routes = append(routes, r)
			}
		}
		dc := testdataclient.New(routes)
		t.Cleanup(dc.Close)
		clients = append(clients, dc)
	}
	predicates := []skrouting.PredicateSpec{routing.NewGatewayPortSpec(), routing.NewPathRegexpSpec(), routing.NewListenerIsolationSpec(), traffic.NewSegment(), query.New()}
	px := proxy.New(proxy.Options{
		Shards:           shards,
		ShardDataClients: func(i int) []skrouting.DataClient { return []skrouting.DataClient{clients[i]} },
		ShardOf:          func(r *http.Request) int { return routing.RequestShard(r, shards) },
		PrepareRequest:   routing.PrepareRequest,
		Filters: []filters.Spec{routing.NewRestorePathSpec(), up.PolicySpec(), up.BackendSpec(), up.MirrorSpec(),
			routing.NewRequestHeadersSpec(), routing.NewResponseHeadersSpec(), routing.NewRedirectSpec(), routing.NewRewriteSpec(), routing.NewSSLRedirectSpec()},
		Predicates:     predicates,
		PostProcessors: []skrouting.PostProcessor{up.PostProcessor()},
	})
	t.Cleanup(func() { px.Close() })
	<-px.FirstLoad()
	// One endpoint's breaker is open: five failures in a row.
	for range 5 {
		up.Breakers().Record("10.0.2.1:8080", upstream.Failure)
	}
	endpoints := func() []Backend {
		var out []Backend
		for _, b := range table.Backends {
			be := Backend{Name: b.Key.String()}
			for _, ep := range b.Endpoints {
				st := up.Breakers().Snapshot(ep.Address)
				be.Endpoints = append(be.Endpoints, Endpoint{Address: ep.Address, Ready: ep.Ready, Serving: ep.Serving, Terminating: ep.Terminating,
					Breaker: st.State, Failures: st.Failures, Requests: st.Requests, ConsecutiveFailures: st.ConsecutiveFailures})
			}
			out = append(out, be)
		}
		return out
	}
	return Handler(Options{
		Gatherer:  prometheus.NewRegistry(),
		Table:     func() (routing.Table, bool) { return table, true },
		Endpoints: endpoints,
		Explain: &ExplainOptions{Matcher: px, Predicates: predicates, GatewayPort: 80, Defaults: up.DefaultPolicy(),
			Retries: RetrySettings{MaxRetries: 2, BudgetRatio: 0.2, BudgetPerSecond: 3, BudgetWindow: Duration(10 * time.Second), Deadline: Duration(55 * time.Second)}},
	})
}

func explainQuery(u string, extra ...string) string {
	q := url.Values{"url": {u}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Add(extra[i], extra[i+1])
	}
	return "/explain?" + q.Encode()
}

func explainJSON(t *testing.T, h http.Handler, u string, extra ...string) Explanation {
	t.Helper()
	code, body := do(h, http.MethodGet, explainQuery(u, extra...), "application/json")
	if code != http.StatusOK {
		t.Fatalf("%s: %d %s", u, code, body)
	}
	var x Explanation
	if err := json.Unmarshal([]byte(body), &x); err != nil {
		t.Fatalf("%s: %v\n%s", u, err, body)
	}
	return x
}

func candidate(t *testing.T, x Explanation, namePart string) Candidate {
	t.Helper()
	for _, c := range x.Candidates {
		if strings.Contains(c.Origin, namePart) {
			return c
		}
	}
	t.Fatalf("no candidate %q among %d:\n%s", namePart, len(x.Candidates), x.Text())
	return Candidate{}
}

func routeIs(t *testing.T, x Explanation, origin string) {
	t.Helper()
	if x.Route == nil || !strings.Contains(x.Route.Origin, origin) {
		t.Fatalf("%s: want the route of %q\n%s", x.Request.URL, origin, x.Text())
	}
}

func TestExplainExactBeforePrefix(t *testing.T) {
	h := explainHandler(t)
	x := explainJSON(t, h, "http://shop.example.com/cart")
	routeIs(t, x, "ingress shop/cart: host shop.example.com path /cart (Exact)")
	if x.Route.Object == nil || x.Route.Object.Ingress.Name != "cart" {
		t.Errorf("the route's object: %+v", x.Route.Object)
	}
	if c := candidate(t, x, "ingress shop/cart-prefix:"); !c.Matches || !strings.Contains(c.Reason, "same path, the winner weighs more (1 against 0") ||
		!strings.Contains(c.Reason, "Exact path is tried before a Prefix") {
		t.Errorf("Prefix /cart: %+v", c)
	}
	if c := candidate(t, x, "ingress shop/web:"); !c.Matches || !strings.Contains(c.Reason, "the winner's path is longer") {
		t.Errorf("Prefix /: %+v", c)
	}
	if c := candidate(t, x, "ingress shop/api:"); c.Matches || !strings.Contains(c.Reason, "path: the route's prefix /api does not cover /cart") {
		t.Errorf("Prefix /api: %+v", c)
	}
	if c := candidate(t, x, "ingress shop/wild:"); !c.Matches || !strings.Contains(c.Reason, "a rule of an exact host, tried before a wildcard host") {
		t.Errorf("*.example.com: %+v", c)
	}
	if c := candidate(t, x, "ingress shop/status:"); c.Matches || !strings.Contains(c.Reason, "path: the route's prefix /status does not cover /cart") {
		t.Errorf("host-less /status: %+v", c)
	}
	// The cart backend: its endpoint's breaker is open.
	if x.Backend == nil || x.Backend.Name != "shop/cart:80" || len(x.Backend.Endpoints) != 1 || x.Backend.Endpoints[0].Breaker != "open" {
		t.Errorf("backend: %+v", x.Backend)
	}
	if !strings.Contains(x.Answer, "every endpoint's breaker is open") {
		t.Errorf("answer: %s", x.Answer)
	}

	// Below /cart the Exact rule no longer matches: the Prefix one wins.
	x = explainJSON(t, h, "http://shop.example.com/cart/items?x=1")
	routeIs(t, x, "ingress shop/cart-prefix: host shop.example.com path /cart (Prefix)")
	if c := candidate(t, x, "ingress shop/cart:"); c.Matches || !strings.Contains(c.Reason, "path: the route wants exactly /cart, the request's path is /cart/items") {
		t.Errorf("Exact /cart for /cart/items: %+v", c)
	}
	// "/cartx" is not under the prefix "/cart": element-wise.
	x = explainJSON(t, h, "http://shop.example.com/cartx")
	routeIs(t, x, "ingress shop/web:")
	if c := candidate(t, x, "ingress shop/cart-prefix:"); c.Matches || !strings.Contains(c.Reason, "prefixes match whole segments") {
		t.Errorf("Prefix /cart for /cartx: %+v", c)
	}
}

// The policy is the route's annotations over the router's defaults; the
// endpoints carry their EndpointSlice conditions.
func TestExplainPolicyAndEndpoints(t *testing.T) {
	h := explainHandler(t)
	x := explainJSON(t, h, "http://shop.example.com/")
	routeIs(t, x, "ingress shop/web:")
	p := x.Policy
	if p == nil || time.Duration(p.ResponseHeaderTimeout) != 5*time.Second || time.Duration(p.ConnectTimeout) != time.Second ||
		p.RequestTimeout != 0 || p.Retries.MaxRetries != 2 {
		t.Fatalf("policy: %+v", p)
	}
	if x.Backend == nil || x.Backend.Balancing != "round-robin" || x.Backend.Protocol != "http" || len(x.Backend.Endpoints) != 2 {
		t.Fatalf("backend: %+v", x.Backend)
	}
	// A backend with only a terminating (still serving) endpoint uses it.
	if x := explainJSON(t, h, "http://other.example.org/status"); x.Backend == nil || len(x.Backend.Endpoints) != 1 ||
		x.Backend.Endpoints[0].Ready || !x.Backend.Endpoints[0].Terminating || x.Backend.Endpoints[0].Breaker != "closed" {
		t.Errorf("the terminating endpoint: %+v", x.Backend)
	}
	code, text := do(h, http.MethodGet, explainQuery("http://shop.example.com/"), "")
	for _, want := range []string{
		"GET http://shop.example.com/\n",
		"ROUTE ing__shop__web__",
		"ingress shop/web: host shop.example.com path / (Prefix) -> service web port 80",
		"ANSWER forwarded to backend shop/web:80",
		"BACKEND shop/web:80 (balancing round-robin, protocol http)",
		"10.0.1.2:8080          ready=true  serving=true  terminating=false breaker=closed",
		`POLICY (the route's bulkheadUpstream(response-header-timeout=5s) over the router's defaults)`,
		"connect timeout 1s, response header timeout 5s, request timeout none, slow start off",
		"retries: up to 2 per request",
		"OTHER CANDIDATES",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	if code != http.StatusOK {
		t.Errorf("text: %d", code)
	}
}

func TestExplainHeaderRuleOfAnHTTPRoute(t *testing.T) {
	h := explainHandler(t)
	x := explainJSON(t, h, "http://beta.example.com/x", "header", "X-Canary: yes")
	routeIs(t, x, "httproute shop/beta rule 0 (canary) match 0, gateway infra/edge listener http port 80")
	if x.Backend == nil || x.Backend.Name != "shop/canary:80" {
		t.Errorf("backend: %+v", x.Backend)
	}
	if c := candidate(t, x, "httproute shop/beta rule 1 (main)"); !c.Matches || !strings.Contains(c.Reason, "same path, the winner weighs more") {
		t.Errorf("the catch-all rule: %+v", c)
	}
	x = explainJSON(t, h, "http://beta.example.com/x", "header", "X-Canary: no")
	routeIs(t, x, "httproute shop/beta rule 1 (main)")
	if c := candidate(t, x, "rule 0 (canary)"); c.Matches || !strings.Contains(c.Reason, `header X-Canary: the route wants "yes", the request has "no"`) {
		t.Errorf("the header rule: %+v", c)
	}
	if c := candidate(t, x, "ingress shop/wild:"); !c.Matches {
		t.Errorf("*.example.com covers beta.example.com: %+v", c)
	}
	// On a listener port the Gateway does not have, its routes do not
	// match: the wildcard Ingress takes the request.
	x = explainJSON(t, h, "http://beta.example.com/x", "port", "8080")
	routeIs(t, x, "ingress shop/wild:")
	if c := candidate(t, x, "rule 1 (main)"); c.Matches || !strings.Contains(c.Reason, "gateway port: the route serves listener (80), the request arrives on port 8080") {
		t.Errorf("the HTTPRoute on port 8080: %+v", c)
	}
}

func TestExplainWildcardAndHostless(t *testing.T) {
	h := explainHandler(t)
	x := explainJSON(t, h, "http://Foo.Example.com:8080/status/x")
	routeIs(t, x, "ingress shop/wild: host *.example.com path / (Prefix)")
	if c := candidate(t, x, "ingress shop/status:"); !c.Matches || !strings.Contains(c.Reason, "a rule of a wildcard host, tried before any host") {
		t.Errorf("host-less /status under a wildcard: %+v", c)
	}
	// One label only: a.b.example.com is not under *.example.com.
	x = explainJSON(t, h, "http://a.b.example.com/status")
	routeIs(t, x, "ingress shop/status: host * path /status (Prefix)")
	if c := candidate(t, x, "ingress shop/wild:"); c.Matches || !strings.Contains(c.Reason, "host: the route's host *.example.com does not cover a.b.example.com") {
		t.Errorf("*.example.com for a.b.example.com: %+v", c)
	}
}

func TestExplainNoRoute(t *testing.T) {
	h := explainHandler(t)
	x := explainJSON(t, h, "https://www.shop.example.com/nothing")
	if x.Route != nil || !strings.HasPrefix(x.Answer, "404") {
		t.Fatalf("want no route and 404: %+v", x)
	}
	if c := candidate(t, x, "ingress shop/web:"); c.Matches || !strings.Contains(c.Reason, "host: the route's host shop.example.com does not cover www.shop.example.com") {
		t.Errorf("a neighbouring host's rule: %+v", c)
	}
	if c := candidate(t, x, "ingress shop/status:"); c.Matches || !strings.Contains(c.Reason, "/status does not cover /nothing") {
		t.Errorf("the host-less rule: %+v", c)
	}
	if x.Request.Headers["X-Forwarded-Proto"][0] != "https" {
		t.Errorf("an https URL is explained as arriving over TLS: %v", x.Request.Headers)
	}
	_, text := do(h, http.MethodGet, explainQuery("http://www.shop.example.com/nothing"), "")
	if !strings.Contains(text, "NO ROUTE matches") || !strings.Contains(text, "ANSWER 404 Not Found") {
		t.Errorf("text:\n%s", text)
	}
}

func TestExplainBadInput(t *testing.T) {
	h := explainHandler(t)
	for _, c := range []struct{ query, want string }{
		{"/explain", "url is required"},
		{explainQuery("ftp://shop.example.com/"), "want an absolute http:// or https:// URL"},
		{explainQuery("/cart"), "want an absolute http:// or https:// URL"},
		{explainQuery("http://shop.example.com/%zz"), "invalid URL escape"},
		{explainQuery("http://shop.example.com/", "method", "G T"), "not an HTTP method token"},
		{explainQuery("http://shop.example.com/", "header", "NoColon"), "want Name: value"},
		{explainQuery("http://shop.example.com/", "header", "Host: other"), "the host comes from the url"},
		{explainQuery("http://shop.example.com/", "port", "0"), "1 to 65535"},
		{explainQuery("http://shop.example.com/", "remote", "nowhere"), "want the client's IP address"},
		{explainQuery("http://shop.example.com/", "hedaer", "X: y"), `unknown parameter "hedaer"`},
	} {
		code, body := do(h, http.MethodGet, c.query, "")
		if code != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %q, want 400 with %q", c.query, code, body, c.want)
		}
	}
}
