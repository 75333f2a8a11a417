package routing

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zalando/skipper/filters"
	"github.com/zalando/skipper/metrics"
	"github.com/zalando/skipper/predicates/traffic"
	skproxy "github.com/zalando/skipper/proxy"
	skrouting "github.com/zalando/skipper/routing"
	"github.com/zalando/skipper/routing/testdataclient"
	"k8s.io/apimachinery/pkg/types"
)

// grpcStand runs the routes of testdata/grpcroute.yaml in skipper's real
// proxy behind a front that speaks HTTP/2 with prior knowledge, as a gRPC
// client does; the fixture's Services are test servers that answer with
// their name and the protocol argument their route's backend filter had.
type grpcStand struct {
	front  string
	client *http.Client
}

func newGRPCStand(t *testing.T) *grpcStand {
	t.Helper()
	s, o := loadFixture(t, filepath.Join("testdata", "grpcroute.yaml"))
	table := Translate(s, o)
	backends := map[string][]Endpoint{}
	for _, b := range table.Backends {
		name := b.Key.Service
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s %s", name, r.URL.Path, r.Header.Get("X-Test-Protocol"))
		}))
		t.Cleanup(srv.Close)
		// Translation refuses loopback endpoints: point the backend at the
		// test server afterwards.
		backends[b.Key.String()] = []Endpoint{{Address: strings.TrimPrefix(srv.URL, "http://"), Ready: true}}
	}
	dc := testdataclient.New(table.EskipRoutes())
	log := &recordingLog{}
	reg := filterRegistry(table)
	reg.Register(protocolEndpointSpec{firstEndpointSpec{backends: backends}})
	reg.Register(NewRequestHeadersSpec())
	reg.Register(NewResponseHeadersSpec())
	reg.Register(stubMirrorSpec{})
	rt := skrouting.New(skrouting.Options{
		FilterRegistry:  reg,
		Predicates:      []skrouting.PredicateSpec{NewGatewayPortSpec(), NewPathRegexpSpec(), NewListenerIsolationSpec(), traffic.NewSegment()},
		DataClients:     []skrouting.DataClient{dc},
		SignalFirstLoad: true,
		Log:             log,
	})
	px := skproxy.WithParams(skproxy.Params{
		Routing:           rt,
		Flags:             skproxy.PreserveHost | skproxy.HopHeadersRemoval,
		Metrics:           metrics.Void,
		AccessLogDisabled: true,
		DefaultHTTPStatus: http.StatusNotFound,
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
	front := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		PrepareRequest(r)
		px.ServeHTTP(w, r.WithContext(WithGatewayPort(r.Context(), 80)))
	}))
	front.Config.Protocols = new(http.Protocols)
	front.Config.Protocols.SetUnencryptedHTTP2(true)
	front.Start()
	t.Cleanup(front.Close)
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &grpcStand{front: front.Listener.Addr().String(), client: &http.Client{Transport: tr}}
}

// call sends what a unary gRPC call sends (POST, application/grpc, TE:
// trailers, an empty message) over h2c.
func (st *grpcStand) call(t *testing.T, host, path string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+st.front+path, strings.NewReader("\x00\x00\x00\x00\x00"))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := st.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("%s%s: answered over %s, want HTTP/2", host, path, resp.Proto)
	}
	return resp, string(body)
}

// Method matches as the spec ranks them: service and method (Exact) before
// a regular expression or the service alone, before the method alone; a
// call no match takes is 404, which gRPC clients read as UNIMPLEMENTED.
// GRPCRoute backends get "protocol=h2c", or TLS where the Service asks.
func TestGRPCRouteMethodMatchesThroughSkipperProxy(t *testing.T) {
	st := newGRPCStand(t)
	for _, c := range []struct {
		host, path string
		header     []string
		want       string // "<service> <path> <protocol>"
		status     int
	}{
		{host: "echo.example", path: "/echo.Echo/Echo", want: "v1 /echo.Echo/Echo h2c"},
		{host: "echo.example:80", path: "/echo.Echo/Echo", want: "v1 /echo.Echo/Echo h2c"},
		{host: "echo.example", path: "/echo.Echo/Other", want: "v2 /echo.Echo/Other h2c"},
		// EchoTwo's rule wants headers; without them the service's rule takes it.
		{host: "echo.example", path: "/echo.Echo/EchoTwo", want: "v2 /echo.Echo/EchoTwo h2c"},
		{host: "echo.example", path: "/any.Service/Ping", want: "v2 /any.Service/Ping h2c"},
		{host: "echo.example", path: "/echo.v2.Echo/EchoThing", want: "v1 /echo.v2.Echo/EchoThing h2c"},
		{host: "echo.example", path: "/other.Thing/Anything", want: "v1 /other.Thing/Anything h2c"},
		{host: "echo.example", path: "/echo.EchoX/Echo", status: http.StatusNotFound},
		{host: "echo.example", path: "/echo.v2.Echo/Ping2", status: http.StatusNotFound},
		{host: "elsewhere.example", path: "/echo.Echo/Echo", status: http.StatusNotFound},
		{host: "cross.example", path: "/granted.Svc/M", want: "tls-backend /granted.Svc/M tls"},
		// A dropped method match (a bad regexp) matches nothing; the
		// rule's other match still serves.
		{host: "bad.example", path: "/still.Served/M", want: "v1 /still.Served/M h2c"},
		{host: "nomatch.example", path: "/x.Y/Z", status: http.StatusNotFound},
		// A listener that allows HTTPRoutes only takes no GRPCRoute; the
		// one that allows GRPCRoutes does.
		{host: "a.grpc.example", path: "/x.Y/Z", want: "v2 /x.Y/Z h2c"},
	} {
		resp, body := st.call(t, c.host, c.path, c.header...)
		status := cmp.Or(c.status, http.StatusOK)
		if resp.StatusCode != status || c.want != "" && body != c.want {
			t.Errorf("%s%s: %d %q, want %d %q", c.host, c.path, resp.StatusCode, body, status, c.want)
		}
		if status == http.StatusOK && resp.Header.Get("Grpc-Status") != "" {
			t.Errorf("%s%s: grpc-status %q from the router", c.host, c.path, resp.Header.Get("Grpc-Status"))
		}
	}
}

// A GRPCRoute rule or share that cannot be served answers UNAVAILABLE as a
// trailers-only response (HTTP 200, grpc-status 14 in the headers, no
// body), which a gRPC client reads as the call's status; HTTP 500 would
// be UNKNOWN to it.
func TestGRPCRouteUnavailableThroughSkipperProxy(t *testing.T) {
	st := newGRPCStand(t)
	for _, c := range []struct{ host, path string }{
		{"cross.example", "/notgranted.Svc/M"}, // ReferenceGrant for HTTPRoutes only
		{"bad.example", "/a.B/C"},              // ExtensionRef: not supported
		{"refused.example", "/a.B/C"},          // unknown filter type
	} {
		resp, body := st.call(t, c.host, c.path)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Grpc-Status") != grpcUnavailable ||
			resp.Header.Get("Content-Type") != "application/grpc" || body != "" || len(resp.Trailer) != 0 {
			t.Errorf("%s%s: %d %v trailers %v body %q, want a trailers-only UNAVAILABLE", c.host, c.path, resp.StatusCode, resp.Header, resp.Trailer, body)
		}
	}
	// The other rule of the refused route still serves.
	if _, body := st.call(t, "refused.example", "/c.D/M"); body != "v1 /c.D/M h2c" {
		t.Errorf("refused.example/c.D/M: %q", body)
	}
}

// The origin of a GRPCRoute's routes says its kind, so /routes and the
// deletion guard tell it from an HTTPRoute of the same name.
func TestGRPCRouteOrigin(t *testing.T) {
	s, o := loadFixture(t, filepath.Join("testdata", "grpcroute_conflict.yaml"))
	table := Translate(s, o)
	kinds := map[string]int{}
	for _, r := range table.Routes {
		if r.Gateway == nil || r.Gateway.HTTPRoute != (types.NamespacedName{Namespace: "infra", Name: "twin"}) {
			continue
		}
		kinds[r.Gateway.Kind]++
		if grpc := strings.HasPrefix(r.Eskip.Id, grpcRouteIDPrefix+"__"); grpc != (r.Gateway.Kind == kindGRPC) {
			t.Errorf("route %s: kind %q", r.Eskip.Id, r.Gateway.Kind)
		}
	}
	if kinds[""] != 1 || kinds[kindGRPC] != 1 || len(kinds) != 2 {
		t.Errorf("routes of infra/twin by kind: %v, want one HTTPRoute (\"\") and one GRPCRoute", kinds)
	}
}

// protocolEndpointSpec is firstEndpointSpec taking the "protocol=" and
// "server-name=" arguments too; it tells the backend the protocol in the
// X-Test-Protocol header (the test servers speak HTTP/1.1 whatever it is).
type protocolEndpointSpec struct{ firstEndpointSpec }

func (s protocolEndpointSpec) CreateFilter(args []any) (filters.Filter, error) {
	protocol := "http1"
	var rest []any
	for _, a := range args {
		if v, ok := a.(string); ok && strings.HasPrefix(v, "protocol=") {
			protocol = strings.TrimPrefix(v, "protocol=")
			continue
		}
		if v, ok := a.(string); ok && strings.HasPrefix(v, "server-name=") {
			continue
		}
		rest = append(rest, a)
	}
	f, err := s.firstEndpointSpec.CreateFilter(rest)
	if err != nil {
		return nil, err
	}
	return protocolFilter{Filter: f, protocol: protocol}, nil
}

type protocolFilter struct {
	filters.Filter
	protocol string
}

func (f protocolFilter) Request(ctx filters.FilterContext) {
	ctx.Request().Header.Set("X-Test-Protocol", f.protocol)
	f.Filter.Request(ctx)
}
