package upstream

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sony/gobreaker/v2"
	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/filters"
	"github.com/zalando/skipper/filters/builtin"
	"github.com/zalando/skipper/filters/filtertest"
	"github.com/zalando/skipper/loadbalancer"
	skmetrics "github.com/zalando/skipper/metrics"
	skproxy "github.com/zalando/skipper/proxy"
	"github.com/zalando/skipper/routing"
	"github.com/zalando/skipper/routing/testdataclient"

	bhproxy "github.com/bulkhead-router/bulkhead/proxy"
)

// dynFront serves routes (eskip) through skipper's real routing and proxy
// set up as bulkhead does: Handler, the policy and backend filters, the
// post-processor (unless withoutPost), the round tripper, upgrades on.
func dynFront(t testing.TB, u *Upstream, routes string, withoutPost ...bool) string {
	t.Helper()
	rs, err := eskip.Parse(routes)
	if err != nil {
		t.Fatal(err)
	}
	registry := builtin.MakeRegistry()
	registry.Register(u.PolicySpec())
	registry.Register(u.BackendSpec())
	endpoints := routing.NewEndpointRegistry(routing.RegistryOptions{})
	post := []routing.PostProcessor{loadbalancer.NewAlgorithmProvider(), endpoints}
	if len(withoutPost) == 0 || !withoutPost[0] {
		post = append(post, u.PostProcessor())
	}
	rt := routing.New(routing.Options{FilterRegistry: registry, DataClients: []routing.DataClient{testdataclient.New(rs)},
		PostProcessors: post, SignalFirstLoad: true})
	t.Cleanup(rt.Close)
	<-rt.FirstLoad()
	px := skproxy.WithParams(skproxy.Params{Routing: rt, Metrics: skmetrics.Void, AccessLogDisabled: true,
		EndpointRegistry: endpoints, Flags: skproxy.PreserveHost | skproxy.HopHeadersRemoval,
		CustomHttpRoundTripperWrap: u.WrapRoundTripper, ResponseHeaderTimeout: -1, ExperimentalUpgrade: true,
		CloseIdleConnsPeriod: -1})
	t.Cleanup(func() { px.Close() })
	front := httptest.NewServer(u.Handler(px))
	t.Cleanup(front.Close)
	return front.Listener.Addr().String()
}

// webRoute is a route naming testBackendKey, as routing emits it.
const webRoute = `web: PathSubtree("/") -> bulkheadBackend("default/web:80") -> <dynamic>;`

// get sends a GET to the front and returns the status and body.
func get(t testing.TB, client *http.Client, front, path string) (int, string) {
	t.Helper()
	resp, err := client.Get("http://" + front + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func newClient(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func TestBackendFilterArgs(t *testing.T) {
	u, _ := newUpstream(t, Config{})
	for _, good := range [][]any{{"ns/web:80"}, {"ns/web:80", AlgorithmRoundRobin}, {"ns/web:80", AlgorithmLeastInFlight}} {
		f, err := u.BackendSpec().CreateFilter(good)
		if err != nil {
			t.Errorf("%v: %v", good, err)
			continue
		}
		if want := len(good) == 1 || good[1] == AlgorithmLeastInFlight; f.(*backendFilter).leastInFlight != want {
			t.Errorf("%v: least in-flight %v", good, !want)
		}
	}
	for _, bad := range [][]any{nil, {""}, {float64(3)}, {"ns/web:80", "consistentHash"}, {"ns/web:80", float64(1)}, {"a", "roundRobin", "x"}} {
		if _, err := u.BackendSpec().CreateFilter(bad); err == nil || !errors.Is(err, filters.ErrInvalidFilterParameters) ||
			!strings.Contains(err.Error(), BackendFilterName) {
			t.Errorf("%v: accepted or unclear error: %v", bad, err)
		}
	}
}

// filterChoices runs f's Request n times with the route policy pol (nil:
// none) and counts the endpoints it made the dynamic target.
func filterChoices(t testing.TB, f filters.Filter, pol *Policy, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := 0; i < n; i++ {
		req := httptest.NewRequest("GET", "http://example.org/", nil)
		slot := &policySlot{Context: req.Context(), pol: pol}
		ctx := &filtertest.Context{FRequest: req.WithContext(slot), FStateBag: map[string]any{}}
		f.Request(ctx)
		if ctx.FServed {
			t.Fatalf("served %d instead of choosing", ctx.FResponse.StatusCode)
		}
		host, _ := ctx.FStateBag[filters.DynamicBackendHostKey].(string)
		if ctx.FStateBag[filters.DynamicBackendSchemeKey] != "http" || slot.be == nil || slot.ep == nil || slot.ep.endpoint != host {
			t.Fatalf("state bag %v, slot backend %v endpoint %v", ctx.FStateBag, slot.be, slot.ep)
		}
		got[host]++
	}
	return got
}

func backendFilterOf(t testing.TB, u *Upstream, args ...any) filters.Filter {
	t.Helper()
	f, err := u.BackendSpec().CreateFilter(args)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestBackendSkipsOpenAndPanicThreshold(t *testing.T) {
	u, _ := newUpstream(t, Config{})
	eps := []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"}
	u.SetEndpoints(map[string][]string{"k": eps})
	f := backendFilterOf(t, u, "k")
	if got := filterChoices(t, f, nil, 100); len(got) != 4 {
		t.Fatalf("all closed: %v", got)
	}
	openBreaker(u, eps[0])
	if got := filterChoices(t, f, nil, 100); got[eps[0]] != 0 || len(got) != 3 {
		t.Fatalf("one open: %v", got)
	}
	openBreaker(u, eps[1]) // exactly half: still skipped
	if got := filterChoices(t, f, nil, 100); got[eps[0]] != 0 || got[eps[1]] != 0 || len(got) != 2 {
		t.Fatalf("half open: %v", got)
	}
	openBreaker(u, eps[2]) // 3 of 4 open: panic, breakers ignored
	if got := filterChoices(t, f, nil, 100); len(got) != 4 {
		t.Fatalf("panic threshold: %v", got)
	}

	// A new set keeps the breakers (keyed by ip:port); the endpoint that
	// left keeps its state for one update, then it is dropped.
	u.SetEndpoints(map[string][]string{"k": eps[1:]})
	if got := filterChoices(t, f, nil, 100); len(got) != 3 || got[eps[0]] != 0 { // 2 of 3 open: panic
		t.Fatalf("after the swap: %v", got)
	}
	if _, kept := u.breakers.m.Load(eps[0]); !kept || u.Breakers().State(eps[0]) != gobreaker.StateOpen {
		t.Fatal("the endpoint that just left lost its state at once")
	}
	u.SetEndpoints(map[string][]string{"other": {"10.0.0.9:80"}})
	if _, kept := u.breakers.m.Load(eps[0]); kept || u.Breakers().State(eps[1]) != gobreaker.StateOpen {
		t.Fatalf("one update later: the departed endpoint kept %v, the staying ones open %v", kept, u.Breakers().State(eps[1]))
	}
	if n := u.Breakers().Len(); n != 4 {
		t.Fatalf("breakers %d, want 4 (3 of k, 1 of other)", n)
	}
}

func TestBackendRoundRobinIsEven(t *testing.T) {
	u, _ := newUpstream(t, Config{})
	eps := []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"}
	u.SetEndpoints(map[string][]string{"k": eps})
	got := filterChoices(t, backendFilterOf(t, u, "k", AlgorithmRoundRobin), nil, 300)
	for _, e := range eps {
		if got[e] != 100 {
			t.Fatalf("round robin not even: %v", got)
		}
	}
}

func TestBackendLeastInFlightAvoidsBusyEndpoint(t *testing.T) {
	u, _ := newUpstream(t, Config{})
	eps := []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"}
	u.SetEndpoints(map[string][]string{"k": eps})
	u.Breakers().get(eps[0]).inflight.Store(50)
	got := filterChoices(t, backendFilterOf(t, u, "k"), nil, 2000)
	if got[eps[0]] != 0 {
		t.Fatalf("busy endpoint still chosen: %v", got)
	}
	for _, e := range eps[1:] {
		if got[e] < 500 {
			t.Fatalf("idle endpoints not shared evenly: %v", got)
		}
	}
}

func TestBackendSlowStart(t *testing.T) {
	for _, alg := range []string{AlgorithmRoundRobin, AlgorithmLeastInFlight} {
		t.Run(alg, func(t *testing.T) {
			u, _ := newUpstream(t, Config{})
			now := time.Unix(1000, 0)
			u.breakers.now = func() time.Time { return now }
			pol := u.policies.intern(Policy{SlowStart: 100 * time.Second, SlowStartSet: true})
			f := backendFilterOf(t, u, "k", alg)
			// The first update's endpoints were serving before the router
			// started: no slow start for them.
			old := []string{"10.0.0.1:80", "10.0.0.2:80"}
			u.SetEndpoints(map[string][]string{"k": old})
			if got := filterChoices(t, f, pol, 1000); got[old[0]] < 400 || got[old[1]] < 400 {
				t.Fatalf("first update: %v", got)
			}
			// One that joins later starts at 10% of its share and ramps up.
			fresh := "10.0.0.3:80"
			u.SetEndpoints(map[string][]string{"k": append(old, fresh)})
			share := func(p *Policy) float64 { return float64(filterChoices(t, f, p, 6000)[fresh]) / 6000 }
			if s := share(pol); s > 0.12 {
				t.Fatalf("new endpoint got %.2f of traffic at once", s)
			}
			if s := share(nil); s < 0.28 { // a route without slow start: its full share
				t.Fatalf("without slow start the new endpoint got %.2f", s)
			}
			now = now.Add(50 * time.Second)
			mid := share(pol)
			now = now.Add(60 * time.Second)
			full := share(pol)
			if !(mid > 0.15 && mid < full && full > 0.28) {
				t.Fatalf("shares: half-way %.2f, after %.2f", mid, full)
			}
		})
	}
}

// SetEndpoints swaps a backend's set without copying the key map; adding
// or removing a backend replaces the map. An empty list keeps the backend.
func TestSetEndpointsCopiesTheMapOnlyForNewOrGoneBackends(t *testing.T) {
	u, reg := newUpstream(t, Config{})
	u.SetEndpoints(map[string][]string{"a": {"10.0.0.1:80"}, "b": {"10.0.0.2:80"}})
	m := u.backends.Load()
	u.SetEndpoints(map[string][]string{"a": {"10.0.0.3:80", "10.0.0.1:80", "10.0.0.3:80"}, "b": {}})
	if u.backends.Load() != m {
		t.Fatal("the key map was copied for a set swap")
	}
	if got := u.Backends(); fmt.Sprint(got) != "map[a:[10.0.0.1:80 10.0.0.3:80] b:[]]" {
		t.Fatalf("backends %v (want sorted, deduplicated, b kept empty)", got)
	}
	for _, k := range []string{"a", "b"} { // series exist for backends that had requests
		(*u.backends.Load())[k].counters().requests.Inc()
	}
	u.SetEndpoints(map[string][]string{"b": nil, "c": {"10.0.0.4:80"}})
	(*u.backends.Load())["c"].counters().requests.Inc()
	if u.backends.Load() == m {
		t.Fatal("the key map was not replaced when backends came and went")
	}
	if got := u.Backends(); fmt.Sprint(got) != "map[a:[10.0.0.1:80 10.0.0.3:80] c:[10.0.0.4:80]]" {
		t.Fatalf("backends %v", got)
	}
	if n, _ := testutil.GatherAndCount(reg, MetricRequests); n != 2 { // a and c
		t.Fatalf("%d request series after b left, want 2", n)
	}
}

// A router knows every backend and endpoint of the cluster; only those
// that get a request through it have metric series.
func TestSeriesOnlyForBackendsWithTraffic(t *testing.T) {
	u, reg := newUpstream(t, Config{})
	update := map[string][]string{}
	for i := range 1000 {
		update[fmt.Sprintf("ns/svc-%d:80", i)] = []string{fmt.Sprintf("10.1.%d.%d:8080", i/250, i%250+1)}
	}
	u.SetEndpoints(update)
	if n, _ := testutil.GatherAndCount(reg, MetricRequests, MetricRetries, MetricTimeouts, MetricEndpointRequests); n != 0 {
		t.Fatalf("%d series for 1000 backends without traffic, want 0", n)
	}
	be := (*u.backends.Load())["ns/svc-7:80"]
	be.counters().requests.Inc()
	be.set.Load().state[0].counters().requests.Inc()
	if n, _ := testutil.GatherAndCount(reg, MetricRequests); n != 1 {
		t.Fatalf("%d backend request series after one request, want 1", n)
	}
	if n, _ := testutil.GatherAndCount(reg, MetricEndpointRequests); n != 1 {
		t.Fatalf("%d endpoint request series after one request, want 1", n)
	}
}

// Nor retry budgets: a backend's is made by its first request.
func TestBudgetOnlyForBackendsWithTraffic(t *testing.T) {
	log := &hitLog{}
	u, _ := newUpstream(t, Config{})
	install(u, []string{newBackend(t, 200, log).addr()})
	u.SetEndpoints(map[string][]string{"ns/idle:80": {"10.1.0.1:8080"}})
	be, idle := (*u.backends.Load())[testBackendKey], (*u.backends.Load())["ns/idle:80"]
	if be.budget.Load() != nil || idle.budget.Load() != nil {
		t.Fatal("a retry budget made before any request")
	}
	rt := wrap(u, newTransport(t))
	for range 2 {
		if resp, err := do(t, rt, "GET", be.set.Load().state[0].endpoint, nil); err != nil || resp.StatusCode != 200 {
			t.Fatal(resp, err)
		}
	}
	b := be.budget.Load()
	if b == nil || idle.budget.Load() != nil {
		t.Fatalf("budgets after requests to one backend: %v and %v, want one for it alone", b, idle.budget.Load())
	}
	if be.retryBudget(u) != b {
		t.Fatal("a second budget made for the same backend")
	}
}

// Config.Label names backends in metrics; backends sharing a label share
// its series, which go with the last of them.
func TestBackendsSharingALabel(t *testing.T) {
	u, reg := newUpstream(t, Config{Label: func(key string) string { return strings.SplitN(key, ":", 2)[0] }})
	u.SetEndpoints(map[string][]string{"ns/web:80": {"10.0.0.1:80"}, "ns/web:8080": {"10.0.0.1:8080"}})
	for _, key := range []string{"ns/web:80", "ns/web:8080"} {
		(*u.backends.Load())[key].counters().requests.Inc()
	}
	if v := testutil.ToFloat64(u.metrics.requests.WithLabelValues("ns/web")); v != 2 {
		t.Fatalf("requests of the shared label %v, want 2", v)
	}
	u.SetEndpoints(map[string][]string{"ns/web:80": nil})
	if n, _ := testutil.GatherAndCount(reg, MetricRequests); n != 1 {
		t.Fatalf("%d request series while a backend of the label remains, want 1", n)
	}
	u.SetEndpoints(map[string][]string{"ns/web:8080": nil})
	if n, _ := testutil.GatherAndCount(reg, MetricRequests, MetricRetries, MetricTimeouts); n != 0 {
		t.Fatalf("%d series after the label's last backend left, want 0", n)
	}
}

// errorShape checks an answer has exactly the shape of skipper's own
// error answers, which bulkhead's proxy replaces with its generic one.
func errorShape(t *testing.T, resp *http.Response, code int) {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	want := http.StatusText(code) + "\n"
	if resp.StatusCode != code || string(body) != want || resp.Header.Get("Content-Length") != fmt.Sprint(len(want)) ||
		resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("answer %d %q %v, want %d with skipper's error shape", resp.StatusCode, body, resp.Header, code)
	}
}

func TestBackendWithoutEndpointsAnswers503(t *testing.T) {
	log := &hitLog{}
	pod := newBackend(t, 200, log)
	u, _ := newUpstream(t, Config{RefuseUnrouted: true})
	front := dynFront(t, u, webRoute)
	client := newClient(t)
	for _, update := range []map[string][]string{nil, {testBackendKey: {}}, {testBackendKey: {pod.addr()}}, {testBackendKey: nil}} {
		if update != nil {
			u.SetEndpoints(update)
		}
		resp, err := client.Get("http://" + front + "/x")
		if err != nil {
			t.Fatal(err)
		}
		if eps := update[testBackendKey]; len(eps) > 0 {
			if resp.StatusCode != 200 || log.total() != 1 {
				t.Fatalf("with an endpoint: %d, pod hits %d", resp.StatusCode, log.total())
			}
		} else {
			errorShape(t, resp, http.StatusServiceUnavailable)
		}
		resp.Body.Close()
	}
	if n := testutil.ToFloat64(u.metrics.unrouted); n != 0 {
		t.Fatalf("a 503 of the filter counted as unrouted: %v", n)
	}
}

// Requests that no bulkhead backend chose an endpoint for (a route
// without the filter: a network backend, or <dynamic>, which would go to
// the client's Host) are never sent with RefuseUnrouted.
func TestRefuseUnrouted(t *testing.T) {
	for _, refuse := range []bool{true, false} {
		t.Run(fmt.Sprintf("refuse=%v", refuse), func(t *testing.T) {
			log := &hitLog{}
			pod := newBackend(t, 200, log)
			u, _ := newUpstream(t, Config{RefuseUnrouted: refuse})
			routes := fmt.Sprintf(`net: Path("/net") -> "http://%s"; dyn: Path("/dyn") -> <dynamic>;`, pod.addr())
			front := dynFront(t, u, routes, true) // without the post-processor, which drops such dynamic routes
			for _, path := range []string{"/net", "/dyn"} {
				req, _ := http.NewRequest("GET", "http://"+front+path, nil)
				req.Host = pod.addr() // <dynamic> without a target: the Host header's
				resp, err := newClient(t).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				if refuse {
					errorShape(t, resp, http.StatusBadGateway)
				} else if resp.StatusCode != 200 {
					t.Fatalf("%s: %d", path, resp.StatusCode)
				}
				resp.Body.Close()
			}
			want := map[bool]int{true: 0, false: 2}[refuse]
			if log.total() != want || testutil.ToFloat64(u.metrics.unrouted) != float64(2-want) {
				t.Fatalf("pod hits %d, refusals counted %v", log.total(), testutil.ToFloat64(u.metrics.unrouted))
			}
		})
	}
	// The post-processor drops a dynamic route without the filter: no
	// request of it ever reaches skipper's dynamic backend (upgrades,
	// which bypass the round tripper, included).
	u, _ := newUpstream(t, Config{})
	rs := u.PostProcessor().Do([]*routing.Route{
		{Route: eskip.Route{Id: "bare", BackendType: eskip.DynamicBackend}},
		{Route: eskip.Route{Id: "chosen", BackendType: eskip.DynamicBackend}, Filters: []*routing.RouteFilter{{Name: BackendFilterName}}},
	})
	if len(rs) != 1 || rs[0].Id != "chosen" {
		t.Fatalf("routes kept: %v", rs)
	}
}

// An endpoint change is effective for the next request, with no route
// change (the table is loaded once here); round robin takes the new set
// in turn.
func TestSetEndpointsEffectiveForTheNextRequest(t *testing.T) {
	log := &hitLog{}
	a, b, c := newBackend(t, 200, log), newBackend(t, 200, log), newBackend(t, 200, log)
	u, _ := newUpstream(t, Config{RefuseUnrouted: true})
	front := dynFront(t, u, `web: PathSubtree("/") -> bulkheadBackend("default/web:80", "roundRobin") -> <dynamic>;`)
	client := newClient(t)
	for _, eps := range [][]string{{a.addr()}, {b.addr()}, {a.addr(), c.addr()}, {b.addr(), c.addr(), a.addr()}} {
		u.SetEndpoints(map[string][]string{testBackendKey: eps})
		before := map[string]int{}
		for _, p := range []*testPod{a, b, c} {
			before[p.addr()] = log.count(p.addr())
		}
		for i := 0; i < 3*len(eps); i++ {
			if status, body := get(t, client, front, "/"); status != 200 || !strings.HasPrefix(body, "from ") {
				t.Fatalf("%d %q", status, body)
			}
		}
		for _, p := range []*testPod{a, b, c} {
			want := 0
			for _, e := range eps {
				if e == p.addr() {
					want = 3
				}
			}
			if got := log.count(p.addr()) - before[p.addr()]; got != want {
				t.Fatalf("set %v: pod %s got %d requests, want %d", eps, p.addr(), got, want)
			}
		}
	}
}

// A request balanced on an endpoint that SetEndpoints then removed is
// retried within the backend's current set (here an endpoint that was
// not in the set when the request was balanced).
func TestRemovedEndpointRetriesWithinTheBackend(t *testing.T) {
	log := &hitLog{}
	received := make(chan struct{})
	release := make(chan struct{})
	leaving := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(received)
		<-release
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close() // the pod goes away without answering
		}
	}))
	defer leaving.Close()
	staying := newBackend(t, 200, log)
	u, _ := newUpstream(t, Config{RefuseUnrouted: true})
	front := dynFront(t, u, webRoute)
	u.SetEndpoints(map[string][]string{testBackendKey: {leaving.Listener.Addr().String()}})
	done := make(chan struct{})
	var status int
	var body string
	go func() {
		defer close(done)
		status, body = get(t, newClient(t), front, "/")
	}()
	<-received
	u.SetEndpoints(map[string][]string{testBackendKey: {staying.addr()}})
	close(release)
	<-done
	if status != 200 || body != "from "+staying.addr() {
		t.Fatalf("%d %q: want the retry on the backend's current endpoint", status, body)
	}
	if n := testutil.ToFloat64(u.metrics.retries.WithLabelValues(testBackendKey)); n != 1 {
		t.Fatalf("retries counted %v", n)
	}
}

// A hanging pod collects attempts in flight; least in-flight stops
// choosing it after the first.
func TestLeastInFlightSteersFromAHangingPod(t *testing.T) {
	log := &hitLog{}
	hung := make(chan struct{}, 100)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hung <- struct{}{}
		<-r.Context().Done()
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(hang.CloseClientConnections)
	a, b := newBackend(t, 200, log), newBackend(t, 200, log)
	u, _ := newUpstream(t, Config{})
	front := dynFront(t, u, webRoute)
	t.Cleanup(hang.CloseClientConnections) // first: the front waits for its requests
	u.SetEndpoints(map[string][]string{testBackendKey: {hang.Listener.Addr().String(), a.addr(), b.addr()}})
	client := newClient(t)
	hanging := 0
	for i := 0; i < 200; i++ {
		done := make(chan struct{})
		go func() {
			defer close(done)
			resp, err := client.Get("http://" + front + "/")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		select {
		case <-done:
		case <-hung:
			hanging++
		}
	}
	if hanging > 1 || log.count(a.addr()) < 50 || log.count(b.addr()) < 50 {
		t.Fatalf("the hanging pod got %d requests, the others %d and %d", hanging, log.count(a.addr()), log.count(b.addr()))
	}
}

// flakyPod answers with a status that the test switches.
type flakyPod struct {
	srv    *httptest.Server
	status atomic.Int32
	hits   atomic.Int32
}

func newFlakyPod(t *testing.T, status int) *flakyPod {
	p := &flakyPod{}
	p.status.Store(int32(status))
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p.hits.Add(1)
		w.WriteHeader(int(p.status.Load()))
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *flakyPod) addr() string { return p.srv.Listener.Addr().String() }

// Through the proxy: a failing pod's breaker opens (its requests retried
// on the other pod: the client sees no failure), it then gets no traffic,
// and after the cool-down one probe closes it again.
func TestBackendBreakerOpensSteersAndCloses(t *testing.T) {
	sick, well := newFlakyPod(t, 503), newFlakyPod(t, 200)
	u, _ := newUpstream(t, Config{Breaker: BreakerConfig{OpenFor: 20 * time.Millisecond}, Budget: BudgetConfig{MinPerSecond: 1000}})
	var frozen atomic.Int64 // 0: the real clock; else a fixed one (keeps the breaker open)
	u.breakers.now = func() time.Time {
		if n := frozen.Load(); n != 0 {
			return time.Unix(0, n)
		}
		return time.Now()
	}
	front := dynFront(t, u, webRoute)
	u.SetEndpoints(map[string][]string{testBackendKey: {sick.addr(), well.addr()}})
	client := newClient(t)
	for i := 0; u.Breakers().State(sick.addr()) != gobreaker.StateOpen; i++ {
		if i == 100 {
			t.Fatal("the failing pod's breaker never opened")
		}
		if status, _ := get(t, client, front, "/"); status != 200 {
			t.Fatalf("status %d: the failure was not retried on the other pod", status)
		}
		if i == 0 {
			frozen.Store(time.Now().UnixNano())
		}
	}
	hits := sick.hits.Load()
	for i := 0; i < 50; i++ {
		if status, _ := get(t, client, front, "/"); status != 200 {
			t.Fatalf("status %d", status)
		}
	}
	if sick.hits.Load() != hits {
		t.Fatalf("an open breaker's pod got %d requests", sick.hits.Load()-hits)
	}
	sick.status.Store(200)
	frozen.Store(0)
	eventually(t, "the breaker lets a probe through", func() bool { return u.Breakers().Available(sick.addr()) })
	eventually(t, "the probe closes the breaker", func() bool {
		get(t, client, front, "/")
		return u.Breakers().State(sick.addr()) == gobreaker.StateClosed
	})
	hits = sick.hits.Load()
	for i := 0; i < 50; i++ {
		get(t, client, front, "/")
	}
	if sick.hits.Load()-hits < 10 {
		t.Fatalf("the recovered pod got %d of 50 requests", sick.hits.Load()-hits)
	}
}

// upgradePod accepts WebSocket-style upgrades and then answers the first
// line on the tunnel with its own address.
func upgradePod(t *testing.T) string {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want an upgrade", http.StatusBadRequest)
			return
		}
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		if _, err := rw.ReadString('\n'); err != nil {
			return
		}
		fmt.Fprintf(rw, "hello from %s\n", srv.Listener.Addr())
		rw.Flush()
		_, _ = rw.ReadString('\n') // until the client closes
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(srv.CloseClientConnections)
	return srv.Listener.Addr().String()
}

// upgrade opens a WebSocket-style tunnel through front and returns what
// the pod said on it.
func upgrade(t *testing.T, front string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", front, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: example.org\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %d", resp.StatusCode)
	}
	fmt.Fprintf(c, "ping\n") // the pod speaks once spoken to
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

// Upgrades go through skipper's dynamic target, so they reach the
// endpoint the filter chose: the current set's, steered by breakers.
func TestUpgradeReachesTheChosenEndpoint(t *testing.T) {
	a, b := upgradePod(t), upgradePod(t)
	u, _ := newUpstream(t, Config{RefuseUnrouted: true})
	front := dynFront(t, u, webRoute)
	u.SetEndpoints(map[string][]string{testBackendKey: {a}})
	if got := upgrade(t, front); got != "hello from "+a {
		t.Fatalf("got %q, want pod a", got)
	}
	u.SetEndpoints(map[string][]string{testBackendKey: {b}})
	if got := upgrade(t, front); got != "hello from "+b {
		t.Fatalf("after the swap got %q, want pod b", got)
	}
	u.SetEndpoints(map[string][]string{testBackendKey: {a, b}})
	openBreaker(u, a)
	for i := 0; i < 10; i++ {
		if got := upgrade(t, front); got != "hello from "+b {
			t.Fatalf("with a's breaker open got %q", got)
		}
	}
}

// SetEndpoints from one goroutine while requests flow: sets come and go,
// with a dead endpoint among them and a second backend added and removed
// (key map copies); no request fails, and the endpoint state held is
// that of the current sets and of those that just left.
func TestSetEndpointsUnderLoad(t *testing.T) {
	log := &hitLog{}
	a, b, c := newBackend(t, 200, log), newBackend(t, 200, log), newBackend(t, 200, log)
	dead := deadAddr(t)
	u, _ := newUpstream(t, Config{RefuseUnrouted: true, Budget: BudgetConfig{MinPerSecond: 1000}})
	front := dynFront(t, u, webRoute)
	sets := [][]string{{a.addr(), b.addr()}, {b.addr(), c.addr(), dead}, {a.addr(), c.addr()}, {a.addr(), b.addr(), c.addr(), dead}, {c.addr()}}
	u.SetEndpoints(map[string][]string{testBackendKey: sets[0]})

	stop := make(chan struct{})
	var updates sync.WaitGroup
	updates.Add(1)
	go func() {
		defer updates.Done()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			update := map[string][]string{testBackendKey: sets[i%len(sets)]}
			if i%2 == 0 {
				update["default/other:80"] = []string{dead, a.addr()}
			} else {
				update["default/other:80"] = nil
			}
			u.SetEndpoints(update)
		}
	}()
	var failed, total atomic.Int32
	var load sync.WaitGroup
	for w := 0; w < 4; w++ {
		load.Add(1)
		go func() {
			defer load.Done()
			client := newClient(t)
			for i := 0; i < 150; i++ {
				resp, err := client.Get("http://" + front + "/")
				total.Add(1)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	load.Wait()
	close(stop)
	updates.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed", failed.Load(), total.Load())
	}
	u.SetEndpoints(map[string][]string{testBackendKey: {a.addr()}, "default/other:80": nil})
	u.SetEndpoints(map[string][]string{testBackendKey: {a.addr()}})
	if n := u.Breakers().Len(); n != 1 {
		t.Fatalf("endpoint states held: %d, want 1", n)
	}
}

// Through bulkhead's own proxy, the filter's 503 and RefuseUnrouted's 502
// are recognised as the router's errors: the client gets the generic body
// with the request id, nothing of the backend.
func TestErrorsAreGenericThroughBulkheadsProxy(t *testing.T) {
	u, _ := newUpstream(t, Config{RefuseUnrouted: true})
	rs, err := eskip.Parse(webRoute + ` net: Path("/net") -> "http://` + deadAddr(t) + `";`)
	if err != nil {
		t.Fatal(err)
	}
	px := bhproxy.New(bhproxy.Options{
		DataClients:      []routing.DataClient{testdataclient.New(rs)},
		Filters:          []filters.Spec{u.PolicySpec(), u.BackendSpec()},
		PostProcessors:   []routing.PostProcessor{u.PostProcessor()},
		WrapRoundTripper: u.WrapRoundTripper,
	})
	t.Cleanup(func() { px.Close() })
	<-px.FirstLoad()
	front := httptest.NewServer(u.Handler(px))
	t.Cleanup(front.Close)
	u.SetEndpoints(map[string][]string{testBackendKey: {}})
	for path, code := range map[string]int{"/web": http.StatusServiceUnavailable, "/net": http.StatusBadGateway} {
		resp, err := http.Get(front.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		id := resp.Header.Get(bhproxy.HeaderRequestID)
		if want := fmt.Sprintf("%d %s\nrequest id: %s\n", code, http.StatusText(code), id); resp.StatusCode != code || id == "" || string(body) != want {
			t.Errorf("%s: %d %q (request id %q), want %q", path, resp.StatusCode, body, id, want)
		}
	}
}
