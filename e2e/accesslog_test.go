package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/testpods"
	"github.com/bulkhead-router/bulkhead/internal/testrouter"
)

// accessLine is one access log line as an operator's tooling reads it.
// Optional numbers are pointers: a field left out is not a zero.
type accessLine struct {
	Time         string   `json:"time"`
	Client       string   `json:"client"`
	ForwardedFor string   `json:"forwarded_for"`
	Method       string   `json:"method"`
	Host         string   `json:"host"`
	Path         string   `json:"path"`
	Query        string   `json:"query"`
	Proto        string   `json:"proto"`
	TLS          *bool    `json:"tls"`
	Status       int      `json:"status"`
	BytesIn      *int64   `json:"bytes_in"`
	BytesOut     *int64   `json:"bytes_out"`
	Duration     *float64 `json:"duration"`
	HeaderTime   *float64 `json:"header_time"`
	Route        string   `json:"route"`
	Object       string   `json:"object"`
	Backend      string   `json:"backend"`
	Attempts     []struct {
		Endpoint string   `json:"endpoint"`
		Status   int      `json:"status"`
		Error    string   `json:"error"`
		Duration *float64 `json:"duration"`
		Breaker  string   `json:"breaker"`
	} `json:"attempts"`
	Retries      *int   `json:"retries"`
	BreakerSkips int    `json:"breaker_skips"`
	Stop         string `json:"stop"`
	RequestID    string `json:"request_id"`
	TraceID      string `json:"trace_id"`

	raw string
}

// readAccessLog parses every line of an access log file; a line that is
// not one JSON object fails the test.
func readAccessLog(t *testing.T, file string) []accessLine {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		t.Fatal(err)
	}
	var out []accessLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l accessLine
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields() // a field the README does not list is a finding
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("%s: not a JSON access line: %v\n%s", file, err, sc.Text())
		}
		l.raw = sc.Text()
		out = append(out, l)
	}
	return out
}

// byID indexes lines by request id; an id on two lines fails the test.
func byID(t *testing.T, lines []accessLine) map[string]accessLine {
	t.Helper()
	m := map[string]accessLine{}
	for _, l := range lines {
		if _, dup := m[l.RequestID]; dup && l.RequestID != "" {
			t.Errorf("request id %s logged twice:\n%s", l.RequestID, l.raw)
		}
		m[l.RequestID] = l
	}
	return m
}

// client sends the test's requests through a router, each with a request
// id of its own, and remembers the status each got: what the access log
// must show.
type alClient struct {
	t      *testing.T
	http   *http.Client
	mu     sync.Mutex
	n      int
	status map[string]int // request id -> status the client saw
	local  map[string]string
}

func newALClient(t *testing.T) *alClient {
	return &alClient{t: t, http: newTestHTTPClient(), status: map[string]int{}, local: map[string]string{}}
}

// do sends method host+target through router with a fresh request id
// (prefix-N) and the given body and headers; it returns the id and the
// answer.
func (c *alClient) do(router *testrouter.Router, prefix, method, host, target, body string, headers ...string) (string, answer) {
	c.t.Helper()
	c.mu.Lock()
	c.n++
	id := fmt.Sprintf("%s-%d", prefix, c.n)
	c.mu.Unlock()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, router.ProxyURL+target, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("X-Request-Id", id)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	var local string
	req = req.WithContext(withLocalAddr(req.Context(), &local))
	// Errorf, not Fatalf: the load below calls this from goroutines of
	// its own; the caller sees status 0.
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Errorf("%s %s%s: %v", method, host, target, err)
		return id, answer{}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Errorf("%s %s%s: reading the body: %v", method, host, target, err)
		return id, answer{}
	}
	a := answer{status: resp.StatusCode, body: string(data), header: resp.Header}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		a.echo, _ = testpods.DecodeEcho(bytes.NewReader(data))
	}
	c.mu.Lock()
	c.status[id] = resp.StatusCode
	c.local[id] = local
	c.mu.Unlock()
	return id, a
}

// withLocalAddr records the client side of the connection a request goes
// out on: the access log's client field must be exactly it.
func withLocalAddr(ctx context.Context, dst *string) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { *dst = info.Conn.LocalAddr().String() },
	})
}

// awaitLines waits until file holds a line for every id.
func awaitLines(e *env, file string, ids ...string) map[string]accessLine {
	e.t.Helper()
	var got map[string]accessLine
	e.eventually(10*time.Second, fmt.Sprintf("lines for %v in %s", ids, filepath.Base(file)), func() error {
		got = byID(e.t, readAccessLog(e.t, file))
		for _, id := range ids {
			if _, ok := got[id]; !ok {
				return fmt.Errorf("no line for %s", id)
			}
		}
		return nil
	})
	return got
}

// TestAccessLog walks the access log as an operator meets it, on real
// routers with real pods: an Ingress and an HTTPRoute serving, each
// request a line with the fields the README lists and the figures the
// client saw; a pod killed while still listed, and the retried request's
// line shows both attempts; a client's X-Forwarded-For printed as its
// claim beside the real peer; a 404 without a route; logrotate's move and
// SIGHUP; a second router with -access-log-sample 0 that logs every
// failure and no success; a third whose sink is a FIFO nobody reads, which
// answers every request as fast as the others and counts the lines it
// drops.
func TestAccessLog(t *testing.T) {
	logDir := t.TempDir()
	file := filepath.Join(logDir, "access.log")
	e := newGatewayEnv(t, "-publish-address", "192.0.2.10", "-access-log-file", file)
	pods := e.startPods("shop", "web", 2)
	e.startPods("shop", "down", 1)
	e.ingressClass("bulkhead", false)
	e.apply(ingress("shop", "web", "bulkhead", rule("web.example", path("/", prefix(), "web"))))
	e.apply(ingress("shop", "down", "bulkhead", rule("down.example", path("/", prefix(), "down"))))
	e.gatewayClass("bulkhead")
	e.gateway("infra", "edge", 80)
	e.applyRoute(httpRoute("shop", "beta", "infra", "edge", "beta.example", toService("/", "web", 1)))
	e.router.WaitReady(30 * time.Second)
	e.expectAllPods("web.example", "web-0", "web-1")
	e.expectPod("beta.example", "/", "web", "")
	podAddr := map[string]string{}
	for _, p := range pods {
		podAddr[p.Name] = p.Addr
	}
	c := newALClient(t)
	started := time.Now().Add(-time.Second) // the log's clock is milliseconds, truncated

	// A GET with a token in its query, and a POST with a body.
	getID, get := c.do(e.router, "get", http.MethodGet, "web.example", "/items?token=s3cret", "")
	postID, post := c.do(e.router, "post", http.MethodPost, "web.example", "/orders", "hello")
	if get.status != 200 || post.status != 200 || post.echo.BodyBytes != 5 {
		t.Fatalf("GET %d, POST %d (pod read %d bytes)", get.status, post.status, post.echo.BodyBytes)
	}
	lines := awaitLines(e.env, file, getID, postID)
	for _, x := range []struct {
		id       string
		a        answer
		method   string
		path     string
		bytesIn  int64
		endpoint string
	}{
		{getID, get, "GET", "/items", 0, podAddr[get.echo.Pod]},
		{postID, post, "POST", "/orders", 5, podAddr[post.echo.Pod]},
	} {
		l := lines[x.id]
		ts, err := time.Parse(time.RFC3339Nano, l.Time)
		if err != nil || ts.Before(started) || ts.After(time.Now()) {
			t.Errorf("%s: time %q (%v), want now", x.id, l.Time, err)
		}
		switch {
		case l.Client != c.local[x.id]:
			t.Errorf("%s: client %q, want the connection's own %q", x.id, l.Client, c.local[x.id])
		case l.Method != x.method || l.Host != "web.example" || l.Path != x.path || l.Proto != "HTTP/1.1" || l.TLS == nil || *l.TLS:
			t.Errorf("%s: method, host, path, proto or tls wrong:\n%s", x.id, l.raw)
		case l.Query != "" || strings.Contains(l.raw, "s3cret"):
			t.Errorf("%s: the query is logged without -access-log-query:\n%s", x.id, l.raw)
		case l.Status != 200 || l.BytesIn == nil || *l.BytesIn != x.bytesIn || l.BytesOut == nil || *l.BytesOut != int64(len(x.a.body)):
			t.Errorf("%s: status, bytes in (want %d) or bytes out (want %d, the body the client read) wrong:\n%s", x.id, x.bytesIn, len(x.a.body), l.raw)
		case l.Duration == nil || l.HeaderTime == nil || *l.HeaderTime <= 0 || *l.HeaderTime > *l.Duration:
			t.Errorf("%s: want 0 < header_time <= duration:\n%s", x.id, l.raw)
		case !strings.HasPrefix(l.Route, "ing__shop__web__") || l.Object != "ingress/shop/web" || l.Backend != "shop/web:80":
			t.Errorf("%s: route, object or backend wrong:\n%s", x.id, l.raw)
		case len(l.Attempts) != 1 || l.Attempts[0].Endpoint != x.endpoint || l.Attempts[0].Status != 200 ||
			l.Attempts[0].Error != "" || l.Attempts[0].Breaker != "closed" || l.Retries == nil || *l.Retries != 0:
			t.Errorf("%s: want one attempt to the pod that answered (%s), 200, breaker closed, retries 0:\n%s", x.id, x.endpoint, l.raw)
		}
	}
	t.Logf("a line:\n%s", lines[getID].raw)

	// A client's X-Forwarded-For: no -trusted-proxies, so it is a claim.
	// The line prints it as received, apart from client, which stays the
	// TCP peer; the pod gets the claim with the peer appended.
	xffID, xff := c.do(e.router, "xff", http.MethodGet, "web.example", "/", "", "X-Forwarded-For", "203.0.113.7")
	l := awaitLines(e.env, file, xffID)[xffID]
	if l.ForwardedFor != "203.0.113.7" || l.Client != c.local[xffID] || strings.HasPrefix(l.Client, "203.0.113.7") {
		t.Errorf("X-Forwarded-For from an untrusted client: want client %s and forwarded_for the claim:\n%s", c.local[xffID], l.raw)
	}
	if got := xff.echo.Headers.Get("X-Forwarded-For"); got != "203.0.113.7, 127.0.0.1" {
		t.Errorf("the pod got X-Forwarded-For %q", got)
	}

	// An unknown host: 404 from the router itself, no route, no pod.
	nfID, nf := c.do(e.router, "404", http.MethodGet, "nowhere.example", "/x", "")
	l = awaitLines(e.env, file, nfID)[nfID]
	if nf.status != 404 || l.Status != 404 || l.Route != "" || l.Object != "" || l.Backend != "" || l.Attempts != nil || l.Retries != nil || l.HeaderTime != nil {
		t.Errorf("unknown host: status %d, want a 404 line without route, object, backend, attempts:\n%s", nf.status, l.raw)
	}

	// The HTTPRoute names itself.
	hrID, _ := c.do(e.router, "httproute", http.MethodGet, "beta.example", "/", "")
	l = awaitLines(e.env, file, hrID)[hrID]
	if l.Object != "httproute/shop/beta" || l.Backend != "shop/web:80" || l.Status != 200 || len(l.Attempts) != 1 {
		t.Errorf("HTTPRoute: want object httproute/shop/beta:\n%s", l.raw)
	}

	// A pod dies and stays listed, as in a real cluster for a few
	// seconds: a GET that lands on it fails to connect and is retried on
	// the other pod. The client sees 200; the line shows both attempts.
	if err := pods[0].Kill(); err != nil {
		t.Fatal(err)
	}
	<-pods[0].Exited()
	var retried accessLine
	e.eventually(10*time.Second, "a request retried off the dead pod", func() error {
		id, a := c.do(e.router, "retry", http.MethodGet, "web.example", "/", "")
		if a.status != 200 {
			return fmt.Errorf("%s: %d", id, a.status) // and counted below as a non-2xx the log must show
		}
		for _, l := range readAccessLog(t, file) {
			if strings.HasPrefix(l.RequestID, "retry-") && len(l.Attempts) == 2 {
				retried = l
				return nil
			}
		}
		return errNotYet
	})
	if a := retried.Attempts; a[0].Endpoint != pods[0].Addr || a[0].Error != "connect" || a[0].Status != 0 ||
		a[1].Endpoint != pods[1].Addr || a[1].Status != 200 || a[1].Error != "" ||
		retried.Retries == nil || *retried.Retries != 1 || retried.Status != 200 || retried.Stop != "" {
		t.Errorf("retried request: want a failed attempt to %s (connect) then 200 from %s, retries 1:\n%s", pods[0].Addr, pods[1].Addr, retried.raw)
	}
	t.Logf("a retried request's line:\n%s", retried.raw)
	e.pods.RemoveFromEndpoints(pods[0])
	e.syncSlice("shop", "web")
	e.expectAllPods("web.example", "web-1")

	// A pod answering 503: the client sees it, so does the log.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	down := e.pods.Pods()
	for _, p := range down {
		if p.Service == "down" {
			if err := p.SetMode(ctx, testpods.Mode503); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 3 {
		c.do(e.router, "down", http.MethodGet, "down.example", "/", "")
	}

	// logrotate: the file moved away, then SIGHUP. Lines keep going to
	// the moved file (still open) until the router reopens the path, and
	// from then on to the new file; none is lost or doubled.
	if err := os.Rename(file, file+".1"); err != nil {
		t.Fatal(err)
	}
	e.router.Signal(syscall.SIGHUP)
	// Any request sent after the signal whose line is in the new file
	// will do: the writer batches lines for up to 100 ms, so the one just
	// sent is rarely written yet when the file is read.
	var firstNew string
	e.eventually(10*time.Second, "lines in the new file after SIGHUP", func() error {
		c.do(e.router, "hup", http.MethodGet, "web.example", "/", "")
		for id := range byID(t, readAccessLog(t, file)) {
			if strings.HasPrefix(id, "hup-") {
				firstNew = id
				return nil
			}
		}
		return errNotYet
	})
	lastID, _ := c.do(e.router, "last", http.MethodGet, "web.example", "/", "")
	awaitLines(e.env, file, firstNew, lastID)

	// Every request this test sent has exactly one line, in one of the
	// two files, with the status the client saw; every non-2xx included.
	old, cur := byID(t, readAccessLog(t, file+".1")), byID(t, readAccessLog(t, file))
	if len(cur) == 0 || len(old) == 0 {
		t.Fatalf("after the move: %d lines in the old file, %d in the new", len(old), len(cur))
	}
	non2xx := 0
	for id, status := range c.status {
		lo, inOld := old[id]
		ln, inNew := cur[id]
		switch {
		case inOld && inNew:
			t.Errorf("%s in both files", id)
		case !inOld && !inNew:
			t.Errorf("%s (status %d) not logged", id, status)
		case inOld && lo.Status != status, inNew && ln.Status != status:
			t.Errorf("%s: the client saw %d, the log says otherwise:\n%s%s", id, status, lo.raw, ln.raw)
		}
		if status < 200 || status > 299 {
			non2xx++
		}
	}
	logged5xx := 0
	for _, m := range []map[string]accessLine{old, cur} {
		for _, l := range m {
			if l.Status >= 500 {
				logged5xx++
			}
		}
	}
	if non2xx != 4 || logged5xx < 3 { // the 404 and the three 503s; setup requests may add more 5xx, never fewer
		t.Errorf("the client saw %d non-2xx answers (want the 404 and three 503s), the log has %d lines >= 500", non2xx, logged5xx)
	}
	t.Logf("%d requests of the test's own, %d non-2xx, each with one line with its status (%d in the moved file, %d in the new)",
		len(c.status), non2xx, len(old), len(cur))

	t.Run("sample 0 keeps every failure and no success", func(t *testing.T) {
		sampled := filepath.Join(t.TempDir(), "access.log")
		r := testrouter.Start(t, testrouter.Options{Kubeconfig: e.cp.Kubeconfig(),
			Args: []string{"-access-log-file", sampled, "-access-log-sample", "0", "-access-log-query"}})
		r.WaitReady(30 * time.Second)
		c := newALClient(t)
		var failures []string
		for i := range 40 {
			if i%4 == 0 {
				id, a := c.do(r, "fail", http.MethodGet, "down.example", "/f?q=1", "")
				if a.status < 500 {
					t.Fatalf("down.example answered %d", a.status)
				}
				failures = append(failures, id)
				continue
			}
			if id, a := c.do(r, "ok", http.MethodGet, "web.example", "/ok?q=1", ""); a.status != 200 {
				t.Fatalf("%s: %d", id, a.status)
			}
		}
		got := awaitLines(e.env, sampled, failures...)
		// The writer has handled the last failure's line; every success
		// came before it, so a logged success would be in the file now.
		for id, l := range got {
			if !strings.HasPrefix(id, "fail-") {
				t.Errorf("a success logged with -access-log-sample 0:\n%s", l.raw)
			}
			if l.Query != "q=1" || l.Status < 500 || l.Object != "ingress/shop/down" {
				t.Errorf("%s: want the query (-access-log-query), a 5xx and the Ingress:\n%s", id, l.raw)
			}
		}
		if len(got) != len(failures) {
			t.Errorf("%d lines for %d failures", len(got), len(failures))
		}
	})

	t.Run("a sink nobody reads never holds a request", func(t *testing.T) {
		fifo := filepath.Join(t.TempDir(), "access.fifo")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		// A reader that opens the FIFO and never reads: the router can
		// open it (a FIFO without a reader is refused at start), and its
		// 64 KiB pipe buffer fills after a few hundred lines.
		reader, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { reader.Close() }) // after the router is killed (cleanups run last first)
		stuck := testrouter.Start(t, testrouter.Options{Kubeconfig: e.cp.Kubeconfig(),
			Args: []string{"-access-log-file", fifo, "-access-log-queue", "16"}})
		stuck.WaitReady(30 * time.Second)
		c := newALClient(t)
		c.do(stuck, "warm", http.MethodGet, "web.example", "/", "") // routes loaded: awaited through readiness
		const n = 2000
		load := func(r *testrouter.Router) time.Duration {
			start := time.Now()
			var wg sync.WaitGroup
			var failed atomic.Int64
			for w := range 4 {
				wg.Go(func() {
					for range n / 4 {
						if _, a := c.do(r, fmt.Sprintf("load%d", w), http.MethodGet, "web.example", "/", ""); a.status != 200 {
							failed.Add(1)
						}
					}
				})
			}
			wg.Wait()
			if f := failed.Load(); f > 0 {
				t.Errorf("%d of %d requests failed", f, n)
			}
			return time.Since(start)
		}
		withFile := load(e.router)
		withStuck := load(stuck)
		t.Logf("%d requests, 4 at a time: %s through the router logging to a file, %s through the one whose FIFO nobody reads", n, withFile, withStuck)
		dropped, ok := stuck.Metric(`bulkhead_access_log_dropped_total{reason="queue-full"}`)
		written, _ := stuck.Metric("bulkhead_access_log_lines_total")
		if !ok || dropped == 0 {
			t.Errorf("dropped lines: %v (exposed: %v), want some: the pipe holds a few hundred lines", dropped, ok)
		}
		t.Logf("stuck sink: %.0f lines dropped (queue full), %.0f written into the pipe", dropped, written)
		if dropped+written > n+1 || written > n/2 {
			t.Errorf("%v dropped + %v written for %d requests", dropped, written, n+1)
		}
		// Not held back by its sink: no slower than three times the
		// router that logs to a file, on this shared machine (a router
		// whose requests waited for the pipe would not finish at all).
		if withStuck > 3*withFile+2*time.Second {
			t.Errorf("the router with the stuck sink took %s, the other %s", withStuck, withFile)
		}
	})
}
