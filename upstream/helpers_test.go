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

// testBackendKey is the backend the round tripper's tests install.
const testBackendKey = "default/web:80"

// install makes eps the endpoints of testBackendKey.
func install(u *Upstream, eps []string) {
	u.SetEndpoints(map[string][]string{testBackendKey: eps})
}

// wrap is u's round tripper around tr, with the request's endpoint
// (req.URL.Host) recorded in its slot as the bulkheadBackend filter
// records its choice (see pin).
func wrap(u *Upstream, tr http.RoundTripper) http.RoundTripper {
	return pinner{u: u, next: u.WrapRoundTripper(tr)}
}

// pinner pins every request before passing it on.
type pinner struct {
	u    *Upstream
	next http.RoundTripper
}

func (p pinner) RoundTrip(req *http.Request) (*http.Response, error) {
	pin(p.u, req)
	return p.next.RoundTrip(req)
}

// pin records in req's slot testBackendKey and the endpoint req.URL.Host,
// as the bulkheadBackend filter does with the endpoint it chose, when the
// endpoint is in the backend's current set; a slot already pinned is
// left alone (the request was balanced on an earlier set).
func pin(u *Upstream, req *http.Request) {
	s := slotOf(req)
	if s.be != nil {
		return
	}
	if be := (*u.backends.Load())[testBackendKey]; be != nil {
		set := be.set.Load()
		if i := set.index(req.URL.Host); i >= 0 {
			s.be, s.ep = be, set.state[i]
		}
	}
}

// openBreaker records enough failures to open ep's breaker.
func openBreaker(u *Upstream, ep string) {
	for i := 0; i < 5; i++ {
		u.Breakers().Record(ep, Failure)
	}
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
