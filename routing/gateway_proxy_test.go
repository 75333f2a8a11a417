package routing

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zalando/skipper/loadbalancer"
	"github.com/zalando/skipper/metrics"
	"github.com/zalando/skipper/predicates/query"
	"github.com/zalando/skipper/predicates/traffic"
	skproxy "github.com/zalando/skipper/proxy"
	skrouting "github.com/zalando/skipper/routing"
	"github.com/zalando/skipper/routing/testdataclient"
)

// gatewayStand runs the routes of testdata/gateway_filters.yaml in
// skipper's real proxy, set up as bulkhead's proxy sets it up (PreserveHost,
// PrepareRequest and the Gateway port before the lookup), with one front
// server per Gateway listener port and the fixture's Services answered by
// test servers that echo what they received.
type gatewayStand struct {
	fronts map[int32]string // Gateway port -> front address
}

func newGatewayStand(t *testing.T) *gatewayStand {
	t.Helper()
	s, o := loadFixture(t, filepath.Join("testdata", "gateway_filters.yaml"))
	table := Translate(s, o)
	for i, b := range table.Backends {
		name := b.Key.Service
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s %s backend=%q rule=%q set=%q add=%q remove=%q",
				name, r.Host, r.RequestURI, r.Header.Get("Backend"), r.Header.Get("X-Rule"),
				r.Header.Get("X-Header-Set"), r.Header.Values("X-Header-Add"), r.Header.Values("X-Header-Remove"))
		}))
		t.Cleanup(srv.Close)
		// Translation refuses loopback endpoints: point the backend at the
		// test server afterwards.
		table.Backends[i].Endpoints = []Endpoint{{Address: strings.TrimPrefix(srv.URL, "http://"), Ready: true}}
	}
	dc := testdataclient.New(table.EskipRoutes())
	endpoints := skrouting.NewEndpointRegistry(skrouting.RegistryOptions{})
	log := &recordingLog{}
	reg := filterRegistry(table)
	reg.Register(NewRequestHeadersSpec())
	reg.Register(NewResponseHeadersSpec())
	reg.Register(NewRedirectSpec())
	reg.Register(NewRewriteSpec())
	reg.Register(stubPolicySpec{})
	rt := skrouting.New(skrouting.Options{
		FilterRegistry:  reg,
		Predicates:      []skrouting.PredicateSpec{NewGatewayPortSpec(), NewPathRegexpSpec(), NewListenerIsolationSpec(), traffic.NewSegment(), query.New()},
		DataClients:     []skrouting.DataClient{dc},
		SignalFirstLoad: true,
		PostProcessors:  []skrouting.PostProcessor{loadbalancer.NewAlgorithmProvider(), endpoints},
		Log:             log,
	})
	px := skproxy.WithParams(skproxy.Params{
		Routing:           rt,
		Flags:             skproxy.PreserveHost | skproxy.HopHeadersRemoval,
		Metrics:           metrics.Void,
		AccessLogDisabled: true,
		DefaultHTTPStatus: http.StatusNotFound,
		EndpointRegistry:  endpoints,
	})
	t.Cleanup(func() {
		px.Close()
		dc.Close()
		rt.Close()
	})
	<-rt.FirstLoad()
	if errs := log.errors(); len(errs) > 0 {
		t.Fatalf("skipper rejected routes: %v", errs)
	}
	st := &gatewayStand{fronts: map[int32]string{}}
	for _, port := range []int32{80, 8080} {
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			PrepareRequest(r)
			px.ServeHTTP(w, r.WithContext(WithGatewayPort(r.Context(), port)))
		}))
		t.Cleanup(front.Close)
		st.fronts[port] = front.Listener.Addr().String()
	}
	return st
}

// do sends a request with exactly this request-target and Host (plus
// extra header lines) to the front of a Gateway port; it returns the
// response, its body read.
func (st *gatewayStand) do(t *testing.T, port int32, host, requestURI string, header ...string) (*http.Response, string) {
	t.Helper()
	resp, body := rawRequest(t, st.fronts[port], host, requestURI, header...)
	return resp, body
}

// The Location of every redirect the conformance tests check, on
// listeners 80 and 8080: computed from the path the client sent (never the
// host key PrepareRequest put in front of it), with the query kept.
func TestGatewayRedirectThroughSkipperProxy(t *testing.T) {
	st := newGatewayStand(t)
	for _, c := range []struct {
		port       int32
		requestURI string
		status     int
		location   string
	}{
		{80, "/hostname-redirect", 302, "http://example.org/hostname-redirect"},
		{80, "/host-and-status", 301, "http://example.org/host-and-status"},
		{80, "/see-other", 303, "http://redirect.example/see-other"},
		{80, "/temporary?x=1", 307, "http://redirect.example/temporary?x=1"},
		{80, "/permanent", 308, "http://redirect.example/permanent"},
		{80, "/scheme-nil-and-port-nil", 302, "http://example.org/scheme-nil-and-port-nil"},
		{80, "/scheme-nil-and-port-80", 302, "http://example.org/scheme-nil-and-port-80"},
		{80, "/scheme-nil-and-port-8080", 302, "http://example.org:8080/scheme-nil-and-port-8080"},
		{80, "/scheme-https-and-port-nil", 302, "https://example.org/scheme-https-and-port-nil"},
		{80, "/scheme-https-and-port-443", 302, "https://example.org/scheme-https-and-port-443"},
		{80, "/scheme-https-and-port-8443", 302, "https://example.org:8443/scheme-https-and-port-8443"},
		{80, "/port", 302, "http://redirect.example:8083/port"},
		{8080, "/scheme-nil-and-port-nil", 302, "http://example.org:8080/scheme-nil-and-port-nil"},
		{8080, "/scheme-nil-and-port-80", 302, "http://example.org/scheme-nil-and-port-80"},
		{8080, "/scheme-https-and-port-nil", 302, "https://example.org/scheme-https-and-port-nil"},
		{8080, "/see-other", 303, "http://redirect.example:8080/see-other"},
		{80, "/original-prefix/lemon", 302, "http://redirect.example/replacement-prefix/lemon"},
		{80, "/original-prefix/lemon/?q=a%2Fb", 302, "http://redirect.example/replacement-prefix/lemon/?q=a%2Fb"},
		{80, "/full/path/original", 302, "http://redirect.example/full-path-replacement"},
		{80, "/path-and-host", 302, "http://example.org/replacement-prefix"},
		{80, "/two/prefixes/x", 302, "http://redirect.example/moved/x"},
		{80, "/second/y/z", 302, "http://redirect.example/moved/y/z"},
		{80, "/second", 302, "http://redirect.example/moved"},
		// Escapes in the rest of the path stay as the client sent them.
		{80, "/original-prefix/a%2Fb%20c", 302, "http://redirect.example/replacement-prefix/a%2Fb%20c"},
		{80, "/see-other/a%2Fb", 303, "http://redirect.example/see-other/a%2Fb"},
	} {
		resp, _ := st.do(t, c.port, "redirect.example:"+fmt.Sprint(c.port), c.requestURI)
		if resp.StatusCode != c.status || resp.Header.Get("Location") != c.location {
			t.Errorf("port %d %s: got %d %q, want %d %q", c.port, c.requestURI, resp.StatusCode, resp.Header.Get("Location"), c.status, c.location)
		}
	}
	// The rule's response header modifier runs on the redirect too.
	if resp, _ := st.do(t, 80, "redirect.example", "/second/x"); resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("redirect without the rule's response header: %v", resp.Header)
	}
}

// URLRewrite as the conformance tests check it: the pod receives the
// rewritten path (query and escapes kept) and Host, with the rule's header
// modifier applied.
func TestGatewayRewriteThroughSkipperProxy(t *testing.T) {
	st := newGatewayStand(t)
	for _, c := range []struct {
		requestURI string
		header     []string
		want       string
	}{
		{"/prefix/one/two", nil, `v1 rewrite.example /one/two backend="" rule="" set="" add=[] remove=[]`},
		{"/prefix/one", nil, `v1 rewrite.example /one backend="" rule="" set="" add=[] remove=[]`},
		{"/prefix/one/two?x=%2F&y", nil, `v1 rewrite.example /one/two?x=%2F&y backend="" rule="" set="" add=[] remove=[]`},
		{"/prefix/one/a%2Fb", nil, `v1 rewrite.example /one/a%2Fb backend="" rule="" set="" add=[] remove=[]`},
		{"/prefix//one/two", nil, `v1 rewrite.example /one/two backend="" rule="" set="" add=[] remove=[]`}, // matched clean, sent clean
		{"/strip-prefix/three", nil, `v1 rewrite.example /three backend="" rule="" set="" add=[] remove=[]`},
		{"/strip-prefix", nil, `v1 rewrite.example / backend="" rule="" set="" add=[] remove=[]`},
		{"/strip-prefix/", nil, `v1 rewrite.example / backend="" rule="" set="" add=[] remove=[]`},
		{"/full/one/two?q=1", nil, `v1 rewrite.example /one?q=1 backend="" rule="" set="" add=[] remove=[]`},
		{"/full/rewrite-path-and-modify-headers/test", []string{"X-Header-Remove: remove-val", "X-Header-Add: append-val-1", "X-Header-Set: set-val"},
			`v1 rewrite.example /test backend="" rule="" set="set-overwrites-values" add=["append-val-1" "header-val-1"] remove=[]`},
		{"/host/x", nil, `v1 one.example.org /host/x backend="" rule="" set="" add=[] remove=[]`},
		{"/elsewhere", nil, `v2 example.org /root/elsewhere backend="" rule="" set="" add=[] remove=[]`},
		{"/", nil, `v2 example.org /root backend="" rule="" set="" add=[] remove=[]`},
	} {
		resp, body := st.do(t, 80, "rewrite.example", c.requestURI, c.header...)
		if resp.StatusCode != http.StatusOK || body != c.want {
			t.Errorf("%s: got %d %q, want %q", c.requestURI, resp.StatusCode, body, c.want)
		}
	}
}

// Header modifiers on a backendRef apply to its own share only: every
// request that reaches v1 says Backend v1, and the same for v2 (the
// conformance test's check), both get the rule's header, and only v2's
// answers carry its response header. Both shares are seen.
func TestGatewayBackendFiltersThroughSkipperProxy(t *testing.T) {
	st := newGatewayStand(t)
	seen := map[string]int{}
	for range 100 {
		resp, body := st.do(t, 80, "weights.example", "/")
		name, _, _ := strings.Cut(body, " ")
		if !strings.Contains(body, fmt.Sprintf(`backend=%q rule="both"`, name)) {
			t.Fatalf("%s received %q", name, body)
		}
		if got, want := resp.Header.Get("X-Served-By"), map[string]string{"v1": "", "v2": "v2"}[name]; got != want {
			t.Fatalf("%s: X-Served-By %q, want %q", name, got, want)
		}
		seen[name]++
	}
	// 1:1 over 100 requests: each share below 20 is over 6 standard
	// deviations away.
	if seen["v1"] < 20 || seen["v2"] < 20 {
		t.Errorf("shares %v", seen)
	}
}

// RegularExpression paths match the whole path after the host key, rank
// after Exact and longer prefixes of their host, before prefix "/".
func TestGatewayRegexThroughSkipperProxy(t *testing.T) {
	st := newGatewayStand(t)
	for _, c := range []struct{ requestURI, want string }{
		{"/users/42", "v1"},
		{"/users/42?q=1", "v1"},
		{"/users//42", "v1"},       // matched clean
		{"/users/42/x", "v2"},      // anchored at the end
		{"/x/users/42", "v2"},      // anchored at the start
		{"/users/7", "v2"},         // Exact first
		{"/users/admin", "v2"},     // a longer prefix first
		{"/users/abc", "v2"},       // prefix "/"
		{"/a", "v1"},               // "^/a|/b$": the whole path, whichever branch
		{"/b", "v1"},               //
		{"/a/anything", "v2"},      //
		{"/x/b", "v2"},             //
		{"/example/regex/a", "v2"}, // the key is not part of the path
		{"/regex.example/a", "v2"}, //
		{"/users/4%32", "v1"},      // decoded
	} {
		resp, body := st.do(t, 80, "regex.example", c.requestURI)
		name, _, _ := strings.Cut(body, " ")
		if resp.StatusCode != http.StatusOK || name != c.want {
			t.Errorf("%s: got %d %q, want %s", c.requestURI, resp.StatusCode, body, c.want)
		}
	}
}

// rawRequest sends a GET with exactly this request-target and Host, which
// net/http's client would normalise, and extra header lines; it returns
// the response and its body.
func rawRequest(t *testing.T, addr, host, requestURI string, header ...string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n", requestURI, host)
	for _, h := range header {
		fmt.Fprintf(conn, "%s\r\n", h)
	}
	fmt.Fprint(conn, "Connection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodGet, URL: &url.URL{}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}
