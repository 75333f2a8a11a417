package upstream

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/loadbalancer"
	"github.com/zalando/skipper/routing"
)

// testPod is a real HTTP server answering with a fixed status. It echoes
// the request body length and records what it saw.
type testPod struct {
	srv    *httptest.Server
	status int
	log    *hitLog
}

type hitLog struct {
	mu      sync.Mutex
	hosts   []string
	headers []http.Header
	bodies  []int
}

func (l *hitLog) add(host string, h http.Header, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hosts = append(l.hosts, host)
	l.headers = append(l.headers, h)
	l.bodies = append(l.bodies, n)
}

func (l *hitLog) count(host string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, h := range l.hosts {
		if h == host {
			n++
		}
	}
	return n
}

func (l *hitLog) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.hosts)
}

func newBackend(t testing.TB, status int, log *hitLog) *testPod {
	b := &testPod{status: status, log: log}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		log.add(b.srv.Listener.Addr().String(), r.Header.Clone(), int(n))
		w.Header().Set("X-Len", strconv.Itoa(int(n)))
		w.WriteHeader(b.status)
		_, _ = io.WriteString(w, "from "+b.srv.Listener.Addr().String())
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *testPod) addr() string { return b.srv.Listener.Addr().String() }

// deadAddr is a 127.0.0.1 port with nothing listening: connection refused.
func deadAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// lbRoutes runs skipper's algorithm provider and then our post-processor
// over one LB route per endpoint list, like skipper's routing does.
func lbRoutes(t testing.TB, u *Upstream, lists ...[]string) []*routing.Route {
	var rs []*routing.Route
	for i, eps := range lists {
		var addrs []string
		for _, e := range eps {
			addrs = append(addrs, "http://"+e)
		}
		rs = append(rs, &routing.Route{Route: eskip.Route{
			Id:          "route" + strconv.Itoa(i),
			BackendType: eskip.LBBackend,
			LBAlgorithm: "roundRobin",
			LBEndpoints: eskip.NewLBEndpoints(addrs),
		}})
	}
	rs = loadbalancer.NewAlgorithmProvider().Do(rs)
	if len(rs) != len(lists) {
		t.Fatalf("algorithm provider dropped routes: %d of %d", len(rs), len(lists))
	}
	return u.PostProcessor().Do(rs)
}

func newUpstream(t testing.TB, cfg Config) (*Upstream, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	if cfg.InitialBackoff == 0 {
		cfg.InitialBackoff = time.Millisecond
		cfg.MaxBackoff = 2 * time.Millisecond
	}
	u, err := New(cfg, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return u, reg
}

func newTransport(t testing.TB) *http.Transport {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// eventually awaits a condition (polling, bounded).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// withPolicy gives a request the route policy p, as Handler and the
// policy filter would.
func withPolicy(u *Upstream, p Policy) func(*http.Request) {
	pol := u.policies.intern(p)
	return func(r *http.Request) { slotOf(r).pol = pol }
}

// seam is one way a request gets its endpoint and its retry scope: a
// backend named by the bulkheadBackend filter (SetEndpoints), or a legacy
// LB route. Tests of the round tripper run over both.
type seam struct {
	name string
	// label is the metric label of the endpoints installed.
	label string
	// install makes eps the endpoints (of a backend, or of an LB route).
	install func(t testing.TB, u *Upstream, eps []string)
	// wrap is u's round tripper around tr, with, for the backend seam,
	// the request's endpoint (req.URL.Host) recorded in its slot as the
	// bulkheadBackend filter records its choice.
	wrap func(u *Upstream, tr http.RoundTripper) http.RoundTripper
}

// testBackendKey is the backend of the backend seam.
const testBackendKey = "default/web:80"

var seams = []seam{
	{
		name:  "backend",
		label: testBackendKey,
		install: func(_ testing.TB, u *Upstream, eps []string) {
			u.SetEndpoints(map[string][]string{testBackendKey: eps})
		},
		wrap: func(u *Upstream, tr http.RoundTripper) http.RoundTripper {
			return pinner{u: u, key: testBackendKey, next: u.WrapRoundTripper(tr)}
		},
	},
	{
		name:  "legacy",
		label: "route0",
		install: func(t testing.TB, u *Upstream, eps []string) {
			lbRoutes(t, u, eps)
		},
		wrap: func(u *Upstream, tr http.RoundTripper) http.RoundTripper { return u.WrapRoundTripper(tr) },
	},
}

// forSeams runs f once per seam.
func forSeams(t *testing.T, f func(t *testing.T, s seam)) {
	for _, s := range seams {
		t.Run(s.name, func(t *testing.T) { f(t, s) })
	}
}

// pinner records in the request's slot the backend key and the endpoint
// req.URL.Host (when it is one of the backend's), as the bulkheadBackend
// filter does with the endpoint it chose.
type pinner struct {
	u    *Upstream
	key  string
	next http.RoundTripper
}

func (p pinner) RoundTrip(req *http.Request) (*http.Response, error) {
	if be := (*p.u.backends.Load())[p.key]; be != nil {
		set := be.set.Load()
		if i := set.index(req.URL.Host); i >= 0 {
			s := slotOf(req)
			s.be, s.ep = be, set.state[i]
		}
	}
	return p.next.RoundTrip(req)
}

// slotOf returns the request's slot, giving it one (as Handler does) if
// it has none.
func slotOf(r *http.Request) *policySlot {
	if s, ok := r.Context().Value(policyKey{}).(*policySlot); ok {
		return s
	}
	s := &policySlot{Context: r.Context()}
	*r = *r.WithContext(s)
	return s
}
