package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/filters"
	skrouting "github.com/zalando/skipper/routing"
	"github.com/zalando/skipper/routing/testdataclient"

	"github.com/bulkhead-router/bulkhead/upstream"
)

// frontWithUpstream serves one route to the backends through New, with
// the upstream resilience layer installed as bulkhead does (the route
// names its backend; the layer holds its endpoints and refuses what no
// backend chose), on a real listener (upgrades need a connection to
// hijack).
func frontWithUpstream(t *testing.T, policyArgs string, backends ...string) string {
	t.Helper()
	u, err := upstream.New(upstream.Config{RefuseUnrouted: true}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var eps []string
	for _, b := range backends {
		eps = append(eps, strings.TrimPrefix(b, "http://"))
	}
	u.SetEndpoints(map[string][]string{"test/web:80": eps})
	filter := ""
	if policyArgs != "" {
		filter = upstream.PolicyFilterName + "(" + policyArgs + ") -> "
	}
	routes, err := eskip.Parse(`r: * -> ` + filter + upstream.BackendFilterName + `("test/web:80") -> <dynamic>;`)
	if err != nil {
		t.Fatal(err)
	}
	dc := testdataclient.New(routes)
	t.Cleanup(dc.Close)
	px := New(Options{
		DataClients:      []skrouting.DataClient{dc},
		Filters:          []filters.Spec{u.PolicySpec(), u.BackendSpec()},
		PostProcessors:   []skrouting.PostProcessor{u.PostProcessor()},
		WrapRoundTripper: u.WrapRoundTripper,
	})
	t.Cleanup(func() { px.Close() })
	<-px.FirstLoad()
	front := httptest.NewServer(u.Handler(px))
	t.Cleanup(front.Close)
	return front.Listener.Addr().String()
}

// A WebSocket upgrade is forwarded and the connection tunnelled both ways,
// with the upstream layer installed (upgrades bypass its round tripper).
func TestWebSocketUpgradeIsTunnelled(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want an upgrade", http.StatusBadRequest)
			return
		}
		for name := range r.Header {
			if strings.Contains(strings.ToLower(name), "bulkhead") {
				http.Error(w, "a router-internal header reached the pod: "+name, http.StatusBadRequest)
				return
			}
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		for { // echo lines until the client closes
			line, err := rw.ReadString('\n')
			if err != nil {
				return
			}
			rw.WriteString("echo " + line)
			rw.Flush()
		}
	}))
	defer backend.Close()
	// With a route policy: its internal header must not reach the pod.
	front := frontWithUpstream(t, `"retry-non-idempotent=true"`, backend.URL)

	conn, err := net.DialTimeout("tcp", front, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /chat HTTP/1.1\r\nHost: example.org\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	for _, msg := range []string{"hello\n", "again\n"} {
		io.WriteString(conn, msg)
		got, err := br.ReadString('\n')
		if err != nil || got != "echo "+msg {
			t.Fatalf("got %q, %v", got, err)
		}
	}
}

// A streamed response reaches the client as it is produced, not when it
// ends, even with a request timeout on the route (the deadline covers
// the body, and is not hit here).
func TestStreamedResponseIsNotBuffered(t *testing.T) {
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "second\n")
	}))
	defer backend.Close()
	defer backend.CloseClientConnections()
	for _, policy := range []string{"", `"request-timeout=1m"`} {
		t.Run("policy="+policy, func(t *testing.T) {
			front := frontWithUpstream(t, policy, backend.URL)
			resp, err := http.Get("http://" + front + "/events")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			if line, err := br.ReadString('\n'); line != "first\n" { // the backend is still blocked
				t.Fatalf("first chunk: %q %v", line, err)
			}
			release <- struct{}{}
			if line, err := br.ReadString('\n'); line != "second\n" {
				t.Fatalf("second chunk: %q %v", line, err)
			}
		})
	}
}

// The router closes an idle keep-alive connection to a pod after
// BackendIdleTimeout, before the pod would (the keep-alive race).
func TestIdleBackendConnectionsClosedByRouter(t *testing.T) {
	closed := make(chan struct{}, 10)
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	backend.Config.IdleTimeout = time.Hour // the pod would keep it forever
	backend.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	}
	backend.Start()
	defer backend.Close()
	routes, _ := eskip.Parse(`r: * -> <roundRobin, "` + backend.URL + `">;`)
	dc := testdataclient.New(routes)
	defer dc.Close()
	px := New(Options{DataClients: []skrouting.DataClient{dc}, BackendIdleTimeout: 200 * time.Millisecond})
	defer px.Close()
	<-px.FirstLoad()
	w := httptest.NewRecorder()
	start := time.Now()
	px.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://example.org/", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	select {
	case <-closed:
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Fatalf("closed after %s, before the idle timeout", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the idle backend connection was not closed by the router")
	}
}

// countingListener counts the writes to each accepted connection.
type countingListener struct {
	net.Listener
	writes chan int // one value per Write call
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, writes: l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes chan int
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes <- len(b)
	return c.Conn.Write(b)
}

// A response with a Content-Length goes to the client in one write,
// headers and body together (skipper alone flushes the headers first).
func TestResponseOfKnownLengthIsOneWrite(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
	}))
	defer backend.Close()
	routes, _ := eskip.Parse(`r: * -> <roundRobin, "` + backend.URL + `">;`)
	dc := testdataclient.New(routes)
	defer dc.Close()
	px := New(Options{DataClients: []skrouting.DataClient{dc}})
	defer px.Close()
	<-px.FirstLoad()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	writes := make(chan int, 100)
	srv := &http.Server{Handler: px}
	go srv.Serve(countingListener{Listener: l, writes: writes})
	defer srv.Close()

	resp, err := http.Get("http://" + l.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Fatalf("body %q", body)
	}
	srv.Close() // no write can still be under way
	close(writes)
	n := 0
	for range writes {
		n++
	}
	if n != 1 {
		t.Fatalf("response written in %d writes, want 1", n)
	}
}
