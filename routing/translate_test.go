package routing

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/dimfeld/httppath"
	"github.com/zalando/skipper/eskip"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

func TestTranslateNilSnapshot(t *testing.T) {
	table := Translate(nil, Options{})
	if len(table.Routes) != 0 || len(table.Problems) != 0 {
		t.Fatalf("got %+v", table)
	}
}

// Nil pointers wherever the API types have them: nothing panics, each bad
// part costs only itself.
func TestTranslateSurvivesNilFields(t *testing.T) {
	noHTTP := &networkingv1.Ingress{Spec: networkingv1.IngressSpec{
		IngressClassName: ptr(""),
		Rules:            []networkingv1.IngressRule{{Host: "no-http.com"}},
		DefaultBackend:   &networkingv1.IngressBackend{},
	}}
	noHTTP.Namespace, noHTTP.Name = "default", "no-http"

	nilParts := &networkingv1.Ingress{Spec: networkingv1.IngressSpec{
		Rules: []networkingv1.IngressRule{{
			Host: "nil.com",
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{
					{Path: "/no-type", Backend: echoBackend()},
					{Path: "/no-backend", PathType: ptr(networkingv1.PathTypePrefix)},
					{Path: "/resource", PathType: ptr(networkingv1.PathTypePrefix), Backend: networkingv1.IngressBackend{
						Resource: &corev1.TypedLocalObjectReference{Kind: "Bucket", Name: "b"},
					}},
				},
			}},
		}},
	}}
	nilParts.Namespace, nilParts.Name = "default", "nil-parts"

	nilSlice := &EndpointSlice{Namespace: "default", Name: "echo-nil", Service: "echo",
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{}, {Name: ptr("http")}, {Name: ptr("http"), Port: ptr(int32(8080))}},
		Endpoints:   []SliceEndpoint{{}, NewSliceEndpoint(discoveryv1.Endpoint{Addresses: []string{"10.0.0.7"}})},
	}

	s := &Snapshot{
		IngressClasses: []*networkingv1.IngressClass{nil, ingressClass("bulkhead", true), {}},
		Ingresses:      []*networkingv1.Ingress{nil, noHTTP, nilParts, {}},
		Services:       []*Service{nil, service("default", "echo", servicePort("http", 80)), {}},
		EndpointSlices: []*EndpointSlice{nil, nilSlice, {}},
	}
	table := Translate(s, Options{})

	var got []string
	for _, r := range table.Routes {
		got = append(got, describe(r))
	}
	wantRoutes := map[string]int{
		"default/no-http default":                                  0, // 503: backend names no service
		"default/nil-parts nil.com/no-type ImplementationSpecific": 1, // the endpoint from the nil-laden slice
		"default/nil-parts nil.com/no-backend Prefix":              0,
		"default/nil-parts nil.com/resource Prefix":                0,
	}
	if len(table.Routes) != len(wantRoutes) {
		t.Fatalf("got routes %q", got)
	}
	for _, r := range table.Routes {
		n, ok := wantRoutes[describe(r)]
		if !ok || len(endpointsOf(table, r)) != n {
			t.Errorf("unexpected route %s with %d endpoints", describe(r), len(endpointsOf(table, r)))
		}
	}
	reasons := map[Reason]int{}
	for _, p := range table.Problems {
		reasons[p.Reason]++
	}
	want := map[Reason]int{InvalidBackend: 2, UnsupportedBackend: 1}
	if !mapsEqual(reasons, want) {
		t.Errorf("problems %+v, want reasons %v", table.Problems, want)
	}
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// A path we accept must be one skipper leaves as it is: skipper cleans
// route paths (and request paths) with httppath.Clean.
func TestRoutablePathsAreCleanForSkipper(t *testing.T) {
	for _, p := range []string{
		"/", "/a", "/a/", "/a/b", "/a.b", "/.a", "/a/.b/", "/..a", "/a..", "/a/b..c/",
		"//", "/a//", "/./", "/.", "/..", "/a/.", "/a/..", "/a/./b", "/a/../b", "/a//b", "/a/b/.", "//a",
	} {
		accepted := checkRoutablePath(p) == nil
		if clean := httppath.Clean(p) == p; accepted != clean {
			t.Errorf("%q: accepted %v, but httppath.Clean leaves it unchanged: %v", p, accepted, clean)
		}
	}
}

// Should two routes ever get the same ID, they get distinct ones, in an
// order that does not depend on the input order.
func TestSortRoutesMakesIDsUnique(t *testing.T) {
	mk := func(id, path string) *Route {
		return &Route{Eskip: &eskip.Route{Id: id}, Path: path}
	}
	for _, in := range [][]*Route{
		{mk("b", "/2"), mk("b", "/1"), mk("a", "/"), mk("b", "/3"), mk("c", "/")},
		{mk("c", "/"), mk("b", "/3"), mk("b", "/1"), mk("a", "/"), mk("b", "/2")},
	} {
		sortRoutes(in)
		var got []string
		for _, r := range in {
			got = append(got, r.Eskip.Id+"="+r.Path)
		}
		want := []string{"a=/", "b=/1", "b_2=/2", "b_3=/3", "c=/"}
		if !slices.Equal(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestRouteIDsAreReadable(t *testing.T) {
	s, o := loadFixture(t, "testdata/precedence.yaml")
	var ids []string
	for _, r := range Translate(s, o).Routes {
		ids = append(ids, r.Eskip.Id)
	}
	for _, want := range []string{
		"ing__default__a__foo_com__root__prefix__",
		"ing__default__b__anyhost__api_v1__prefix__",
		"ing__default__w__wildcard_wild_com__e__exact__",
	} {
		if !slices.ContainsFunc(ids, func(id string) bool {
			return strings.HasPrefix(id, want) && len(id) == len(want)+8
		}) {
			t.Errorf("no route ID %s<hash>", want)
		}
	}
}

// Table.Served lists every Ingress selected by class, routes or not,
// sorted, each once, in any input order.
func TestTableServed(t *testing.T) {
	other := &networkingv1.IngressClass{Spec: networkingv1.IngressClassSpec{Controller: "example.com/other"}}
	other.Name = "other"
	ing := func(namespace, name string, class *string, rules ...networkingv1.IngressRule) *networkingv1.Ingress {
		i := &networkingv1.Ingress{Spec: networkingv1.IngressSpec{IngressClassName: class, Rules: rules}}
		i.Namespace, i.Name = namespace, name
		return i
	}
	ours, theirs := ptr("bulkhead"), ptr("other")
	withPath := networkingv1.IngressRule{Host: "foo.com", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
		Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: ptr(networkingv1.PathTypePrefix), Backend: echoBackend()}},
	}}}
	badHost := withPath
	badHost.Host = "bad_host.com"
	legacyOther := ing("a", "legacy-other", nil, withPath)
	legacyOther.Annotations = map[string]string{legacyClassAnnotation: "other"}
	s := &Snapshot{
		IngressClasses: []*networkingv1.IngressClass{ingressClass("bulkhead", true), other},
		Ingresses: []*networkingv1.Ingress{
			ing("b", "routes", ours, withPath),
			ing("a", "no-rules", ours),
			ing("a", "invalid", ours, badHost),
			ing("a", "conflict-loser", ours, withPath),
			ing("c", "other", theirs, withPath),
			ing("a", "dup", ours, withPath),
			ing("a", "dup", ours),
			ing("d", "unclassed", nil),
			legacyOther,
		},
	}
	want := "[a/conflict-loser a/dup a/invalid a/no-rules b/routes d/unclassed]"
	rng := rand.New(rand.NewPCG(3, 4))
	for range 10 {
		table := Translate(shuffledSnapshot(s, rng), Options{})
		if got := fmt.Sprint(table.Served); got != want {
			t.Fatalf("served %s, want %s", got, want)
		}
	}
	if got := Translate(&Snapshot{}, Options{}).Served; len(got) != 0 {
		t.Fatalf("served %v from an empty snapshot", got)
	}
}

// TestEmittedRoutesRoundTripThroughEskipText: the stored last-known-good
// table is eskip text, and the data client diffs tables with eskip.Eq, so
// a route printed and parsed back must be Eq to the emitted one (numbers
// are float64 in parsed eskip, so they must be float64 when emitted).
func TestEmittedRoutesRoundTripThroughEskipText(t *testing.T) {
	for _, path := range fixturePaths(t) {
		snapshot, options := loadFixture(t, path)
		name := fixtureName(path)
		for _, r := range Translate(snapshot, options).Routes {
			parsed, err := eskip.Parse(r.Eskip.Id + ": " + r.Eskip.String())
			if err != nil || len(parsed) != 1 {
				t.Fatalf("%s: route %s does not parse back: %v", name, r.Eskip.Id, err)
			}
			if !eskip.Eq(parsed[0], r.Eskip) {
				t.Errorf("%s: route %s differs after a print/parse round trip:\n%s\n%s", name, r.Eskip.Id, r.Eskip, parsed[0])
			}
		}
	}
}
