package routing

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/pathmux"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// FuzzTranslate mutates the golden fixtures: whatever objects come out of
// the YAML, Translate must not panic and must emit a valid table.
func FuzzTranslate(f *testing.F) {
	for _, path := range fixturePaths(f) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, o, err := parseFixture(data, false)
		if err != nil {
			return
		}
		checkTable(t, s, o)
	})
}

// FuzzTranslateRule mutates the fields of one Ingress path, its Service
// port and an endpoint address, on top of a working snapshot.
func FuzzTranslateRule(f *testing.F) {
	f.Add("foo.com", "/api", "Prefix", int32(80), "", "http", int32(8080), "10.0.0.1")
	f.Add("*.foo.com", "/", "Exact", int32(0), "http", "http", int32(8080), "fd00::1")
	f.Add("", "", "ImplementationSpecific", int32(80), "", "", int32(0), "")
	f.Add("FOO.com.", "/a/:b", "Regex", int32(-1), "x", "", int32(70000), "10.0.0.1/8")
	f.Add("a.b.c", "/x\"y\\z\n", "Prefix", int32(80), "", "", int32(1), "::ffff:1.2.3.4")
	f.Add("meta.foo.com", "/", "Prefix", int32(80), "", "http", int32(80), "169.254.169.254") // refused, beside 10.0.0.2
	f.Add("meta.foo.com", "/", "Prefix", int32(80), "", "http", int32(80), "::ffff:127.0.0.1")
	f.Fuzz(func(t *testing.T, host, path, pathType string, port int32, portName, slicePortName string, slicePort int32, address string) {
		s := &Snapshot{IngressClasses: []*networkingv1.IngressClass{ingressClass("bulkhead", true)}}
		s.Services = append(s.Services, service("default", "echo", servicePort("http", 80)))
		slice := endpointSlice("default", "echo", "echo-1", slicePort, address, "10.0.0.2")
		slice.Ports[0].Name = &slicePortName
		s.EndpointSlices = append(s.EndpointSlices, slice, endpointSlice("default", "echo", "echo-6", 8080, address))
		s.EndpointSlices[1].AddressType = discoveryv1.AddressTypeIPv6

		ing := &networkingv1.Ingress{}
		ing.Namespace, ing.Name = "default", "fuzz"
		pt := networkingv1.PathType(pathType)
		backend := networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
			Name: "echo", Port: networkingv1.ServiceBackendPort{Number: port, Name: portName},
		}}
		ing.Spec.DefaultBackend = &backend
		ing.Spec.Rules = []networkingv1.IngressRule{
			{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{
					{Path: path, PathType: &pt, Backend: backend},
					{Path: "/", PathType: ptr(networkingv1.PathTypePrefix), Backend: backend},
				},
			}}},
			{IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{{Path: path, PathType: &pt, Backend: backend}},
			}}},
		}
		s.Ingresses = append(s.Ingresses, ing)
		checkTable(t, s, Options{})
	})
}

var validRouteID = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// checkTable translates and asserts what must hold for any input: unique,
// valid, sorted IDs; the table prints as eskip that parses back to the same
// routes; every path is accepted by skipper's path tree and starts with the
// key of the route's host; every route restores the request path first; the
// output is deterministic.
func checkTable(t *testing.T, s *Snapshot, o Options) {
	t.Helper()
	table := Translate(s, o)
	ids := make([]string, len(table.Routes))
	for i, r := range table.Routes {
		ids[i] = r.Eskip.Id
		if !validRouteID.MatchString(r.Eskip.Id) {
			t.Fatalf("invalid route ID %q", r.Eskip.Id)
		}
		checkPredicates(t, r)
		if f := r.Eskip.Filters; len(f) == 0 || f[0].Name != RestorePathName || len(f[0].Args) != 0 {
			t.Fatalf("%s: the first filter is not %s()", r.Eskip.Id, RestorePathName)
		}
	}
	if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Fatalf("route IDs not sorted and unique: %q", ids)
	}
	if !slices.IsSortedFunc(table.Problems, compareProblems) {
		t.Fatal("problems not sorted")
	}
	if !slices.IsSortedFunc(table.Served, compareNames) || len(slices.Compact(slices.Clone(table.Served))) != len(table.Served) {
		t.Fatalf("served ingresses not sorted and unique: %v", table.Served)
	}

	printed := eskip.Print(eskip.PrettyPrintInfo{}, table.EskipRoutes()...)
	parsed, err := eskip.Parse(printed)
	if err != nil {
		t.Fatalf("emitted routes do not parse: %v\n%s", err, printed)
	}
	if len(parsed) != len(table.Routes) {
		t.Fatalf("parsed %d routes, emitted %d", len(parsed), len(table.Routes))
	}
	for i, p := range parsed {
		if p.Id != ids[i] || p.String() != table.Routes[i].Eskip.String() {
			t.Fatalf("route %s does not survive printing:\n%s\n%s", ids[i], p, table.Routes[i].Eskip)
		}
	}
	if again := renderTable(Translate(s, o)); again != renderTable(table) {
		t.Fatal("two translations of one snapshot differ")
	}
}

// checkPredicates checks the one path predicate of a route: skipper's tree
// accepts it, and it is the key of the route's vhost followed by its path.
// The default backend has none.
func checkPredicates(t *testing.T, r Route) {
	t.Helper()
	e := r.Eskip
	var path string
	subtree := false
	if e.Path != "" {
		path = e.Path
		checkTreePath(t, e.Id, path, false)
	}
	for _, p := range e.Predicates {
		switch p.Name {
		case "PathSubtree":
			if path != "" {
				t.Fatalf("%s: more than one path predicate", e.Id)
			}
			path, subtree = p.Args[0].(string), true
			checkTreePath(t, e.Id, path, true)
		case "Weight":
		case GatewayPortName, PathRegexpName, "Host", "Method", "Header", "HeaderRegexp", "QueryParam", "TrafficSegment":
			if r.Gateway == nil {
				t.Fatalf("%s: predicate %s on an Ingress route", e.Id, p.Name)
			}
		default:
			t.Fatalf("%s: unexpected predicate %s", e.Id, p.Name)
		}
	}
	if r.DefaultBackend {
		if path != "" {
			t.Fatalf("%s: the default backend has a path", e.Id)
		}
		return
	}
	key := ruleHostKey(r.VirtualHost)
	if len(e.HostRegexps) > 0 { // a Gateway wildcard's deeper names: host-less key, Host regexp
		key = ruleHostKey(anyHostVHostKey)
	}
	rest, ok := strings.CutPrefix(path, key)
	if !ok || rest != "" && rest[0] != '/' || !subtree && rest == "" {
		t.Fatalf("%s: path %q does not start with the key %q of its host %q", e.Id, path, key, r.Host)
	}
	if strings.Count(key, "/") != 2 || strings.Contains(rest, ":") {
		t.Fatalf("%s: path %q: the key %q must be exactly two segments, and the rule path has no wildcard", e.Id, path, key)
	}
}

// checkTreePath adds a path to a skipper path tree, as skipper's matcher
// does (a subtree also as "<path>/**").
func checkTreePath(t *testing.T, id, path string, subtree bool) {
	t.Helper()
	tree := &pathmux.Tree{}
	if err := tree.Add(path, 1); err != nil {
		t.Fatalf("%s: skipper's path tree refuses %q: %v", id, path, err)
	}
	if !subtree {
		return
	}
	if err := tree.Add(strings.TrimSuffix(path, "/")+"/**", 1); err != nil {
		t.Fatalf("%s: skipper's path tree refuses the subtree of %q: %v", id, path, err)
	}
}
