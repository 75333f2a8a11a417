package accesslog

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"

	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/zalando/skipper/eskip"
	"k8s.io/apimachinery/pkg/types"

	"github.com/bulkhead-router/bulkhead/record"
	"github.com/bulkhead-router/bulkhead/routing"
)

// lines is a sink that keeps what it is given, line by line.
type lines struct {
	mu   sync.Mutex
	buf  strings.Builder
	more chan struct{}
}

func newLines() *lines { return &lines{more: make(chan struct{}, 1)} }

func (s *lines) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.buf.Write(p)
	s.mu.Unlock()
	select {
	case s.more <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (s *lines) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := strings.Split(strings.TrimSuffix(s.buf.String(), "\n"), "\n")
	if len(out) == 1 && out[0] == "" {
		return nil
	}
	return out
}

// wait returns the first n lines decoded, failing after 5 s.
func (s *lines) wait(t *testing.T, n int) []map[string]any {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for len(s.all()) < n {
		select {
		case <-s.more:
		case <-deadline:
			t.Fatalf("%d lines after 5s, want %d: %q", len(s.all()), n, s.all())
		}
	}
	var out []map[string]any
	for _, l := range s.all()[:n] {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("invalid JSON line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func newLogger(t *testing.T, o Options) (*Logger, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	if o.Sample == 0 {
		o.Sample = 1
	}
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l.Close(ctx)
	})
	return l, reg
}

// pod plays the upstream layer: it records a route, a backend and an
// attempt the way upstream does, then answers.
func pod(routeID string, attempts ...record.Attempt) func(r *http.Request) {
	return func(r *http.Request) {
		rec := record.FromContext(r.Context())
		if rec == nil {
			panic("no record in the request's context")
		}
		rec.RouteID, rec.Backend = routeID, "ns/web:80"
		for _, a := range attempts {
			x := rec.AddAttempt(a.Endpoint, a.Breaker, time.Now())
			x.Status, x.Error, x.Duration = a.Status, a.Error, time.Millisecond
		}
	}
}

func TestHandlerLine(t *testing.T) {
	sink := newLines()
	l, _ := newLogger(t, Options{Out: sink})
	l.SetTable(routing.Table{Routes: []*routing.Route{
		{Eskip: &eskip.Route{Id: "a"}, Ingress: types.NamespacedName{Namespace: "ns", Name: "ing-a"}},
		{Eskip: &eskip.Route{Id: "g"}, Gateway: &routing.GatewayOrigin{HTTPRoute: types.NamespacedName{Namespace: "ns", Name: "hr"}}},
		{Eskip: &eskip.Route{Id: "r"}, Gateway: &routing.GatewayOrigin{Kind: "GRPCRoute", HTTPRoute: types.NamespacedName{Namespace: "ns", Name: "gr"}}},
	}})
	srv := httptest.NewServer(l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The proxy rewrites X-Forwarded-For and adds the request id on
		// the request's header map.
		r.Header["X-Forwarded-For"] = []string{"rewritten"}
		r.Header.Set("X-Request-Id", "id-1")
		body, _ := io.ReadAll(r.Body)
		routeID := r.URL.Query().Get("route")
		pod(routeID, record.Attempt{Endpoint: "10.0.0.1:80", Status: 201, Breaker: "closed"})(r)
		w.WriteHeader(http.StatusCreated)
		w.Write(body)
		w.Write([]byte("!"))
	})))
	defer srv.Close()
	for _, route := range []string{"a", "g", "r", "unknown"} {
		req, _ := http.NewRequest("POST", srv.URL+"/p/q?route="+route, strings.NewReader("hello"))
		req.Host = "a.example"
		req.Header.Set("X-Forwarded-For", "198.51.100.7")
		req.Header.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	got := sink.wait(t, 4)
	want := map[string]any{"method": "POST", "host": "a.example", "path": "/p/q", "proto": "HTTP/1.1", "tls": false,
		"status": 201.0, "bytes_in": 5.0, "bytes_out": 6.0, "forwarded_for": "198.51.100.7", "request_id": "id-1",
		"trace_id": "0af7651916cd43dd8448eb211c80319c", "backend": "ns/web:80", "retries": 0.0}
	for i, object := range []any{"ingress/ns/ing-a", "httproute/ns/hr", "grpcroute/ns/gr", nil} {
		for k, v := range want {
			if got[i][k] != v {
				t.Errorf("line %d: %s = %#v, want %#v", i, k, got[i][k], v)
			}
		}
		if got[i]["object"] != object {
			t.Errorf("line %d: object %#v, want %#v", i, got[i]["object"], object)
		}
		if !strings.HasPrefix(got[i]["client"].(string), "127.0.0.1:") {
			t.Errorf("line %d: client %v", i, got[i]["client"])
		}
		if _, ok := got[i]["query"]; ok {
			t.Errorf("line %d: query logged", i)
		}
	}
}

// The outermost handler must keep what the serving path uses of the
// server's ResponseWriter: trailers (gRPC over HTTP/2), Flush (a stream
// reaches the client before it ends), http.ResponseController through
// Unwrap, and Hijack (WebSocket).
func TestHandlerKeepsWriterFeatures(t *testing.T) {
	sink := newLines()
	l, _ := newLogger(t, Options{Out: sink})
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/grpc":
			w.Header().Set("Content-Type", "application/grpc")
			w.WriteHeader(200)
			w.Write([]byte("msg"))
			// What the upstream layer does with the pod's trailers.
			w.Header()[http.TrailerPrefix+"Grpc-Status"] = []string{"7"}
			w.Header()[http.TrailerPrefix+"Grpc-Message"] = []string{"denied"}
		case "/stream":
			rc := http.NewResponseController(w)
			if err := rc.SetWriteDeadline(time.Now().Add(10 * time.Second)); err != nil {
				http.Error(w, "deadline: "+err.Error(), 500)
				return
			}
			w.Write([]byte("first\n"))
			w.(http.Flusher).Flush()
			<-release // the client has read the first part
			w.Write([]byte("second\n"))
		case "/upgrade":
			c, brw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			defer c.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\nhi")
			brw.Flush()
		}
	})))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	client := srv.Client()

	resp, err := client.Get(srv.URL + "/grpc")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Proto != "HTTP/2.0" || resp.Trailer.Get("Grpc-Status") != "7" || resp.Trailer.Get("Grpc-Message") != "denied" {
		t.Errorf("gRPC answer over %s: trailers %v", resp.Proto, resp.Trailer)
	}
	line := sink.wait(t, 1)[0]
	if line["grpc_status"] != "7" || line["proto"] != "HTTP/2.0" || line["tls"] != true || line["bytes_out"] != 3.0 {
		t.Errorf("gRPC line: %v", line)
	}

	resp, err = client.Get(srv.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	first, err := bufio.NewReader(resp.Body).ReadString('\n')
	close(release)
	if err != nil || first != "first\n" {
		t.Fatalf("first part of the stream: %q, %v", first, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if line := sink.wait(t, 2)[1]; line["status"] != 200.0 || line["bytes_out"] != 13.0 {
		t.Errorf("stream line: %v", line)
	}

	// HTTP/1.1 (an upgrade): the raw connection.
	conn, err := tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n"))
	r := bufio.NewReader(conn)
	up, err := http.ReadResponse(r, nil)
	if err != nil || up.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", up, err)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "hi" {
		t.Errorf("after the upgrade: %q", rest)
	}
	if line := sink.wait(t, 3)[2]; line["status"] != 101.0 || line["proto"] != "HTTP/1.1" {
		t.Errorf("upgrade line: %v", line)
	}
}

// With sampling at 0, no success is logged and every failure is.
func TestSamplingKeepsFailures(t *testing.T) {
	sink := newLines()
	l, _ := newLogger(t, Options{Out: sink, Sample: 1e-300})
	ok := record.Attempt{Endpoint: "10.0.0.1:80", Status: 200, Breaker: "closed"}
	cases := []struct {
		name   string
		status int
		record func(r *http.Request)
		keep   bool
	}{
		{"success", 200, pod("a", ok), false},
		{"client error", 404, pod(""), false},
		{"no route answered by the router", 200, pod(""), false},
		{"server error", 502, pod(""), true},
		{"pod 503", 200, pod("a", record.Attempt{Endpoint: "10.0.0.1:80", Status: 503}), true},
		{"connect error then success", 200, pod("a", record.Attempt{Endpoint: "10.0.0.1:80", Error: record.ErrConnect}, ok), true},
		{"retried", 200, pod("a", ok, ok), true},
		{"breaker skip", 200, func(r *http.Request) { pod("a", ok)(r); record.FromContext(r.Context()).BreakerSkips = 1 }, true},
		{"stop", 200, func(r *http.Request) { pod("a", ok)(r); record.FromContext(r.Context()).Stop = record.StopBudget }, true},
	}
	h := l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := cases[atoiPath(r.URL.Path)]
		c.record(r)
		w.WriteHeader(c.status)
	}))
	var kept []string
	for round := range 20 {
		for i, c := range cases {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/"+string(rune('0'+i)), nil))
			if c.keep {
				kept = append(kept, c.name)
			}
			_ = round
		}
	}
	got := sink.wait(t, len(kept))
	if n := len(sink.all()); n != len(kept) {
		t.Errorf("%d lines, want %d (only failures)", n, len(kept))
	}
	for _, line := range got {
		if line["path"] == "/0" || line["path"] == "/1" || line["path"] == "/2" {
			t.Errorf("a success was logged at sample ~0: %v", line)
		}
	}
}

func atoiPath(p string) int { return int(p[1] - '0') }

func TestSamplingShare(t *testing.T) {
	l, _ := newLogger(t, Options{Out: io.Discard, Sample: 0.25, Queue: 100000})
	h := l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	const n = 20000
	for range n {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// 5,000 expected, standard deviation about 61.
	if got := testutil.ToFloat64(l.lines); got < 4500 || got > 5500 {
		t.Errorf("%v of %d lines at sample 0.25", got, n)
	}
}

// blockingSink holds every write until released.
type blockingSink struct {
	release chan struct{}
	lines   *lines
}

func (s *blockingSink) Write(p []byte) (int, error) {
	<-s.release
	return s.lines.Write(p)
}

// A sink that does not take lines never slows a request: lines beyond
// the queue are dropped and counted, the rest written once it moves.
func TestBlockedSinkDropsAndCounts(t *testing.T) {
	sink := &blockingSink{release: make(chan struct{}), lines: newLines()}
	l, reg := newLogger(t, Options{Out: sink, Queue: 8})
	h := l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	const n = 2000 // several batches' worth
	start := time.Now()
	for range n {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("%d requests took %s with a blocked sink", n, d)
	}
	dropped := testutil.ToFloat64(l.droppedFull)
	close(sink.release)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	all := sink.lines.all()
	written := float64(len(all))
	if written+dropped != n || testutil.ToFloat64(l.lines) != written {
		t.Errorf("written %v + dropped %v != %d (lines_total %v)", written, dropped, n, testutil.ToFloat64(l.lines))
	}
	// The writer's blocked write holds what it gathered before writing,
	// at most a batch (it gathers while the requests go on enqueueing, so
	// more than a queue's worth when both run at once), and the queue 8
	// more: the rest is dropped.
	if len(all) > 0 {
		if held := maxBatch/(len(all[0])+1) + 8 + 1; written > float64(held) {
			t.Errorf("written %v of %d, dropped %v: a blocked sink held more than a batch and a queue (%d lines)", written, n, dropped, held)
		}
	}
	if c, err := testutil.GatherAndCount(reg, MetricDropped, MetricLines); err != nil || c != 3 {
		t.Errorf("metrics: %d series, %v", c, err)
	}
}

// Close writes what is queued; Reopen moves to a new file after a
// rotation.
func TestFileReopenAndClose(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	l, err := New(Options{File: path, Sample: 1, Format: Text})
	if err != nil {
		t.Fatal(err)
	}
	h := l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/before", nil))
	waitFor(t, func() bool { b, _ := os.ReadFile(path); return strings.Contains(string(b), "/before") })
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	l.Reopen()
	waitFor(t, func() bool { _, err := os.Stat(path); return err == nil })
	for range 100 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/after", nil))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(path)
	before, _ := os.ReadFile(path + ".1")
	if n := strings.Count(string(after), "path=/after "); n != 100 || strings.Contains(string(after), "/before") {
		t.Errorf("new file: %d lines of /after:\n%s", n, after)
	}
	if strings.Count(string(before), "\n") != 1 {
		t.Errorf("rotated file: %q", before)
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	if _, err := New(Options{Sample: 1.5}); err == nil {
		t.Error("sample 1.5 accepted")
	}
	if _, err := New(Options{Sample: 1, File: filepath.Join(t.TempDir(), "missing", "x.log")}); err == nil {
		t.Error("a file in a missing directory accepted")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTraceIDOf(t *testing.T) {
	for tp, want := range map[string]string{
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01": "0af7651916cd43dd8448eb211c80319c",
		"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01": "",
		"00-00000000000000000000000000000000-b7ad6b7169203331-01": "",
		"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01": "",
		"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01": "",
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331":    "",
		`00-0af7651916cd43dd8448eb211c80319"-b7ad6b7169203331-01`: "",
	} {
		if got := traceIDOf(tp); got != want {
			t.Errorf("%q: %q, want %q", tp, got, want)
		}
	}
}
