package routing

import (
	"cmp"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/filters"
	"github.com/zalando/skipper/filters/builtin"
	skrouting "github.com/zalando/skipper/routing"
	"github.com/zalando/skipper/routing/testdataclient"
)

// router is a real skipper routing table loaded with a translated table,
// with the filter registry bulkhead uses.
type router struct {
	routing *skrouting.Routing
	byID    map[string]Route
}

// filterRegistry is skipper's builtin filters plus bulkheadRestorePath, as
// bulkhead's proxy registers them, and a stand-in for the upstream layer's
// bulkheadBackend that sends to the first endpoint of the backend in table.
func filterRegistry(table ...Table) filters.Registry {
	reg := builtin.MakeRegistry()
	reg.Register(NewRestorePathSpec())
	reg.Register(NewSSLRedirectSpec())
	backends := map[string][]Endpoint{}
	for _, t := range table {
		for _, b := range t.Backends {
			backends[b.Key.String()] = b.Endpoints
		}
	}
	reg.Register(firstEndpointSpec{backends: backends})
	return reg
}

// firstEndpointSpec stands in for upstream's bulkheadBackend filter: the
// route's first endpoint, or skipper's own 503 shape when it has none.
type firstEndpointSpec struct{ backends map[string][]Endpoint }

func (firstEndpointSpec) Name() string { return backendFilter }

func (s firstEndpointSpec) CreateFilter(args []any) (filters.Filter, error) {
	if len(args) < 1 || len(args) > 2 {
		return nil, filters.ErrInvalidFilterParameters
	}
	key, ok := args[0].(string)
	if !ok {
		return nil, filters.ErrInvalidFilterParameters
	}
	if len(args) == 2 && args[1] != algRoundRobin {
		return nil, filters.ErrInvalidFilterParameters
	}
	return firstEndpoint{eps: s.backends[key]}, nil
}

type firstEndpoint struct{ eps []Endpoint }

func (f firstEndpoint) Request(ctx filters.FilterContext) {
	if len(f.eps) == 0 {
		ctx.Serve(&http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{"Content-Type": {"text/plain"}},
			Body: io.NopCloser(strings.NewReader(unavailableBody))})
		return
	}
	ctx.StateBag()[filters.DynamicBackendHostKey] = f.eps[0].Address
	ctx.StateBag()[filters.DynamicBackendSchemeKey] = "http"
}

func (firstEndpoint) Response(filters.FilterContext) {}

func newRouter(t testing.TB, table Table) *router {
	t.Helper()
	dc := testdataclient.New(table.EskipRoutes())
	log := &recordingLog{}
	rt := skrouting.New(skrouting.Options{
		FilterRegistry:  filterRegistry(),
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
	if got := routeCount(t, rt, true); got != 0 {
		t.Fatalf("skipper holds %d invalid routes", got)
	}
	r := &router{routing: rt, byID: map[string]Route{}}
	for _, route := range table.Routes {
		r.byID[route.Eskip.Id] = *route
	}
	return r
}

// routeCount asks skipper's own route listing how many (in)valid routes it
// holds.
func routeCount(t testing.TB, rt *skrouting.Routing, invalid bool) int {
	t.Helper()
	w := httptest.NewRecorder()
	rt.ServeHTTP(w, httptest.NewRequest(http.MethodHead, "/?invalid="+strconv.FormatBool(invalid), nil))
	n, err := strconv.Atoi(w.Header().Get(skrouting.RoutesCountName))
	if err != nil {
		t.Fatalf("route count: %v", err)
	}
	return n
}

// lookup returns the route skipper chooses for host and path, or nil, the
// way the proxy asks: PrepareRequest, then skipper's lookup. It also checks
// that RestoreRequest gives the path back.
func (r *router) lookup(t testing.TB, host, path string) *Route {
	t.Helper()
	req := &http.Request{Method: http.MethodGet, Host: host, URL: &url.URL{Path: path}, Header: http.Header{}}
	chosen := r.route(req)
	RestoreRequest(req)
	if want := cmp.Or(path, "/"); req.URL.Path != want || req.Pattern != "" {
		t.Fatalf("%s%s: restored path %q (pattern %q), want %q", host, path, req.URL.Path, req.Pattern, want)
	}
	if chosen == nil {
		return nil
	}
	route, ok := r.byID[chosen.Id]
	if !ok {
		t.Fatalf("skipper chose %q, which is not in the table", chosen.Id)
	}
	return &route
}

// route prepares req and looks it up.
func (r *router) route(req *http.Request) *skrouting.Route {
	PrepareRequest(req)
	chosen, _ := r.routing.Route(req)
	return chosen
}

// describe names a route by its origin: "<ns>/<ingress> <host><path> <pathType>",
// "<ns>/<ingress> default" for a default backend, "404" for no route.
func describe(r *Route) string {
	switch {
	case r == nil:
		return "404"
	case r.DefaultBackend:
		return r.Ingress.String() + " default"
	default:
		return fmt.Sprintf("%s %s%s %s", r.Ingress, r.Host, r.Path, r.PathType)
	}
}

type request struct{ host, path, want string }

func checkRequests(t *testing.T, fixture string, requests []request) {
	t.Helper()
	s, o := loadFixture(t, filepath.Join("testdata", fixture))
	table := Translate(s, o)
	r := newRouter(t, table)
	for _, req := range requests {
		if got := describe(r.lookup(t, req.host, req.path)); got != req.want {
			t.Errorf("%s %s%s: got %q, want %q", fixture, req.host, req.path, got, req.want)
		}
	}
	// The same table split into shards (RouteShard), each request looked
	// up in its own shard (RequestShard), chooses the same routes.
	for _, n := range []int{2, 3, 7} {
		shards := make([]*router, n)
		for i := range shards {
			sub := Table{Backends: table.Backends}
			for _, route := range table.Routes {
				if s := RouteShard(route.Eskip, n); s == i || s < 0 {
					sub.Routes = append(sub.Routes, route)
				}
			}
			shards[i] = newRouter(t, sub)
		}
		for _, req := range requests {
			hr := &http.Request{Method: http.MethodGet, Host: req.host, URL: &url.URL{Path: req.path}, Header: http.Header{}}
			PrepareRequest(hr)
			var got *Route
			if chosen, _ := shards[RequestShard(hr, n)].routing.Route(hr); chosen != nil {
				route := r.byID[chosen.Id]
				got = &route
			}
			if describe(got) != req.want {
				t.Errorf("%s %s%s in %d shards: got %q, want %q", fixture, req.host, req.path, n, describe(got), req.want)
			}
		}
	}
}

func TestMatcherPaths(t *testing.T) {
	const h = "paths.example.com"
	checkRequests(t, "paths.yaml", []request{
		// Exact beats Prefix on the same path; Exact is exact.
		{h, "/foo", "default/paths paths.example.com/foo Exact"},
		{h, "/foo/", "default/paths paths.example.com/foo Prefix"},
		{h, "/foo/bar", "default/paths paths.example.com/foo Prefix"},
		// Prefix is element-wise.
		{h, "/foobar", "404"},
		{h, "/fo", "404"},
		// A trailing slash in a Prefix rule is ignored.
		{h, "/bar", "default/paths paths.example.com/bar/ Prefix"},
		{h, "/bar/", "default/paths paths.example.com/bar/ Prefix"},
		{h, "/bar/x", "default/paths paths.example.com/bar/ Prefix"},
		{h, "/barx", "404"},
		// ... but not in an Exact one.
		{h, "/baz", "404"},
		{h, "/baz/", "default/paths paths.example.com/baz/ Exact"},
		{h, "/baz/x", "404"},
		// ImplementationSpecific (and a missing pathType) is Prefix.
		{h, "/impl", "default/paths paths.example.com/impl ImplementationSpecific"},
		{h, "/impl/x/y", "default/paths paths.example.com/impl ImplementationSpecific"},
		{h, "/implx", "404"},
		{h, "/notype/y", "default/paths paths.example.com/notype ImplementationSpecific"},
		// Longest match wins.
		{h, "/a", "default/paths paths.example.com/a Prefix"},
		{h, "/a/", "default/paths paths.example.com/a Prefix"},
		{h, "/a/x", "default/paths paths.example.com/a Prefix"},
		{h, "/a/b", "default/paths paths.example.com/a/b Prefix"},
		{h, "/a/bc", "default/paths paths.example.com/a Prefix"},
		{h, "/a/b/c", "default/paths paths.example.com/a/b/c Exact"},
		{h, "/a/b/c/", "default/paths paths.example.com/a/b Prefix"},
		{h, "/a/b/c/d", "default/paths paths.example.com/a/b Prefix"},
		// Paths are case-sensitive.
		{h, "/Case", "default/paths paths.example.com/Case Exact"},
		{h, "/case", "404"},
		{h, "/v1.0/x-y_z~/more", "default/paths paths.example.com/v1.0/x-y_z~ Prefix"},
		// skipper cleans request paths before matching.
		{h, "/a/../foo", "default/paths paths.example.com/foo Exact"},
		{h, "//foo", "default/paths paths.example.com/foo Exact"},
		// An empty path is "/", which matches everything.
		{"root.example.com", "/", "default/paths root.example.com Prefix"},
		{"root.example.com", "/any/thing/", "default/paths root.example.com Prefix"},
		// Exact "/" is only "/".
		{"exact-root.example.com", "/", "default/paths exact-root.example.com/ Exact"},
		{"exact-root.example.com", "/x", "404"},
		// Invalid paths are skipped, valid ones of the same Ingress kept.
		{"invalid.example.com", "/still-valid", "default/invalid-paths invalid.example.com/still-valid Prefix"},
		{"invalid.example.com", "/users/1", "404"},
		{"invalid.example.com", "/relative", "404"},
	})
}

func TestMatcherHosts(t *testing.T) {
	const (
		upper    = "default/hosts Upper.Example.COM/ Prefix"
		dotted   = "default/hosts dotted.example.com./ Prefix"
		wild     = "default/hosts *.wild.example.com/ Prefix"
		hostless = "default/hosts /hostless Prefix"
		local    = "default/hosts LocalHost/ Prefix"
	)
	checkRequests(t, "hosts.yaml", []request{
		// Case, port and trailing dot do not matter.
		{"upper.example.com", "/", upper},
		{"UPPER.EXAMPLE.COM", "/x", upper},
		{"upper.example.com:8080", "/", upper},
		{"upper.example.com.", "/", upper},
		{"Upper.Example.Com.:443", "/", upper},
		{"dotted.example.com", "/", dotted},
		{"dotted.example.com.", "/", dotted},
		// A wildcard matches exactly one more label.
		{"a.wild.example.com", "/", wild},
		{"A.Wild.Example.Com:80", "/x", wild},
		{"b.a.wild.example.com", "/", "404"},
		{"b.a.wild.example.com", "/hostless", hostless},
		{"wild.example.com", "/", "404"},
		{"wild.example.com", "/hostless", hostless},
		{".wild.example.com", "/", "404"},
		{"a.wild.example.com..", "/", "404"},
		// '_' is not allowed in rule hosts, but a request host with one is
		// still a name a wildcard covers.
		{"under_score.wild.example.com", "/", wild},
		// A "*" label in a request is not a DNS name: host-less only.
		{"*.wild.example.com", "/", "404"},
		{"*.wild.example.com", "/hostless", hostless},
		// Single-label hosts.
		{"localhost", "/", local},
		{"LOCALHOST:8080", "/x", local},
		{"localhost.", "/", local},
		{"otherhost", "/", "404"},
		{"otherhost", "/hostless", hostless},
		// Host-less rules match every host, including none and IPs.
		{"elsewhere.org", "/hostless/x", hostless},
		{"", "/hostless", hostless},
		{"10.1.2.3:80", "/hostless", hostless},
		{"[fd00::1]:80", "/hostless", hostless},
		{"fd00::1", "/hostless", hostless},
		{"[fd00::1]", "/", "404"},
		{"~", "/hostless", hostless},
		{"elsewhere.org", "/", "404"},
		// Invalid hosts are skipped, valid rules of the same Ingress kept.
		{"valid.example.com", "/", "default/invalid-hosts valid.example.com/ Prefix"},
		{"under_score.example.com", "/", "404"},
		{"port.example.com", "/", "404"},
	})
}

func TestMatcherPrecedence(t *testing.T) {
	const (
		a         = "default/a foo.com/ Prefix"
		bAPI      = "default/b /api/v1 Prefix"
		bB        = "default/b /b Prefix"
		bE        = "default/b /e Prefix"
		bDeeper   = "default/b /w/deeper Prefix"
		bExact    = "default/b /x/exact Exact"
		c         = "default/c bar.com/a Prefix"
		wW        = "default/w *.wild.com/w Prefix"
		wE        = "default/w *.wild.com/e Exact"
		xX        = "default/x x.wild.com/x Prefix"
		notFound  = "404"
		otherHost = "other.com"
	)
	checkRequests(t, "precedence.yaml", []request{
		// Exact host beats host-less although the host-less path is longer.
		{"foo.com", "/api/v1/x", a},
		{"foo.com", "/b", a},
		// Other hosts get the host-less rule.
		{"bar.com", "/api/v1/x", bAPI},
		// The exact host falls through to host-less rules on paths it lacks.
		{"bar.com", "/b", bB},
		{"bar.com", "/a/z", c},
		{"bar.com", "/w/deeper", bDeeper},
		{"bar.com", "/zzz", notFound},
		// Wildcard beats host-less, even a longer host-less path.
		{"y.wild.com", "/w/deeper/z", wW},
		{"y.wild.com", "/e", wE},
		{"y.wild.com", "/e/f", bE},
		{"y.wild.com", "/b", bB},
		{"y.wild.com", "/x/exact", bExact},
		{"y.wild.com", "/q", notFound},
		// An exact host falls through to its wildcard, then to host-less.
		{"x.wild.com", "/x/exact", xX},
		{"x.wild.com", "/w/deeper", wW},
		{"x.wild.com", "/e", wE},
		{"x.wild.com", "/e/f", bE},
		{"x.wild.com", "/b", bB},
		{"X.WILD.COM:8443", "/x", xX},
		// Two labels below the wildcard: host-less only.
		{"z.x.wild.com", "/b", bB},
		{"z.x.wild.com", "/w", notFound},
		{"wild.com", "/w", notFound},
		{"wild.com", "/b", bB},
		{otherHost, "/x/exact", bExact},
		{otherHost, "/x/exact/", notFound},
	})
}

func TestMatcherDefaultBackend(t *testing.T) {
	const def = "default/first default"
	checkRequests(t, "default_backend.yaml", []request{
		{"foo.com", "/app", "default/first foo.com/app Prefix"},
		{"foo.com", "/other", def},
		{"foo.com", "/api/x", "default/second /api Prefix"},
		{"bar.com", "/", def},
		{"bar.com", "/api", "default/second /api Prefix"},
		{"", "/", def},
	})
}

func TestMatcherConflicts(t *testing.T) {
	checkRequests(t, "conflicts.yaml", []request{
		{"foo.com", "/api", "default/new foo.com/api Exact"},
		{"foo.com", "/api/x", "default/old foo.com/api Prefix"},
		{"foo.com", "/exact", "default/old foo.com/exact Exact"},
		{"foo.com", "/exact/x", "default/new FOO.com./exact Prefix"},
		{"foo.com", "/new", "default/new foo.com/new Prefix"},
		{"foo.com", "/dup/1", "default/old foo.com/dup Prefix"},
		{"tie.com", "/", "alpha/tie tie.com/ Prefix"},
		{"bar.com", "/api", "default/new /api Prefix"},
	})
}

// A backend that cannot serve keeps its path and answers 503: it must be
// chosen (not a 404, not another rule) and be a status(503) shunt.
func TestMatcherUnavailableBackendsAnswer503(t *testing.T) {
	s, o := loadFixture(t, filepath.Join("testdata", "backends.yaml"))
	table := Translate(s, o)
	r := newRouter(t, table)
	for _, path := range []string{"/missing-service", "/missing-port-number", "/missing-port-name", "/no-port", "/udp", "/external", "/resource", "/no-service"} {
		route := r.lookup(t, "backends.example.com", path+"/x")
		if route == nil || route.Path != path {
			t.Errorf("%s: got %s, want the rule's own route", path, describe(route))
			continue
		}
		e := route.Eskip
		if !e.Shunt || len(e.Filters) != 3 || e.Filters[1].Name != "status" || e.Filters[1].Args[0] != float64(503) || !route.Backend.IsZero() {
			t.Errorf("%s: route %s does not answer 503", path, e.Id)
		}
	}
	// A Service without endpoints is a usable backend: its route names it
	// (the upstream layer answers 503 while it has no endpoints), so the
	// first endpoint is a change of the backend, not of the route.
	if route := r.lookup(t, "backends.example.com", "/no-endpoints/x"); route == nil || route.Eskip.BackendType != eskip.DynamicBackend ||
		route.Backend.IsZero() || len(endpointsOf(table, route)) != 0 {
		t.Errorf("/no-endpoints: got %s, want a route to its backend, which has no endpoints", describe(route))
	}
	if route := r.lookup(t, "backends.example.com", "/by-name"); route == nil || len(endpointsOf(table, route)) != 3 {
		t.Errorf("/by-name: got %s, want a route with 3 endpoints", describe(route))
	}
}

// Requests are matched concurrently in production; under -race this shows
// that PrepareRequest and the lookup share no mutable state.
func TestMatcherConcurrentRequests(t *testing.T) {
	s, o := loadFixture(t, filepath.Join("testdata", "precedence.yaml"))
	r := newRouter(t, Translate(s, o))
	hosts := []string{"foo.com", "bar.com", "x.wild.com", "y.wild.com", "other.com"}
	paths := []string{"/", "/api/v1/x", "/b", "/e", "/w/deeper", "/x/exact"}
	want := map[string]string{}
	for _, h := range hosts {
		for _, p := range paths {
			want[h+p] = describe(r.lookup(t, h, p))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Go(func() {
			for _, h := range hosts {
				for _, p := range paths {
					req := &http.Request{Method: http.MethodGet, Host: h, URL: &url.URL{Path: p}, Header: http.Header{}}
					chosen := r.route(req)
					got := "404"
					if chosen != nil {
						route := r.byID[chosen.Id]
						got = describe(&route)
					}
					if got != want[h+p] {
						errs <- fmt.Sprintf("%s%s: got %q, want %q", h, p, got, want[h+p])
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// recordingLog keeps skipper's error logs (and drops the rest), so a test
// can tell whether skipper rejected a route.
type recordingLog struct {
	mu   sync.Mutex
	errs []string
}

func (l *recordingLog) record(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, s)
}

func (l *recordingLog) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errs...)
}

func (l *recordingLog) Error(a ...any)            { l.record(fmt.Sprint(a...)) }
func (l *recordingLog) Errorf(f string, a ...any) { l.record(fmt.Sprintf(f, a...)) }
func (l *recordingLog) Warn(...any)               {}
func (l *recordingLog) Warnf(string, ...any)      {}
func (l *recordingLog) Info(...any)               {}
func (l *recordingLog) Infof(string, ...any)      {}
func (l *recordingLog) Debug(...any)              {}
func (l *recordingLog) Debugf(string, ...any)     {}
