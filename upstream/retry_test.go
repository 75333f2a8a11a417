package upstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func do(t *testing.T, rt http.RoundTripper, method, host string, body []byte, mod ...func(*http.Request)) (*http.Response, error) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+host+"/path", rd)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mod {
		m(req)
	}
	resp, err := rt.RoundTrip(req)
	if resp != nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
	}
	return resp, err
}

func TestRetryConnectionRefused(t *testing.T) {
	for _, m := range []string{"GET", "POST", "PATCH"} {
		t.Run(m, func(t *testing.T) {
			log := &hitLog{}
			u, _ := newUpstream(t, Config{})
			dead, b := deadAddr(t), newBackend(t, 200, log)
			install(u, []string{dead, b.addr()})
			rt := wrap(u, newTransport(t))
			body := bytes.Repeat([]byte("x"), 1000)
			resp, err := do(t, rt, m, dead, body)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%v %v", resp, err)
			}
			if log.count(b.addr()) != 1 || resp.Header.Get("X-Len") != "1000" {
				t.Fatalf("hits %v, len %s", log.hosts, resp.Header.Get("X-Len"))
			}
		})
	}
}

func TestRetryOn503(t *testing.T) {
	type tc struct {
		method  string
		optIn   bool // the route's policy opts in
		retried bool
	}
	for _, c := range []tc{
		{"GET", false, true}, {"PUT", false, true}, {"DELETE", false, true},
		{"POST", false, false}, {"PATCH", false, false},
		{"POST", true, true}, {"PATCH", true, true},
	} {
		t.Run(fmt.Sprintf("%s/opt-in=%v", c.method, c.optIn), func(t *testing.T) {
			log := &hitLog{}
			u, _ := newUpstream(t, Config{})
			a, b := newBackend(t, 503, log), newBackend(t, 200, log)
			install(u, []string{a.addr(), b.addr()})
			rt := wrap(u, newTransport(t))
			resp, err := do(t, rt, c.method, a.addr(), []byte("payload"), func(r *http.Request) {
				if c.optIn {
					withPolicy(u, Policy{RetryNonIdempotent: true})(r)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			want := 503
			if c.retried {
				want = 200
			}
			if resp.StatusCode != want || log.total() != 1+boolInt(c.retried) {
				t.Fatalf("status %d hits %v", resp.StatusCode, log.hosts)
			}
			if !c.retried {
				if b, _ := io.ReadAll(resp.Body); string(b) != "from "+a.addr() {
					t.Fatalf("final answer altered: %q", b)
				}
			}
			for _, n := range log.bodies {
				if n != len("payload") {
					t.Fatalf("backend body lengths %v", log.bodies)
				}
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestLargeBodyNotRetried(t *testing.T) {
	for _, known := range []bool{true, false} {
		log := &hitLog{}
		u, _ := newUpstream(t, Config{})
		dead, b := deadAddr(t), newBackend(t, 200, log)
		install(u, []string{dead, b.addr()})
		rt := wrap(u, newTransport(t))
		body := bytes.Repeat([]byte("x"), 64<<10+1)
		_, err := do(t, rt, "PUT", dead, body, func(r *http.Request) {
			if !known {
				r.Body = io.NopCloser(bytes.NewReader(body)) // streamed
				r.ContentLength = -1
			}
		})
		if err == nil || log.total() != 0 {
			t.Fatalf("known=%v: large body was replayed (err %v, hits %v)", known, err, log.hosts)
		}
	}
	// exactly at the limit: replayed
	log := &hitLog{}
	u, _ := newUpstream(t, Config{})
	dead, b := deadAddr(t), newBackend(t, 200, log)
	install(u, []string{dead, b.addr()})
	resp, err := do(t, wrap(u, newTransport(t)), "POST", dead, bytes.Repeat([]byte("x"), 64<<10), func(r *http.Request) {
		r.ContentLength = -1
	})
	if err != nil || resp.Header.Get("X-Len") != "65536" {
		t.Fatalf("64KiB body: %v %v", resp, err)
	}
}

func TestNeverSameEndpointAndMaxRetries(t *testing.T) {
	log := &hitLog{}
	u, _ := newUpstream(t, Config{})
	var eps []string
	for i := 0; i < 5; i++ {
		eps = append(eps, newBackend(t, 502, log).addr())
	}
	install(u, eps)
	rt := wrap(u, newTransport(t))
	resp, err := do(t, rt, "GET", eps[0], nil)
	if err != nil || resp.StatusCode != 502 {
		t.Fatal(resp, err)
	}
	if log.total() != 3 {
		t.Fatalf("attempts %v, want 3 (1 + 2 retries)", log.hosts)
	}
	seen := map[string]bool{}
	for _, h := range log.hosts {
		if seen[h] {
			t.Fatalf("endpoint reused while others exist: %v", log.hosts)
		}
		seen[h] = true
	}

	// Two endpoints, both failing: alternate, never twice in a row.
	log2 := &hitLog{}
	u2, _ := newUpstream(t, Config{MaxRetries: 3})
	a, b := newBackend(t, 503, log2), newBackend(t, 503, log2)
	install(u2, []string{a.addr(), b.addr()})
	if _, err := do(t, wrap(u2, newTransport(t)), "GET", a.addr(), nil); err != nil {
		t.Fatal(err)
	}
	want := []string{a.addr(), b.addr(), a.addr(), b.addr()}
	if strings.Join(log2.hosts, " ") != strings.Join(want, " ") {
		t.Fatalf("attempts %v", log2.hosts)
	}
}

func TestDeadlineRespected(t *testing.T) {
	log := &hitLog{}
	u, _ := newUpstream(t, Config{InitialBackoff: 200 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	a, b := newBackend(t, 503, log), newBackend(t, 503, log)
	install(u, []string{a.addr(), b.addr()})
	rt := wrap(u, newTransport(t))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	resp, err := do(t, rt, "GET", a.addr(), nil, func(r *http.Request) { *r = *r.WithContext(ctx) })
	if err != nil || resp.StatusCode != 503 {
		t.Fatal(resp, err)
	}
	if el := time.Since(start); el > 90*time.Millisecond || log.total() != 1 {
		t.Fatalf("elapsed %v hits %v: retried past the deadline", el, log.hosts)
	}
}

func TestBudgetBoundsRetries(t *testing.T) {
	log := &hitLog{}
	u, reg := newUpstream(t, Config{})
	var eps []string
	for i := 0; i < 3; i++ {
		eps = append(eps, newBackend(t, 503, log).addr())
	}
	install(u, eps)
	rt := wrap(u, newTransport(t))
	const n = 200
	for i := 0; i < n; i++ {
		if _, err := do(t, rt, "GET", eps[i%3], nil); err != nil {
			t.Fatal(err)
		}
	}
	// without a budget: 3n. Budget: 0.2n + 3/s*10s.
	if got, max := log.total(), n+n/5+30; got > max {
		t.Fatalf("backend requests %d > %d", got, max)
	}
	t.Logf("%d client requests -> %d backend requests", n, log.total())
	if v := testutil.ToFloat64(u.metrics.exhausted.WithLabelValues(testBackendKey)); v == 0 {
		t.Fatal("budget exhaustion not counted")
	}
	if c, _ := testutil.GatherAndCount(reg, MetricRetryBudgetExhausted, MetricRequests, MetricRetries, MetricFailures); c != 4 {
		t.Fatalf("metric series %d", c)
	}
	if v := testutil.ToFloat64(u.metrics.requests.WithLabelValues(testBackendKey)); v != n {
		t.Fatalf("requests metric %v", v)
	}
}

func TestUnknownHostPassesThrough(t *testing.T) {
	log := &hitLog{}
	u, _ := newUpstream(t, Config{})
	a := newBackend(t, 503, log)
	rt := u.WrapRoundTripper(newTransport(t))
	resp, err := do(t, rt, "GET", a.addr(), nil)
	if err != nil || resp.StatusCode != 503 || log.total() != 1 || u.Breakers().Len() != 0 {
		t.Fatal(resp, err, log.hosts)
	}
}

// A request balanced on an endpoint that has since left every backend (a
// pod shutting down: connection refused) is retried on the backend's
// current set, whatever its method; the endpoint's state is kept for one
// update, so its failure is recorded, and dropped after that.
func TestJustDepartedEndpointIsStillRetried(t *testing.T) {
	log := &hitLog{}
	u, _ := newUpstream(t, Config{})
	gone, b := deadAddr(t), newBackend(t, 200, log)
	install(u, []string{gone, b.addr()})
	req, _ := http.NewRequest("POST", "http://"+gone+"/path", bytes.NewReader([]byte("x")))
	pin(u, req)                    // balanced on this set
	install(u, []string{b.addr()}) // the next set: gone has left
	resp, err := wrap(u, newTransport(t)).RoundTrip(req)
	if err != nil || resp.StatusCode != 200 || log.count(b.addr()) != 1 {
		t.Fatalf("%v %v hits %v", resp, err, log.hosts)
	}
	resp.Body.Close()
	if f := u.Breakers().Snapshot(gone).Failures; f != 1 {
		t.Fatalf("the departed endpoint's breaker recorded %d failures, want 1", f)
	}
	// One update later its state is gone.
	install(u, []string{b.addr()})
	if _, kept := u.breakers.m.Load(gone); kept {
		t.Fatal("a long-gone endpoint's state is still held")
	}
}
