package routing

import (
	"cmp"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/dimfeld/httppath"
	networkingv1 "k8s.io/api/networking/v1"
)

func TestPrepareRequest(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	for _, tc := range []struct {
		host, path, raw string
		wantPath        string
		wantRaw         string
	}{
		{"foo.com", "/api", "", "/com/foo/api", ""},
		{"foo.com", "/", "", "/com/foo/", ""},
		{"foo.com", "", "", "/com/foo/", ""},
		{"Foo.COM:8080", "/X/", "", "/com/foo/X/", ""},
		{"bar.foo.com.", "/x", "", "/foo.com/bar/x", ""},
		{"bar.foo.com.:443", "/x", "", "/foo.com/bar/x", ""},
		{"foo.com:", "/x", "", "/com/foo/x", ""},
		{"localhost", "/a", "", "/~/localhost/a", ""},
		{"LOCALHOST:80", "/a", "", "/~/localhost/a", ""},
		{"a_b.c-d.com", "/", "", "/c-d.com/a_b/", ""},
		{"10.1.2.3:80", "/", "", "/1.2.3/10/", ""},
		{long63 + ".com", "/", "", "/com/" + long63 + "/", ""},
		// Not DNS names: only host-less rules match.
		{"", "/a", "", "/~/~/a", ""},
		{"[fd00::1]:80", "/a", "", "/~/~/a", ""},
		{"[fd00::1]", "/a", "", "/~/~/a", ""},
		{"fd00::1", "/a", "", "/~/~/a", ""},
		{"a..b", "/", "", "/~/~/", ""},
		{".foo.com", "/", "", "/~/~/", ""},
		{"foo.com..", "/", "", "/~/~/", ""},
		{".", "/", "", "/~/~/", ""},
		{"*.foo.com", "/", "", "/~/~/", ""},
		{"foo.com/x", "/", "", "/~/~/", ""},
		{"~", "/", "", "/~/~/", ""},
		{"\u212Aoo.com", "/", "", "/~/~/", ""}, // the Kelvin sign is not a "k"
		{"a" + long63 + ".com", "/", "", "/~/~/", ""},
		{strings.Repeat("a.", 127), "/", "", "/" + strings.Repeat("a.", 125) + "a/a/", ""}, // 253 and the trailing dot
		{strings.Repeat("a.", 127) + "a", "/", "", "/~/~/", ""},                            // 255
		// Cleaned before the host key goes in front.
		{"foo.com", "//a/./b/../c", "", "/com/foo/a/c", ""},
		{"foo.com", "/../../com/bar/x", "", "/com/foo/com/bar/x", ""},
		{"foo.com", "/a/..", "", "/com/foo/", ""},
		{"foo.com", "/a/.", "", "/com/foo/a/", ""},
		// RawPath gets the same prefix, uncleaned.
		{"foo.com", "/a/b/c", "/a%2Fb/c", "/com/foo/a/b/c", "/com/foo/a%2Fb/c"},
		{"Foo.com", "/a/b/../c", "/a%2Fb/../c", "/com/foo/a/c", "/com/foo/a%2Fb/../c"},
	} {
		r := &http.Request{Host: tc.host, URL: &url.URL{Path: tc.path, RawPath: tc.raw}}
		PrepareRequest(r)
		if r.URL.Path != tc.wantPath || r.URL.RawPath != tc.wantRaw {
			t.Errorf("%q %q %q: got path %q raw %q, want %q %q", tc.host, tc.path, tc.raw, r.URL.Path, r.URL.RawPath, tc.wantPath, tc.wantRaw)
		}
		if want := cmp.Or(tc.path, "/"); r.Pattern != want {
			t.Errorf("%q %q: pattern %q, want the original path %q", tc.host, tc.path, r.Pattern, want)
		}
		if r.Host != tc.host {
			t.Errorf("%q: Host changed to %q", tc.host, r.Host)
		}
		RestoreRequest(r)
		if want := cmp.Or(tc.path, "/"); r.URL.Path != want || r.URL.RawPath != tc.raw || r.Pattern != "" {
			t.Errorf("%q %q %q: restored path %q raw %q pattern %q", tc.host, tc.path, tc.raw, r.URL.Path, r.URL.RawPath, r.Pattern)
		}
	}
}

// A path that does not start with "/" ("OPTIONS *") is left alone, and
// PrepareRequest takes r.Pattern over: whatever was there is cleared, so
// the restore filter does not "restore" it.
func TestPrepareRequestLeavesNonAbsolutePathsAlone(t *testing.T) {
	r := &http.Request{Method: http.MethodOptions, Host: "foo.com", URL: &url.URL{Path: "*"}, Pattern: "/stale"}
	PrepareRequest(r)
	if r.URL.Path != "*" || r.Pattern != "" {
		t.Fatalf("path %q pattern %q", r.URL.Path, r.Pattern)
	}
	RestoreRequest(r)
	if r.URL.Path != "*" {
		t.Fatalf("restored to %q", r.URL.Path)
	}
	PrepareRequest(&http.Request{Host: "foo.com"}) // no URL: no panic
}

// Restoring twice, or a request never prepared, changes nothing.
func TestRestoreRequestIsIdempotent(t *testing.T) {
	r := &http.Request{Host: "foo.com", URL: &url.URL{Path: "/com/foo/x", RawPath: "/com/foo/x%2F"}}
	RestoreRequest(r)
	if r.URL.Path != "/com/foo/x" || r.URL.RawPath != "/com/foo/x%2F" {
		t.Fatalf("an unprepared request was changed: %+v", r.URL)
	}
	r = &http.Request{Host: "foo.com", URL: &url.URL{Path: "/x/y", RawPath: "/x%2Fy"}}
	PrepareRequest(r)
	RestoreRequest(r)
	RestoreRequest(r)
	if r.URL.Path != "/x/y" || r.URL.RawPath != "/x%2Fy" {
		t.Fatalf("got %q %q", r.URL.Path, r.URL.RawPath)
	}
}

// The attack cleaning first prevents: ".." segments in the request path
// must not climb into the host key and reach another host's routes. It
// also shows the attack would work if the key were prefixed before
// cleaning, so this test tests something.
func TestPrepareRequestDotDotCannotReachAnotherHost(t *testing.T) {
	s := &Snapshot{IngressClasses: []*networkingv1.IngressClass{ingressClass("bulkhead", true)}}
	s.Services = append(s.Services, service("default", "echo", servicePort("http", 80)))
	s.EndpointSlices = append(s.EndpointSlices, endpointSlice("default", "echo", "echo-1", 8080, "10.0.0.1"))
	for i, rr := range []oracleRule{
		{name: "public", host: "foo.com", path: "/public", pathType: networkingv1.PathTypePrefix},
		{name: "secret", host: "bar.com", path: "/secret", pathType: networkingv1.PathTypePrefix},
		{name: "wild", host: "*.com", path: "/wild", pathType: networkingv1.PathTypeExact},
	} {
		s.Ingresses = append(s.Ingresses, rr.ingress(i))
	}
	r := newRouter(t, Translate(s, Options{}))
	for _, path := range []string{
		"/../../com/bar/secret",
		"/public/../../../com/bar/secret/x",
		"/public/../..//../com/bar/secret",
		"//..//../com/bar/secret",
		"/./../.././com/bar/secret/.",
		"/../../com/bar/../bar/secret",
		"/../../../../../../com/bar/secret",
		"/../../~/~/../../com/bar/secret",
	} {
		if got := describe(r.lookup(t, "foo.com", path)); got != "404" {
			t.Errorf("foo.com%s: got %q, want 404", path, got)
		}
		naive := &http.Request{Host: "foo.com", URL: &url.URL{Path: "/com/foo" + path}}
		if chosen, _ := r.routing.Route(naive); chosen == nil || r.byID[chosen.Id].Host != "bar.com" {
			t.Errorf("foo.com%s: prefixing before cleaning does not reach bar.com, the test proves nothing", path)
		}
	}
	// And the same traversal inside the host's own paths still works as
	// skipper always did.
	if got := describe(r.lookup(t, "foo.com", "/secret/../public/x")); got != "default/public foo.com/public Prefix" {
		t.Errorf("got %q", got)
	}
	if got := describe(r.lookup(t, "x.com", "/a/../wild")); got != "default/wild *.com/wild Exact" {
		t.Errorf("got %q", got)
	}
}

// PrepareRequest runs on every request: one allocation (the key) when the
// path is clean, whatever the case of the host and whether RawPath is set;
// a path to clean costs httppath.Clean's two more.
func TestPrepareRequestAllocations(t *testing.T) {
	for _, tc := range []struct {
		host, path, raw string
		allocs          float64
	}{
		{"shop.example.com", "/api/v1/items", "", 1},
		{"Shop.Example.COM:8080", "/api/v1/items", "", 1},
		{"shop.example.com", "/api/a%2Fb", "/api/a%2Fb", 1},
		{"[::1]:80", "/", "", 1},
		{"shop.example.com", "/api//v1/../items", "", 3}, // httppath.Clean's buffer and string
	} {
		r := &http.Request{Host: tc.host, URL: &url.URL{}}
		n := testing.AllocsPerRun(100, func() {
			r.URL.Path, r.URL.RawPath = tc.path, tc.raw
			PrepareRequest(r)
		})
		if n != tc.allocs {
			t.Errorf("%s%s: %v allocations, want %v", tc.host, tc.path, n, tc.allocs)
		}
	}
}

// needsClean must say exactly when httppath.Clean (which skipper applies
// to request paths) changes a path.
func TestNeedsCleanAgreesWithHTTPPathClean(t *testing.T) {
	segments := []string{"", ".", "..", "a", ".a", "a.", "..a", "...", "/"}
	var walk func(prefix string, depth int)
	walk = func(prefix string, depth int) {
		if prefix == "" {
			prefix = "/"
		}
		if got, want := needsClean(prefix), httppath.Clean(prefix) != prefix; got != want {
			t.Errorf("needsClean(%q) = %v, Clean gives %q", prefix, got, httppath.Clean(prefix))
		}
		if depth == 0 {
			return
		}
		for _, s := range segments {
			walk(prefix+"/"+s, depth-1)
		}
	}
	walk("", 4)
}

// FuzzPrepareRequest: for any Host, path and raw path, PrepareRequest does
// not panic; the key starts with the host's own prefix, which skipper's
// cleaning of the key leaves alone, so path segments can never replace it;
// RestoreRequest gives back the original path and raw path; and skipper's
// real lookup never picks a route of a host the request does not have.
func FuzzPrepareRequest(f *testing.F) {
	for _, path := range fixturePaths(f) {
		s, _ := loadFixture(f, path)
		for _, ing := range s.Ingresses {
			for _, rule := range ing.Spec.Rules {
				if rule.HTTP == nil {
					continue
				}
				for _, p := range rule.HTTP.Paths {
					f.Add(rule.Host, p.Path, "")
				}
			}
		}
	}
	f.Add("foo.com", "/../../com/bar/secret", "")
	f.Add("Foo.COM.:80", "/a/b/c", "/a%2Fb/c")
	f.Add("[::1]:8080", "//x/./y/..", "//x/./y/..")
	f.Add("", "", "")
	f.Add("a.b", "*", "")
	f.Add("x.y", "/a", "%2Fa")

	s := &Snapshot{IngressClasses: []*networkingv1.IngressClass{ingressClass("bulkhead", true)}}
	s.Services = append(s.Services, service("default", "echo", servicePort("http", 80)))
	s.EndpointSlices = append(s.EndpointSlices, endpointSlice("default", "echo", "echo-1", 8080, "10.0.0.1"))
	var rules []oracleRule
	for _, host := range []string{"a.com", "b.a.com", "*.a.com", "com", "*.com", "localhost", "~", "1.2.3"} {
		for _, path := range []string{"/", "/a", "/com/a", "/a.com/b", "/~/~", "/x/y"} {
			rules = append(rules, oracleRule{name: "r", host: host, path: path, pathType: networkingv1.PathTypePrefix})
		}
	}
	for i, rr := range rules {
		rr.name = rr.name + string(rune('a'+i/26)) + string(rune('a'+i%26))
		rules[i] = rr
		s.Ingresses = append(s.Ingresses, rr.ingress(i))
	}
	router := newRouter(f, Translate(s, Options{}))

	f.Fuzz(func(t *testing.T, host, path, raw string) {
		r := &http.Request{Host: host, URL: &url.URL{Path: path, RawPath: raw}, Pattern: "junk"}
		PrepareRequest(r)
		if r.Host != host {
			t.Fatalf("Host changed to %q", r.Host)
		}
		routed := path == "" || path[0] == '/'
		if !routed {
			if r.URL.Path != path || r.URL.RawPath != raw || r.Pattern != "" {
				t.Fatalf("a path not starting with / was changed: %+v, pattern %q", r.URL, r.Pattern)
			}
			return
		}
		original := cmp.Or(path, "/")
		if got, want := needsClean(original), httppath.Clean(original) != original; got != want {
			t.Fatalf("needsClean(%q) = %v", original, got)
		}
		key := r.URL.Path
		wantHost := oracleHost(host)
		parent, label := "~", "~"
		if wantHost != "" {
			var found bool
			if label, parent, found = strings.Cut(wantHost, "."); !found {
				parent = "~"
			}
		}
		prefix := "/" + parent + "/" + label
		if key != prefix+httppath.Clean(original) {
			t.Fatalf("key %q, want %q + the cleaned path", key, prefix)
		}
		if httppath.Clean(key) != key {
			t.Fatalf("key %q is not clean: skipper would change it", key)
		}
		if raw != "" && r.URL.RawPath != prefix+raw {
			t.Fatalf("raw key %q, want %q + %q", r.URL.RawPath, prefix, raw)
		}
		if r.Pattern != original {
			t.Fatalf("pattern %q, want %q", r.Pattern, original)
		}

		if chosen, _ := router.routing.Route(r); chosen != nil {
			if rh := router.byID[chosen.Id].Host; hostClass(strings.ToLower(rh), wantHost) < 0 {
				t.Fatalf("%q%q: chose a route of host %q", host, path, rh)
			}
		}

		RestoreRequest(r)
		if r.URL.Path != original || r.URL.RawPath != raw || r.Pattern != "" {
			t.Fatalf("restored %q %q (pattern %q), want %q %q", r.URL.Path, r.URL.RawPath, r.Pattern, original, raw)
		}
	})
}

func BenchmarkPrepareRequest(b *testing.B) {
	for _, bc := range []struct{ name, host, path, raw string }{
		{"common", "shop.example.com", "/api/v1/items/42", ""},
		{"port+upper", "Shop.Example.COM:8080", "/api/v1/items/42", ""},
		{"rawpath", "shop.example.com", "/api/v1/a/b", "/api/v1/a%2Fb"},
		{"unclean", "shop.example.com", "/api//v1/../items/42", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := &http.Request{Host: bc.host, URL: &url.URL{}}
			b.ReportAllocs()
			for b.Loop() {
				r.URL.Path, r.URL.RawPath = bc.path, bc.raw
				PrepareRequest(r)
			}
		})
	}
}
