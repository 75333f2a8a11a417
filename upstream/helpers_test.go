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
	return func(r *http.Request) { *r = *r.WithContext(&policySlot{Context: r.Context(), pol: pol}) }
}
