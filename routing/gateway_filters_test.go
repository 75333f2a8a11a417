package routing

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"reflect"
	"testing"

	"github.com/zalando/skipper/filters/filtertest"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// The spec's ReplacePrefixMatch table (HTTPPathModifier), row by row, and
// what the conformance tests add.
func TestRewritePathPrefix(t *testing.T) {
	for _, c := range []struct{ path, prefix, replace, want string }{
		{"/foo/bar", "/foo", "/xyz", "/xyz/bar"},
		{"/foo/bar", "/foo", "/xyz/", "/xyz/bar"},
		{"/foo/bar", "/foo/", "/xyz", "/xyz/bar"},
		{"/foo/bar", "/foo/", "/xyz/", "/xyz/bar"},
		{"/foo", "/foo", "/xyz", "/xyz"},
		{"/foo/", "/foo", "/xyz", "/xyz/"},
		{"/foo/bar", "/foo", "", "/bar"},
		{"/foo/", "/foo", "", "/"},
		{"/foo", "/foo", "", "/"},
		{"/foo/", "/foo", "/", "/"},
		{"/foo", "/foo", "/", "/"},
		{"/prefix/one/two", "/prefix/one", "/one", "/one/two"},
		{"/strip-prefix/three", "/strip-prefix", "/", "/three"},
		{"/strip-prefix", "/strip-prefix", "/", "/"},
		{"/", "/", "/xyz", "/xyz"},
		{"/a", "/", "/xyz", "/xyz/a"},
		{"/a", "/", "", "/a"},
		// Matched clean, as the route did.
		{"/foo//bar/./baz", "/foo", "/xyz", "/xyz/bar/baz"},
		{"/x/../foo/bar", "/foo", "/xyz", "/xyz/bar"},
	} {
		u := &url.URL{Path: c.path}
		p, raw := rewritePath(u, pathModifier{hasPrefix: true, prefix: c.prefix, hasReplace: true, replace: c.replace})
		if got := (&url.URL{Path: p, RawPath: raw}).EscapedPath(); got != c.want {
			t.Errorf("%s prefix %q replaced by %q: %q, want %q", c.path, c.prefix, c.replace, got, c.want)
		}
	}
}

// Escapes the client sent are kept where they are not part of the
// prefix; a prefix escaped across segments is matched on the decoded path.
func TestRewritePathEscapes(t *testing.T) {
	for _, c := range []struct{ requestURI, prefix, replace, wantPath, wantEscaped string }{
		{"/foo/a%2Fb", "/foo", "/xyz", "/xyz/a/b", "/xyz/a%2Fb"},
		{"/f%6Fo/bar", "/foo", "/xyz", "/xyz/bar", "/xyz/bar"},
		{"/foo%2Fbar/baz", "/foo/bar", "/xyz", "/xyz/baz", "/xyz/baz"},
		{"/foo/a%20b", "/foo", "/x%20y", "/x y/a b", "/x%20y/a%20b"},
	} {
		u, err := url.ParseRequestURI(c.requestURI)
		if err != nil {
			t.Fatal(err)
		}
		p, raw := rewritePath(u, pathModifier{hasPrefix: true, prefix: c.prefix, hasReplace: true, replace: c.replace})
		u.Path, u.RawPath = p, raw
		if u.Path != c.wantPath || u.EscapedPath() != c.wantEscaped {
			t.Errorf("%s: %q %q, want %q %q", c.requestURI, u.Path, u.EscapedPath(), c.wantPath, c.wantEscaped)
		}
	}
}

func TestRedirectFilterLocation(t *testing.T) {
	create := func(args ...any) redirectFilter {
		t.Helper()
		f, err := NewRedirectSpec().CreateFilter(args)
		if err != nil {
			t.Fatalf("CreateFilter(%v): %v", args, err)
		}
		return f.(redirectFilter)
	}
	req := func(host, target string, tlsOn bool) *http.Request {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			t.Fatal(err)
		}
		r := &http.Request{Method: "GET", Host: host, URL: u, Header: http.Header{}}
		if tlsOn {
			r.TLS = &tls.ConnectionState{}
		}
		return r
	}
	for _, c := range []struct {
		f      redirectFilter
		r      *http.Request
		status int
		want   string
	}{
		{create("status=302", "listener-port=80"), req("foo.com", "/a?b=c", false), 302, "http://foo.com/a?b=c"},
		{create("status=301", "listener-port=8080"), req("foo.com:8080", "/a", false), 301, "http://foo.com:8080/a"},
		// Over TLS the request's scheme is https and 443 is left out.
		{create("status=302", "listener-port=443"), req("foo.com", "/a", true), 302, "https://foo.com/a"},
		{create("status=302", "listener-port=443", "scheme=http"), req("foo.com", "/a", true), 302, "http://foo.com/a"},
		// A scheme set takes its well-known port even when it is the
		// request's own.
		{create("status=302", "listener-port=8080", "scheme=http"), req("foo.com:8080", "/", false), 302, "http://foo.com/"},
		{create("status=302", "listener-port=80", "port=443", "scheme=http"), req("foo.com", "/", false), 302, "http://foo.com:443/"},
		{create("status=302", "listener-port=80", "scheme=https", "port=80"), req("foo.com", "/", false), 302, "https://foo.com:80/"},
		// IPv6 hosts keep their brackets.
		{create("status=307", "listener-port=8080"), req("[2001:db8::1]:8080", "/x", false), 307, "http://[2001:db8::1]:8080/x"},
		{create("status=308", "listener-port=80", "port=81"), req("[2001:db8::1]", "/x", false), 308, "http://[2001:db8::1]:81/x"},
		{create("status=302", "listener-port=80", "full-path=/new"), req("foo.com", "/old/path?q", false), 302, "http://foo.com/new?q"},
		{create("status=302", "listener-port=80", "prefix=/old", "replace-prefix="), req("foo.com", "/old", false), 302, "http://foo.com/"},
	} {
		ctx := &filtertest.Context{FRequest: c.r}
		c.f.Request(ctx)
		if !ctx.FServedWithResponse || ctx.FResponse.StatusCode != c.status || ctx.FResponse.Header.Get("Location") != c.want {
			t.Errorf("%+v %s%s: served %v %+v, want %d %q", c.f, c.r.Host, c.r.URL, ctx.FServedWithResponse, ctx.FResponse, c.status, c.want)
		}
	}
}

func TestGatewayFilterArguments(t *testing.T) {
	for _, bad := range [][]any{
		nil,
		{"listener-port=80"},
		{"status=300", "listener-port=80"},
		{"status=302"},
		{"status=302", "listener-port=0"},
		{"status=302", "listener-port=80", "scheme=ftp"},
		{"status=302", "listener-port=80", "port=x"},
		{"status=302", "listener-port=80", "hostname="},
		{"status=302", "listener-port=80", "status=301"},
		{"status=302", "listener-port=80", "full-path=/a", "prefix=/b", "replace-prefix=/c"},
		{"status=302", "listener-port=80", "prefix=/b"},
		{"status=302", "listener-port=80", "full-path=relative"},
		{"status=302", "listener-port=80", "unknown=1"},
		{"status=302", "listener-port=80", 1.0},
	} {
		if _, err := NewRedirectSpec().CreateFilter(bad); err == nil {
			t.Errorf("redirect CreateFilter(%v) accepted", bad)
		}
	}
	for _, bad := range [][]any{nil, {"status=302"}, {"hostname="}, {"replace-prefix=/x"}, {"prefix=/a", "replace-prefix=x"}} {
		if _, err := NewRewriteSpec().CreateFilter(bad); err == nil {
			t.Errorf("rewrite CreateFilter(%v) accepted", bad)
		}
	}
}

func TestRewriteFilter(t *testing.T) {
	f, err := NewRewriteSpec().CreateFilter([]any{"hostname=internal.example", "prefix=/api", "replace-prefix=/v2"})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.ParseRequestURI("/api/users?id=1")
	r := &http.Request{Host: "public.example", URL: u}
	ctx := &filtertest.Context{FRequest: r, FOutgoingHost: r.Host}
	f.Request(ctx)
	if ctx.FOutgoingHost != "internal.example" || u.String() != "/v2/users?id=1" || r.Host != "public.example" {
		t.Errorf("outgoing host %q, URL %q, Host %q", ctx.FOutgoingHost, u, r.Host)
	}
}

// BulkheadPathRegexp sees the path after the host key, whole.
func TestPathRegexpPredicate(t *testing.T) {
	for _, bad := range [][]any{nil, {"("}, {"a)|(.*"}, {1.0}, {"a", "b"}} {
		if _, err := NewPathRegexpSpec().Create(bad); err == nil {
			t.Errorf("Create(%v) accepted", bad)
		}
	}
	p, err := NewPathRegexpSpec().Create([]any{"/users/[0-9]+|/me"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		host, path string
		want       bool
	}{
		{"foo.com", "/users/1", true},
		{"foo.com", "/me", true},
		{"foo.com", "/users/1/x", false},
		{"foo.com", "/x/me", false},
		{"users", "/1", false}, // the key "/~/users" is not part of the path
		{"foo.com", "/users//1", true},
	} {
		r := &http.Request{Host: c.host, URL: &url.URL{Path: c.path}}
		PrepareRequest(r)
		if got := p.Match(r); got != c.want {
			t.Errorf("%s%s: %v, want %v", c.host, c.path, got, c.want)
		}
	}
	if p.Match(&http.Request{URL: &url.URL{Path: "/users/1"}}) {
		t.Error("a request PrepareRequest did not see matched")
	}
}

func TestTimeoutPolicy(t *testing.T) {
	d := func(s string) *gatewayv1.Duration { v := gatewayv1.Duration(s); return &v }
	for _, c := range []struct {
		to   *gatewayv1.HTTPRouteTimeouts
		want []any
		bad  bool
	}{
		{nil, nil, false},
		{&gatewayv1.HTTPRouteTimeouts{}, nil, false},
		{&gatewayv1.HTTPRouteTimeouts{Request: d("500ms")}, []any{"request-timeout=500ms"}, false},
		{&gatewayv1.HTTPRouteTimeouts{BackendRequest: d("0s")}, []any{"response-header-timeout=0s"}, false},
		{&gatewayv1.HTTPRouteTimeouts{Request: d("1h30m"), BackendRequest: d("1h30m")}, []any{"request-timeout=1h30m0s", "response-header-timeout=1h30m0s"}, false},
		{&gatewayv1.HTTPRouteTimeouts{Request: d("0s"), BackendRequest: d("10s")}, []any{"request-timeout=0s", "response-header-timeout=10s"}, false},
		{&gatewayv1.HTTPRouteTimeouts{Request: d("1s"), BackendRequest: d("1001ms")}, nil, true},
		{&gatewayv1.HTTPRouteTimeouts{Request: d("1.5s")}, nil, true},
		{&gatewayv1.HTTPRouteTimeouts{Request: d("-1s")}, nil, true},
		{&gatewayv1.HTTPRouteTimeouts{BackendRequest: d("24h1s")}, nil, true},
		{&gatewayv1.HTTPRouteTimeouts{BackendRequest: d("1d")}, nil, true},
	} {
		got, err := timeoutPolicy(c.to)
		if (err != "") != c.bad || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%+v: %v %q, want %v (refused: %v)", c.to, got, err, c.want, c.bad)
		}
	}
}
