package upstream

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/filters/builtin"
	"github.com/zalando/skipper/filters/filtertest"
	"github.com/zalando/skipper/loadbalancer"
	skmetrics "github.com/zalando/skipper/metrics"
	skproxy "github.com/zalando/skipper/proxy"
	"github.com/zalando/skipper/routing"
	"github.com/zalando/skipper/routing/testdataclient"
)

// oldPolicyHeader is the header that carried route policies before they
// moved into the request context. Clients still try it.
const oldPolicyHeader = "X-Bulkhead-Upstream-Policy"

// policyPod is a backend that records what reached it: every request's
// headers, and POSTs. "?sleep=D" answers after D; a path ending in /drop
// is read and the connection closed without an answer.
type policyPod struct {
	srv *httptest.Server
	mu  sync.Mutex
	hdr []http.Header
	// posts counts POSTs received.
	posts int
}

func newPolicyPod(t *testing.T) *policyPod {
	p := &policyPod{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		p.mu.Lock()
		p.hdr = append(p.hdr, r.Header.Clone())
		if r.Method == http.MethodPost {
			p.posts++
		}
		p.mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/drop") {
			if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
				c.Close()
			}
			return
		}
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "text/plain")
		for name, vs := range r.Header { // echo, as a pod showing its request would
			fmt.Fprintf(w, "%s: %s\n", name, strings.Join(vs, ", "))
		}
	}))
	t.Cleanup(p.srv.Close)
	t.Cleanup(p.srv.CloseClientConnections)
	return p
}

func (p *policyPod) counts() (requests, posts int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.hdr), p.posts
}

// policyFront serves, through skipper's real routing and proxy set up as
// bulkhead does (Handler, the policy and backend filters, the
// post-processor, the round tripper), two routes naming a backend of the
// two pods, as routing emits them: /pol with a policy (response header
// timeout 300ms, POST retries) and /plain without one (defaults: response
// header timeout 5s, no POST retries).
func policyFront(t *testing.T, pods ...*policyPod) string {
	t.Helper()
	u, err := New(Config{Defaults: Policy{ResponseHeaderTimeout: 5 * time.Second, ResponseHeaderTimeoutSet: true},
		RefuseUnrouted: true}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, p := range pods {
		addrs = append(addrs, p.srv.Listener.Addr().String())
	}
	u.SetEndpoints(map[string][]string{testBackendKey: addrs})
	backend := BackendFilterName + `("` + testBackendKey + `") -> <dynamic>`
	routes, err := eskip.Parse(fmt.Sprintf(`
		pol: PathSubtree("/pol") -> %s("response-header-timeout=300ms", "retry-non-idempotent=true") -> %[2]s;
		plain: PathSubtree("/plain") -> %[2]s;`, PolicyFilterName, backend))
	if err != nil {
		t.Fatal(err)
	}
	registry := builtin.MakeRegistry()
	registry.Register(u.PolicySpec())
	registry.Register(u.BackendSpec())
	endpoints := routing.NewEndpointRegistry(routing.RegistryOptions{})
	dc := testdataclient.New(routes)
	rt := routing.New(routing.Options{FilterRegistry: registry, DataClients: []routing.DataClient{dc},
		PostProcessors:  []routing.PostProcessor{loadbalancer.NewAlgorithmProvider(), endpoints, u.PostProcessor()},
		SignalFirstLoad: true})
	t.Cleanup(rt.Close)
	<-rt.FirstLoad()
	px := skproxy.WithParams(skproxy.Params{Routing: rt, Metrics: skmetrics.Void, AccessLogDisabled: true,
		EndpointRegistry: endpoints, Flags: skproxy.PreserveHost | skproxy.HopHeadersRemoval,
		CustomHttpRoundTripperWrap: u.WrapRoundTripper, ResponseHeaderTimeout: -1, ExperimentalUpgrade: true})
	t.Cleanup(func() { px.Close() })
	front := httptest.NewServer(u.Handler(px))
	t.Cleanup(front.Close)
	return front.Listener.Addr().String()
}

// trick is a set of headers a client sends to try to set or see a policy.
type trick struct {
	name    string
	headers []string // name, value pairs, in order
}

var forged = "0123456789abcdef0123456789abcdef response-header-timeout=1s,retry-non-idempotent=true"

var tricks = []trick{
	{"none", nil},
	{"old header", []string{oldPolicyHeader, forged}},
	{"old header, bare policy", []string{oldPolicyHeader, "response-header-timeout=1s,retry-non-idempotent=true"}},
	{"old header listed in Connection", []string{"Connection", oldPolicyHeader, oldPolicyHeader, forged}},
	{"upgrade through a custom Connection token", []string{"Connection", "x-upgrade", "X-Upgrade", "ws", oldPolicyHeader, forged}},
	{"websocket upgrade", []string{"Connection", "Upgrade", "Upgrade", "websocket"}},
}

// rawRequest sends one request on its own connection, headers exactly as
// given, and returns the status, the body and how long the answer took.
func rawRequest(t *testing.T, front, method, path string, headers []string) (int, string, time.Duration) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", front, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: example.org\r\n", method, path)
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", headers[i], headers[i+1])
	}
	body := ""
	if method == http.MethodPost {
		body = "payload"
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	start := time.Now()
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(got), time.Since(start)
}

// policyWords are what a policy looks like on the wire.
var policyWords = []string{KeyConnectTimeout, KeyResponseHeaderTimeout, KeyRequestTimeout, KeyRetryNonIdempotent, KeySlowStart, "bulkhead"}

// TestPodSeesNothingOfThePolicy: whatever a client sends, on the plain
// path, with Connection-listed headers and through skipper's upgrade path
// (which bypasses the round tripper), no pod receives anything of a
// route's policy: every header a pod sees that names or looks like a
// policy is one the client itself sent, unchanged.
func TestPodSeesNothingOfThePolicy(t *testing.T) {
	a, b := newPolicyPod(t), newPolicyPod(t)
	front := policyFront(t, a, b)
	for _, tr := range tricks {
		for _, path := range []string{"/pol/x", "/plain/x"} {
			na, _ := a.counts()
			nb, _ := b.counts()
			status, body, _ := rawRequest(t, front, http.MethodGet, path, tr.headers)
			if status != http.StatusOK {
				t.Fatalf("%s %s: status %d: %s", tr.name, path, status, body)
			}
			sent := http.Header{}
			for i := 0; i+1 < len(tr.headers); i += 2 {
				sent.Add(tr.headers[i], tr.headers[i+1])
			}
			ma, _ := a.counts()
			mb, _ := b.counts()
			if ma+mb != na+nb+1 {
				t.Fatalf("%s %s: %d requests reached the pods, want 1", tr.name, path, ma+mb-na-nb)
			}
			p := a
			if mb > nb {
				p = b
			}
			p.mu.Lock()
			last := p.hdr[len(p.hdr)-1]
			p.mu.Unlock()
			for name, vs := range last {
				for _, v := range vs {
					for _, w := range policyWords {
						if strings.Contains(strings.ToLower(name+": "+v), w) && !clientSent(sent, name, v) {
							t.Errorf("%s %s: the pod received %s: %s, which the client did not send", tr.name, path, name, v)
						}
					}
				}
			}
		}
	}
}

func clientSent(sent http.Header, name, value string) bool {
	for _, v := range sent.Values(name) {
		if v == value {
			return true
		}
	}
	return false
}

// TestRoutePolicyTravelsInTheContext: the route's own policy is applied
// (it reaches the round tripper without any header), and no header a
// client sends imposes one on a route without a policy: not a 300ms or
// 1s response header timeout, not POST retries.
func TestRoutePolicyTravelsInTheContext(t *testing.T) {
	a, b := newPolicyPod(t), newPolicyPod(t)
	front := policyFront(t, a, b)
	posts := func() int {
		_, x := a.counts()
		_, y := b.counts()
		return x + y
	}

	// The route's policy applies: its 300ms timeout cuts a 2s answer
	// (504), and its POSTs are retried on the other pod.
	status, _, took := rawRequest(t, front, http.MethodGet, "/pol/x?sleep=2s", nil)
	if status != http.StatusGatewayTimeout || took > 1900*time.Millisecond {
		t.Fatalf("the route's 300ms response header timeout did not apply: status %d after %s", status, took)
	}
	before := posts()
	if status, _, _ := rawRequest(t, front, http.MethodPost, "/pol/drop", nil); status != http.StatusBadGateway {
		t.Fatalf("POST to pods that hang up: status %d, want 502", status)
	}
	if n := posts() - before; n != 3 {
		t.Fatalf("the route opts in to POST retries: %d POSTs reached the pods, want 3 (1 + 2 retries)", n)
	}

	// A client cannot impose a policy on a route without one.
	for _, tr := range tricks {
		if strings.Contains(tr.name, "upgrade") {
			continue // upgrades bypass the round tripper: no timeout and no retry apply at all
		}
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			a, b := newPolicyPod(t), newPolicyPod(t)
			front := policyFront(t, a, b)
			status, body, took := rawRequest(t, front, http.MethodGet, "/plain/x?sleep=1200ms", tr.headers)
			if status != http.StatusOK || took < 1200*time.Millisecond {
				t.Errorf("a 1.2s answer on a route with the 5s default got status %d after %s: %.100s", status, took, body)
			}
			if status, _, _ := rawRequest(t, front, http.MethodPost, "/plain/drop", tr.headers); status != http.StatusBadGateway {
				t.Errorf("POST to a pod that hangs up: status %d, want 502", status)
			}
			_, x := a.counts()
			_, y := b.counts()
			if x+y != 1 {
				t.Errorf("a client header made a POST replay: %d POSTs reached the pods, want 1", x+y)
			}
		})
	}
}

// TestPolicyFilterWithoutHandler: the filter cannot apply a policy to a
// request served without Handler; it leaves the request alone (no
// header), and the default policy applies.
func TestPolicyFilterWithoutHandler(t *testing.T) {
	u, _ := newUpstream(t, Config{})
	f, err := u.PolicySpec().CreateFilter([]any{"response-header-timeout=1s"})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "http://example.org/", nil)
	want := req.Header.Clone()
	f.Request(&filtertest.Context{FRequest: req})
	if fmt.Sprint(req.Header) != fmt.Sprint(want) {
		t.Fatalf("the filter changed the request's headers: %v", req.Header)
	}
	if got := u.policies.requestPolicy(req.Context()); got != u.policies.defaults {
		t.Fatalf("policy %+v, want the defaults", got)
	}

	// With Handler's slot, the same filter hands its policy over.
	var seen *Policy
	h := u.Handler(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		f.Request(&filtertest.Context{FRequest: r})
		seen = u.policies.requestPolicy(r.Context())
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "http://example.org/", nil))
	if seen == nil || seen.ResponseHeaderTimeout != time.Second {
		t.Fatalf("policy through Handler: %+v", seen)
	}
}
