package tablestore

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/zalando/skipper/eskip"
	"k8s.io/apimachinery/pkg/types"

	"github.com/bulkhead-router/bulkhead/routing"
)

// restorePath is the filter routing puts first on every route.
const restorePath = "bulkheadRestorePath"

var fixedNow = time.Date(2026, 3, 4, 5, 6, 7, 890123456, time.FixedZone("CET", 3600))

// fullTable sets every exported field of Table, Route, Endpoint, Problem
// and NamespacedName somewhere (checkPopulated enforces it), with the
// shapes routing emits: LB routes with int weight args, 503 shunts with
// filters, a default backend.
func fullTable() routing.Table {
	lb := func(addrs ...string) []*eskip.LBEndpoint {
		eps := make([]*eskip.LBEndpoint, len(addrs))
		for i, a := range addrs {
			eps[i] = &eskip.LBEndpoint{Address: a}
		}
		return eps
	}
	shared := []routing.Endpoint{
		{Address: "10.0.0.1:8080", Ready: true, Serving: true},
		{Address: "10.0.0.2:8080", Serving: true, Terminating: true},
	}
	return routing.Table{
		Routes: []*routing.Route{
			{
				Eskip: &eskip.Route{
					Id: "ing__shop__api__foo_example_com__api__exact__1a2b3c4d", Namespace: "shop", Name: "api",
					Path:        "/foo.example.com/api",
					Predicates:  []*eskip.Predicate{{Name: "Weight", Args: []any{1}}},
					Filters:     []*eskip.Filter{{Name: restorePath}},
					BackendType: eskip.LBBackend, LBAlgorithm: "roundRobin",
					LBEndpoints: lb("http://10.0.0.1:8080", "http://10.0.0.2:8080"),
				},
				Ingress: types.NamespacedName{Namespace: "shop", Name: "api"},
				Host:    "Foo.Example.com.", Path: "/api", PathType: "Exact", VirtualHost: "foo.example.com",
				Service: "api", Port: "http", Backend: routing.BackendKey{Namespace: "shop", Service: "api", Port: 8080},
			},
			{
				Eskip: &eskip.Route{
					Id: "ing__shop__api__foo_example_com__api_v2__prefix__5e6f7a8b", Namespace: "shop", Name: "api",
					Predicates:  []*eskip.Predicate{{Name: "PathSubtree", Args: []any{"/foo.example.com/api/v2"}}},
					Filters:     []*eskip.Filter{{Name: restorePath}, {Name: "bulkheadBackend", Args: []any{"shop/api:8080", "roundRobin"}}},
					BackendType: eskip.DynamicBackend,
				},
				Ingress: types.NamespacedName{Namespace: "shop", Name: "api"},
				Host:    "foo.example.com", Path: "/api/v2", PathType: "Prefix", VirtualHost: "foo.example.com",
				Service: "api", Port: "8080", Backend: routing.BackendKey{Namespace: "shop", Service: "api", Port: 8080},
			},
			{
				// 503 shunt, with text that needs escaping in eskip and JSON.
				Eskip: &eskip.Route{
					Id:         "ing__shop__cart__wildcard_example_com__root__implspecific__9c0d1e2f",
					Predicates: []*eskip.Predicate{{Name: "PathSubtree", Args: []any{`/*.example.com/"quoted"\back<slash>/ü`}}},
					Filters: []*eskip.Filter{
						{Name: restorePath},
						{Name: "status", Args: []any{503}},
						{Name: "inlineContent", Args: []any{"service shop/cart has no ready endpoints: \"x\" -> <y>\n"}},
					},
					BackendType: eskip.ShuntBackend, Shunt: true,
				},
				Ingress: types.NamespacedName{Namespace: "shop", Name: "cart"},
				Host:    "*.example.com", Path: `/"quoted"\back<slash>/ü`, PathType: "ImplementationSpecific",
				VirtualHost: "*.example.com", Service: "cart", Port: "web",
			},
			{
				// Default backend: no predicates; IPv6 and zoned LB endpoints;
				// only float64 args, so plain eskip.Eq holds after loading.
				Eskip: &eskip.Route{
					Id: "ing__zeta__web__defaultbackend__0f1e2d3c",
					Filters: []*eskip.Filter{
						{Name: restorePath},
						{Name: "setRequestHeader", Args: []any{"X-Weight", 2.5}},
					},
					BackendType: eskip.LBBackend, LBAlgorithm: "roundRobin",
					LBEndpoints: []*eskip.LBEndpoint{{Address: "http://[fd00::1]:9090", Zone: "eu-central-1a"}, {Address: "http://[fd00::2]:9090"}},
				},
				Ingress:        types.NamespacedName{Namespace: "zeta", Name: "web"},
				DefaultBackend: true, Service: "web", Port: "9090", Backend: routing.BackendKey{Namespace: "zeta", Service: "web", Port: 9090},
			},
			{
				// Legacy eskip fields and a 503 with an empty (not nil) list.
				Eskip: &eskip.Route{
					Id: "legacy", Method: "GET", HostRegexps: []string{`^a/b[.]example[.]org$`},
					Headers:     map[string]string{"X-B": "2", "X-A": "1"},
					BackendType: eskip.ShuntBackend,
				},
				Ingress: types.NamespacedName{Namespace: "zeta", Name: "legacy"},
				Host:    "a.example.org", Path: "/", PathType: "Prefix", VirtualHost: "a.example.org",
				Service: "gone", Port: "80",
			},
			{
				// A route of an HTTPRoute: its origin instead of an Ingress.
				Eskip: &eskip.Route{
					Id: "zz_gateway", Path: "/com/example/checkout", BackendType: eskip.ShuntBackend,
				},
				Gateway: &routing.GatewayOrigin{
					Kind:      "GRPCRoute",
					HTTPRoute: types.NamespacedName{Namespace: "shop", Name: "checkout"},
					Rule:      1, RuleName: "pay", Match: 2,
					Gateway:  types.NamespacedName{Namespace: "infra", Name: "edge"},
					Listener: "http", Port: 80, BackendRef: 1,
				},
				Host: "example.com", Path: "/checkout", PathType: "Exact", VirtualHost: "example.com",
			},
		},
		Problems: []routing.Problem{
			{Kind: "Ingress", Namespace: "shop", Name: "cart", Reason: routing.NoEndpoints, Message: "service shop/cart port web has no ready endpoints"},
			{Kind: "Service", Namespace: "zeta", Name: "gone", Reason: routing.ServiceNotFound, Message: `service "gone" not found`},
		},
		Served: []types.NamespacedName{{Namespace: "shop", Name: "api"}, {Namespace: "shop", Name: "cart"}, {Namespace: "zeta", Name: "empty"}},
		Backends: []routing.Backend{
			{Key: routing.BackendKey{Namespace: "shop", Service: "api", Port: 8080}, Endpoints: shared},
			{Key: routing.BackendKey{Namespace: "shop", Service: "none", Port: 80}, Endpoints: []routing.Endpoint{}},
			{Key: routing.BackendKey{Namespace: "zeta", Service: "web", Port: 9090},
				Endpoints: []routing.Endpoint{{Address: "[fd00::1]:9090", Ready: true, Serving: true}, {Address: "[fd00::2]:9090", Ready: true, Serving: true}}},
		},
		// Stored after Backends, which the splice must find all the same.
		Certificates: []routing.Certificate{
			{
				Port: 443, Hostname: "checkout.example.com",
				Gateway: types.NamespacedName{Namespace: "infra", Name: "edge"}, Listener: "https",
				Secret: types.NamespacedName{Namespace: "shop", Name: "checkout-tls"},
				Cert:   []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
				Key:    []byte("-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n"),
			},
			{
				// A listener without hostname, with bytes JSON must escape
				// and a name that looks like the splice's marker.
				Port: 443, Gateway: types.NamespacedName{Namespace: "infra", Name: `,"Backends":null}`}, Listener: "any",
				Secret: types.NamespacedName{Namespace: "infra", Name: "any-tls"},
				Cert:   []byte{0, '"', '\\', 0xff}, Key: []byte("k"),
			},
			{
				// An Ingress's spec.tls host and the default certificate.
				Hostname: "*.shop.example.com", Ingress: types.NamespacedName{Namespace: "shop", Name: "cart"},
				Secret: types.NamespacedName{Namespace: "shop", Name: "cart-tls"}, Cert: []byte("c"), Key: []byte("k"),
			},
			{Default: true, Secret: types.NamespacedName{Namespace: "infra", Name: "default-tls"}, Cert: []byte("d"), Key: []byte("k")},
		},
	}
}

// smallTable is a one-route table told apart by n.
func smallTable(n int) routing.Table {
	id := fmt.Sprintf("r%d", n)
	return routing.Table{
		Routes: []*routing.Route{{
			Eskip:   &eskip.Route{Id: id, Path: "/" + id, BackendType: eskip.ShuntBackend},
			Ingress: types.NamespacedName{Namespace: "ns", Name: id},
		}},
		Served: []types.NamespacedName{{Namespace: "ns", Name: id}},
	}
}

// bigTable is n routes shaped like routing's: mostly LB routes with three
// endpoints, every tenth a 503 shunt.
func bigTable(n int) routing.Table {
	t := routing.Table{Routes: make([]*routing.Route, n)}
	for i := range n {
		ns, name := fmt.Sprintf("team%03d", i/100), fmt.Sprintf("app%05d", i)
		host := fmt.Sprintf("%s.%s.example.com", name, ns)
		r := routing.Route{
			Ingress: types.NamespacedName{Namespace: ns, Name: name},
			Host:    host, Path: "/api", PathType: "Prefix", VirtualHost: host,
			Service: name, Port: "http",
		}
		def := &eskip.Route{
			Id:         fmt.Sprintf("ing__%s__%s__%s__api__prefix__%08x", ns, name, strings.ReplaceAll(host, ".", "_"), i),
			Predicates: []*eskip.Predicate{{Name: "PathSubtree", Args: []any{"/" + host + "/api"}}},
		}
		if i%10 == 9 {
			def.Filters = []*eskip.Filter{{Name: restorePath}, {Name: "status", Args: []any{503}},
				{Name: "inlineContent", Args: []any{fmt.Sprintf("service %s/%s has no ready endpoints\n", ns, name)}}}
			def.BackendType, def.Shunt = eskip.ShuntBackend, true
		} else {
			r.Backend = routing.BackendKey{Namespace: ns, Service: name, Port: 8080}
			def.Filters = []*eskip.Filter{{Name: restorePath}, {Name: "bulkheadBackend", Args: []any{r.Backend.String()}}}
			def.BackendType = eskip.DynamicBackend
			b := routing.Backend{Key: r.Backend}
			for j := range 3 {
				addr := fmt.Sprintf("10.%d.%d.%d:8080", i/250%250, i%250, j+1)
				b.Endpoints = append(b.Endpoints, routing.Endpoint{Address: addr, Ready: true, Serving: true})
			}
			t.Backends = append(t.Backends, b)
		}
		r.Eskip = def
		t.Routes[i] = &r
		t.Served = append(t.Served, r.Ingress)
	}
	return t
}

// checkPopulated fails unless every exported field of every struct type
// reachable from v (not descending into eskip routes, which are compared
// with eskip.Eq) is non-zero in at least one instance: a field added to
// routing.Table or Route later must be set in fullTable, so the round-trip
// test covers it.
func checkPopulated(t *testing.T, v any) {
	t.Helper()
	all, set := map[string]bool{}, map[string]bool{}
	var walkType func(reflect.Type, string)
	walkType = func(ty reflect.Type, path string) {
		switch ty.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
			if ty != reflect.TypeFor[*eskip.Route]() {
				walkType(ty.Elem(), path)
			}
		case reflect.Struct:
			for f := range ty.Fields() {
				if f.IsExported() && f.Tag.Get("json") != "-" { // "-": not stored
					all[path+"."+f.Name] = true
					walkType(f.Type, path+"."+f.Name)
				}
			}
		}
	}
	var walk func(reflect.Value, string)
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() && v.Type() != reflect.TypeFor[*eskip.Route]() {
				walk(v.Elem(), path)
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				walk(v.Index(i), path)
			}
		case reflect.Map:
			for it := v.MapRange(); it.Next(); {
				walk(it.Value(), path)
			}
		case reflect.Struct:
			for i := range v.NumField() {
				if f := v.Type().Field(i); f.IsExported() {
					if !v.Field(i).IsZero() {
						set[path+"."+f.Name] = true
					}
					walk(v.Field(i), path+"."+f.Name)
				}
			}
		}
	}
	rv := reflect.ValueOf(v)
	walkType(rv.Type(), rv.Type().Name())
	walk(rv, rv.Type().Name())
	for p := range all {
		if !set[p] {
			t.Errorf("fixture leaves %s zero everywhere: set it, so that the round trip covers it", p)
		}
	}
}

// eskipEqual is eskip.Eq after turning numeric arguments into float64, as
// the parser makes them.
func eskipEqual(t *testing.T, a, b *eskip.Route) bool {
	t.Helper()
	ca, err := forComparison(a)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := forComparison(b)
	if err != nil {
		t.Fatal(err)
	}
	return eskip.Eq(ca, cb)
}

// requireSameTable compares every field of want and got: the eskip routes
// with eskipEqual, the rest with reflect.DeepEqual (so nil and empty slices
// differ, as they do in the table).
func requireSameTable(t *testing.T, want, got routing.Table) {
	t.Helper()
	if len(want.Routes) != len(got.Routes) {
		t.Fatalf("%d routes, want %d", len(got.Routes), len(want.Routes))
	}
	strip := func(tb routing.Table) routing.Table {
		if tb.Routes != nil {
			rs := make([]*routing.Route, len(tb.Routes))
			for i, r := range tb.Routes {
				c := *r // the tables' routes are shared, never modified
				c.Eskip = nil
				rs[i] = &c
			}
			tb.Routes = rs
		}
		return tb
	}
	for i := range want.Routes {
		w, g := want.Routes[i].Eskip, got.Routes[i].Eskip
		if (w == nil) != (g == nil) || w != nil && !eskipEqual(t, w, g) {
			t.Errorf("route %d: eskip\n got %s\nwant %s", i, eskip.String(g), eskip.String(w))
		}
	}
	if w, g := strip(want), strip(got); !reflect.DeepEqual(w, g) {
		t.Errorf("tables differ\n got %#v\nwant %#v", g, w)
	}
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSuffix(b.buf.String(), "\n"), "\n")
}

func (b *syncBuffer) count() int {
	if l := b.lines(); len(l) > 1 || l[0] != "" {
		return len(l)
	}
	return 0
}

type harness struct {
	*Store
	dir  string
	reg  *prometheus.Registry
	logs *syncBuffer
}

func newHarness(t *testing.T, o Options) *harness {
	t.Helper()
	h := &harness{dir: t.TempDir(), reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	o.Registerer = h.reg
	o.Log = slog.New(slog.NewTextHandler(h.logs, nil))
	s, err := Open(h.dir, o)
	if err != nil {
		t.Fatal(err)
	}
	h.Store = s
	return h
}

func (h *harness) writes(result string) float64 {
	return testutil.ToFloat64(h.metrics.writes.WithLabelValues(result))
}

func (h *harness) loadErrors(kind LoadErrorKind) float64 {
	return testutil.ToFloat64(h.metrics.loadErrors.WithLabelValues(string(kind)))
}

// tempFiles lists the files in the state directory that are not the snapshot.
func (h *harness) tempFiles(t *testing.T) []string {
	t.Helper()
	es, err := os.ReadDir(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if e.Name() != FileName {
			out = append(out, e.Name())
		}
	}
	return out
}

func (h *harness) writeRaw(t *testing.T, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(h.dir, FileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds, failing after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
