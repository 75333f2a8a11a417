package routing

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/zalando/skipper/loadbalancer"
	"github.com/zalando/skipper/metrics"
	skproxy "github.com/zalando/skipper/proxy"
	skrouting "github.com/zalando/skipper/routing"
	"github.com/zalando/skipper/routing/testdataclient"
	networkingv1 "k8s.io/api/networking/v1"
)

// TestThroughSkipperProxy runs translated routes in skipper's real proxy,
// set up as bulkhead's proxy package sets it up, behind a handler that
// calls PrepareRequest: host precedence and fall-through hold, and the pod
// receives exactly the path, raw path and query the client sent.
func TestThroughSkipperProxy(t *testing.T) {
	stand := netip.MustParseAddr("192.0.2.1") // TEST-NET-1: never routed
	// One backend per Service; each answers with its name and what it got.
	backends := map[string]*httptest.Server{}
	s := &Snapshot{IngressClasses: []*networkingv1.IngressClass{ingressClass("bulkhead", true)}}
	for _, name := range []string{"exact", "wild", "hostless", "default"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s %s %q %q %s", name, r.Host, r.RequestURI, r.URL.Path, r.URL.RawPath, r.URL.RawQuery)
		}))
		t.Cleanup(srv.Close)
		backends[name] = srv
		_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
		p, _ := strconv.Atoi(port)
		s.Services = append(s.Services, service("default", name, servicePort("http", 80)))
		// Translation refuses loopback endpoints; the slice names a
		// documentation address, pointed at the test server below.
		s.EndpointSlices = append(s.EndpointSlices, endpointSlice("default", name, name+"-1", int32(p), stand.String()))
	}
	rule := func(host, service string, paths ...string) networkingv1.IngressRule {
		r := networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{}}}
		for _, p := range paths {
			pathType := networkingv1.PathTypePrefix
			if rest, ok := strings.CutPrefix(p, "="); ok {
				p, pathType = rest, networkingv1.PathTypeExact
			}
			r.HTTP.Paths = append(r.HTTP.Paths, networkingv1.HTTPIngressPath{
				Path: p, PathType: ptr(pathType),
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
					Name: service, Port: networkingv1.ServiceBackendPort{Number: 80},
				}},
			})
		}
		return r
	}
	ing := &networkingv1.Ingress{}
	ing.Namespace, ing.Name = "default", "all"
	ing.Spec.Rules = []networkingv1.IngressRule{
		rule("foo.example.com", "exact", "/app", "=/exact"),
		rule("*.example.com", "wild", "/app/deep", "/w"),
		rule("", "hostless", "/app/deeper/still", "/other", "/w/x"),
		rule("down.example.com", "missing", "/"),
	}
	ing.Spec.DefaultBackend = &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
		Name: "default", Port: networkingv1.ServiceBackendPort{Number: 80},
	}}
	s.Ingresses = []*networkingv1.Ingress{ing}
	table := Translate(s, Options{})
	for _, b := range table.Backends {
		for i := range b.Endpoints {
			b.Endpoints[i].Address = strings.Replace(b.Endpoints[i].Address, stand.String(), "127.0.0.1", 1)
		}
	}

	front := httptest.NewServer(newTestProxy(t, table))
	t.Cleanup(front.Close)

	for _, tc := range []struct {
		host, requestURI string
		want             string
	}{
		// Exact host, its own paths, case and port ignored.
		{"foo.example.com", "/app/x?q=1", `exact foo.example.com /app/x?q=1 "/app/x" "" q=1`},
		{"FOO.Example.COM:8080", "/app", `exact FOO.Example.COM:8080 /app "/app" "" `},
		{"foo.example.com", "/exact", `exact foo.example.com /exact "/exact" "" `},
		// Raw path and query reach the pod as sent.
		{"foo.example.com", "/app/a%2Fb/c?x=1", `exact foo.example.com /app/a%2Fb/c?x=1 "/app/a/b/c" "/app/a%2Fb/c" x=1`},
		{"foo.example.com", "/other/a%2Fb/c?x=1&y=%2F", `hostless foo.example.com /other/a%2Fb/c?x=1&y=%2F "/other/a/b/c" "/other/a%2Fb/c" x=1&y=%2F`},
		// The exact host wins over a longer host-less path.
		{"foo.example.com", "/app/deeper/still/x", `exact foo.example.com /app/deeper/still/x "/app/deeper/still/x" "" `},
		// Fall-through: exact host, then wildcard, then host-less.
		{"foo.example.com", "/w/x", `wild foo.example.com /w/x "/w/x" "" `},
		{"foo.example.com", "/other", `hostless foo.example.com /other "/other" "" `},
		{"foo.example.com", "/exact/x", `default foo.example.com /exact/x "/exact/x" "" `},
		// The path is matched cleaned but forwarded as sent.
		{"foo.example.com", "/app/../w/z", `wild foo.example.com /app/../w/z "/app/../w/z" "" `},
		{"foo.example.com", "//app//x", `exact foo.example.com //app//x "//app//x" "" `},
		// Wildcard: one label only.
		{"bar.example.com", "/app/deep/x", `wild bar.example.com /app/deep/x "/app/deep/x" "" `},
		{"bar.example.com", "/app/x", `default bar.example.com /app/x "/app/x" "" `},
		{"a.bar.example.com", "/w", `default a.bar.example.com /w "/w" "" `},
		{"a.bar.example.com", "/w/x/y", `hostless a.bar.example.com /w/x/y "/w/x/y" "" `},
		// Host-less and default for hosts that are not DNS names.
		{"[::1]:80", "/other", `hostless [::1]:80 /other "/other" "" `},
		{"[::1]:80", "/app", `default [::1]:80 /app "/app" "" `},
		// ".." cannot climb into the host key: evil.example.com must not
		// reach foo.example.com's "/exact" (key /example.com/foo/exact).
		{"evil.example.com", "/../../example.com/foo/exact", `default evil.example.com /../../example.com/foo/exact "/../../example.com/foo/exact" "" `},
	} {
		got, status := rawGet(t, front.Listener.Addr().String(), tc.host, tc.requestURI)
		if status != http.StatusOK || got != tc.want {
			t.Errorf("%s%s: got %d %q, want %q", tc.host, tc.requestURI, status, got, tc.want)
		}
	}

	// A 503 route answers 503 (and does not fall through), with the generic
	// body the proxy recognises: nothing of the namespace or Service.
	if body, status := rawGet(t, front.Listener.Addr().String(), "down.example.com", "/x"); status != http.StatusServiceUnavailable || body != "Service Unavailable\n" {
		t.Errorf("down.example.com: got %d %q", status, body)
	}
}

// newTestProxy is bulkhead's serving path in miniature: skipper routing
// with the restore filter and the load balancer post-processors, skipper's
// proxy, and a handler calling PrepareRequest first.
func newTestProxy(t *testing.T, table Table) http.Handler {
	t.Helper()
	dc := testdataclient.New(table.EskipRoutes())
	endpoints := skrouting.NewEndpointRegistry(skrouting.RegistryOptions{})
	log := &recordingLog{}
	rt := skrouting.New(skrouting.Options{
		FilterRegistry:  filterRegistry(table),
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
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		PrepareRequest(r)
		px.ServeHTTP(w, r)
	})
}

// rawGet sends a GET with exactly this request-target and Host, which
// net/http's client would normalise, and returns the body and status.
func rawGet(t *testing.T, addr, host, requestURI string) (string, int) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", requestURI, host)
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodGet, URL: &url.URL{}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body), resp.StatusCode
}
