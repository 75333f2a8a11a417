package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sony/gobreaker/v2"
)

func TestParsePolicy(t *testing.T) {
	good := []string{"connect-timeout=250ms", "response-header-timeout=0s", "request-timeout=1m0s", "retry-non-idempotent=true", "slow-start=30s"}
	p, err := ParsePolicy(good)
	if err != nil {
		t.Fatal(err)
	}
	if p.ConnectTimeout != 250*time.Millisecond || !p.ResponseHeaderTimeoutSet || p.ResponseHeaderTimeout != 0 ||
		p.RequestTimeout != time.Minute || !p.RetryNonIdempotent || p.SlowStart != 30*time.Second {
		t.Fatalf("parsed %+v", p)
	}
	if got := strings.Join(p.Args(), " "); got != strings.Join(good, " ") {
		t.Fatalf("Args() = %s", got)
	}
	for _, bad := range [][]string{
		{"connect-timeout=0s"}, {"connect-timeout=2m"}, {"connect-timeout=fast"}, {"request-timeout=-1s"},
		{"response-header-timeout=30"}, {"retry-non-idempotent=yes"}, {"slow-start=2h"}, {"colour=blue"},
		{"connect-timeout"}, {"slow-start=1s", "slow-start=2s"},
	} {
		if _, err := ParsePolicy(bad); err == nil {
			t.Errorf("ParsePolicy(%q) accepted", bad)
		}
	}
	// The filter rejects what the parser rejects: skipper then drops the
	// route alone (bulkhead's translation reports bad annotations first).
	u, _ := newUpstream(t, Config{})
	if _, err := u.PolicySpec().CreateFilter([]any{"connect-timeout=0s"}); err == nil {
		t.Fatal("filter accepted a bad argument")
	}
	if _, err := u.PolicySpec().CreateFilter([]any{float64(3)}); err == nil {
		t.Fatal("filter accepted a number")
	}
}

// hangingBackend accepts requests and never answers (until the client
// gives up), counting them.
func hangingBackend(t *testing.T, log *hitLog) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		log.add("hang", nil, 0)
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(srv.CloseClientConnections) // before Close: it waits for handlers
	return srv.Listener.Addr().String()
}

func TestResponseHeaderTimeoutRetriesIdempotentOnly(t *testing.T) {
	for _, c := range []struct {
		method  string
		retried bool
	}{{"GET", true}, {"PUT", true}, {"POST", false}} {
		t.Run(c.method, func(t *testing.T) {
			log := &hitLog{}
			u, _ := newUpstream(t, Config{})
			hang, ok := hangingBackend(t, log), newBackend(t, 200, log)
			install(u, []string{hang, ok.addr()})
			rt := wrap(u, newTransport(t))
			pol := withPolicy(u, Policy{ResponseHeaderTimeout: 100 * time.Millisecond, ResponseHeaderTimeoutSet: true})
			start := time.Now()
			resp, err := do(t, rt, c.method, hang, []byte("x"), pol)
			took := time.Since(start)
			if c.retried {
				if err != nil || resp.StatusCode != 200 || log.count(ok.addr()) != 1 {
					t.Fatalf("not retried elsewhere: %v %v, hits %v", resp, err, log.hosts)
				}
			} else {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() || log.count(ok.addr()) != 0 {
					t.Fatalf("want a timeout error (skipper answers 504) and no retry: %v %v, hits %v", resp, err, log.hosts)
				}
			}
			if took > 5*time.Second { // the hang itself would be forever
				t.Fatalf("took %s", took)
			}
			if n := testutil.ToFloat64(u.metrics.timeouts.WithLabelValues(testBackendKey, timeoutResponseHeader)); n != 1 {
				t.Fatalf("response-header timeouts counted: %v", n)
			}
		})
	}
}

// stuckTransport is a transport whose connections to one host never come
// up (as with a dead node that drops SYNs): dialing it returns only when
// the dial's context ends.
func stuckTransport(t *testing.T, host string) *http.Transport {
	tr := newTransport(t)
	var d net.Dialer
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == host {
			<-ctx.Done()
			return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
		}
		return d.DialContext(ctx, network, addr)
	}
	return tr
}

func TestConnectTimeoutRetriesAnyMethod(t *testing.T) {
	for _, m := range []string{"GET", "POST"} {
		t.Run(m, func(t *testing.T) {
			log := &hitLog{}
			u, _ := newUpstream(t, Config{Defaults: Policy{ConnectTimeout: 50 * time.Millisecond, ConnectTimeoutSet: true}})
			dead, ok := "10.255.255.1:80", newBackend(t, 200, log)
			install(u, []string{dead, ok.addr()})
			rt := wrap(u, stuckTransport(t, dead))
			resp, err := do(t, rt, m, dead, []byte("payload"))
			if err != nil || resp.StatusCode != 200 || log.count(ok.addr()) != 1 {
				t.Fatalf("%v %v hits %v", resp, err, log.hosts)
			}
			if n := testutil.ToFloat64(u.metrics.timeouts.WithLabelValues(testBackendKey, timeoutConnect)); n != 1 {
				t.Fatalf("connect timeouts counted: %v", n)
			}
			if u.Breakers().Snapshot(dead).Failures != 1 {
				t.Fatalf("breaker did not record the timeout: %+v", u.Breakers().Snapshot(dead))
			}
		})
	}
}

func TestRequestTimeoutCoversRetriesAndBody(t *testing.T) {
	log := &hitLog{}
	u, _ := newUpstream(t, Config{})
	a, b := hangingBackend(t, log), hangingBackend(t, log)
	install(u, []string{a, b})
	rt := wrap(u, newTransport(t))
	pol := withPolicy(u, Policy{RequestTimeout: 300 * time.Millisecond, RequestTimeoutSet: true})
	start := time.Now()
	_, err := do(t, rt, "GET", a, nil, pol)
	if err != errRequestTimeout {
		t.Fatalf("want the request timeout, got %v", err)
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > 5*time.Second {
		t.Fatalf("took %s", took)
	}

	// A body that stalls after the headers is cut by the same deadline.
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "start")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer stall.Close()
	defer stall.CloseClientConnections()
	install(u, []string{stall.Listener.Addr().String(), b})
	req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://"+stall.Listener.Addr().String()+"/", nil)
	pol(req)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if string(body) != "start" || err == nil {
		t.Fatalf("body %q, err %v: want the start and then the deadline", body, err)
	}
}

// Through the round tripper: a pod that hangs, clients that give up
// before its response header timeout between requests that wait it out.
// The cancellations do not reset the count: the breaker opens after
// ConsecutiveFailures timeouts.
func TestClientCancellationDoesNotResetBreaker(t *testing.T) {
	log := &hitLog{}
	u, _ := newUpstream(t, Config{Breaker: BreakerConfig{ConsecutiveFailures: 3}, MaxRetries: -1,
		Defaults: Policy{ResponseHeaderTimeout: 50 * time.Millisecond, ResponseHeaderTimeoutSet: true}})
	hang := hangingBackend(t, log)
	install(u, []string{hang})
	rt := wrap(u, newTransport(t))
	for i := 0; i < 3; i++ {
		if _, err := do(t, rt, "GET", hang, nil); err != errResponseHeaderTimeout {
			t.Fatalf("want the response header timeout, got %v", err)
		}
		if i == 2 {
			break
		}
		ctx, cancel := context.WithCancel(context.Background())
		n := log.total()
		go func() {
			for log.total() == n { // cancel once the pod has the request
				time.Sleep(time.Millisecond)
			}
			cancel()
		}()
		if _, err := do(t, rt, "GET", hang, nil, func(r *http.Request) { *r = *r.WithContext(ctx) }); !errors.Is(err, context.Canceled) {
			t.Fatalf("want the client's cancellation, got %v", err)
		}
		if s := u.Breakers().Snapshot(hang); s.ConsecutiveFailures != uint32(i+1) {
			t.Fatalf("after a cancellation: %+v, want %d consecutive failures", s, i+1)
		}
	}
	if s := u.Breakers().State(hang); s != gobreaker.StateOpen {
		t.Fatalf("3 timeouts with cancellations between them: breaker %v, want open", s)
	}
}

// A retry starts only if a whole attempt still fits before the retry
// deadline: with 200ms response header timeouts and a 520ms deadline, a
// hanging backend gets two attempts (the third would end at 600ms), not
// four; scaled down, the default 30s timeout with a 55s deadline.
func TestRetryDeadlineStopsRetriesThatCannotFit(t *testing.T) {
	u0, _ := newUpstream(t, Config{})
	if u0.cfg.RetryDeadline != DefaultRetryDeadline || DefaultRetryDeadline >= 60*time.Second {
		t.Fatalf("default retry deadline %s: want %s, below an ALB's 60s idle timeout", u0.cfg.RetryDeadline, DefaultRetryDeadline)
	}

	log := &hitLog{}
	u, _ := newUpstream(t, Config{MaxRetries: 3, RetryDeadline: 520 * time.Millisecond,
		Defaults: Policy{ResponseHeaderTimeout: 200 * time.Millisecond, ResponseHeaderTimeoutSet: true}})
	var eps []string
	for i := 0; i < 4; i++ {
		eps = append(eps, hangingBackend(t, log))
	}
	install(u, eps)
	rt := wrap(u, newTransport(t))
	start := time.Now()
	_, err := do(t, rt, "GET", eps[0], nil)
	took := time.Since(start)
	if err != errResponseHeaderTimeout {
		t.Fatalf("want the response header timeout, got %v", err)
	}
	if n := log.total(); n != 2 || took > 590*time.Millisecond {
		t.Fatalf("%d attempts in %s: want 2, ending before the deadline", n, took)
	}
}

// On a route without a response header timeout, a retry gets at most the
// time left before the retry deadline to answer.
func TestRetryDeadlineCutsUnboundedRetry(t *testing.T) {
	log := &hitLog{}
	u, _ := newUpstream(t, Config{RetryDeadline: 300 * time.Millisecond,
		Defaults: Policy{ResponseHeaderTimeout: 0, ResponseHeaderTimeoutSet: true, ConnectTimeout: 50 * time.Millisecond, ConnectTimeoutSet: true}})
	dead, hang := deadAddr(t), hangingBackend(t, log)
	install(u, []string{dead, hang})
	rt := wrap(u, newTransport(t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // without the cut: forever
	defer cancel()
	start := time.Now()
	_, err := do(t, rt, "GET", dead, nil, func(r *http.Request) { *r = *r.WithContext(ctx) })
	took := time.Since(start)
	if err != errResponseHeaderTimeout || log.total() != 1 {
		t.Fatalf("want the retry on the hanging pod cut at the deadline, got %v (hits %v)", err, log.hosts)
	}
	if took < 250*time.Millisecond || took > 2*time.Second {
		t.Fatalf("took %s, want about the 300ms deadline", took)
	}
}
