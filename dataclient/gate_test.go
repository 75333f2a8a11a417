package dataclient

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// gateClient is an HTTP client whose transport and dialer pass the gate.
func gateClient(g *gate) *http.Client {
	d := &net.Dialer{}
	tr := &http.Transport{DialContext: g.wrapDial(d.DialContext)}
	return &http.Client{Transport: g.wrapTransport(tr)}
}

func TestGateHoldsRelistsUntilTheirMomentAndLetsResumesGo(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) }))
	defer srv.Close()
	g := newGate(true, 0, newMetrics(nil, nil), func(error) {})
	hc := gateClient(g)
	g.close()

	done := make(chan time.Time, 2)
	go func() {
		hc.Get(srv.URL + "/apis/networking.k8s.io/v1/ingresses?watch=true&resourceVersion=42")
		done <- time.Now()
	}()
	go func() {
		hc.Get(srv.URL + "/apis/networking.k8s.io/v1/ingresses?resourceVersion=42")
		done <- time.Now()
	}()
	select {
	case <-done:
		t.Fatal("a request went through a closed gate")
	case <-time.After(200 * time.Millisecond): // nothing to await: the point is that nothing happens
	}
	if served.Load() != 0 {
		t.Fatal("the server saw a request while the gate was closed")
	}
	opened := time.Now()
	const delay = 400 * time.Millisecond
	g.open(delay, false)
	resume, relist := <-done, <-done
	if d := resume.Sub(opened); d >= delay {
		t.Errorf("the resume went %s after opening, want at once", d)
	}
	if d := relist.Sub(opened); d < delay {
		t.Errorf("the relist went %s after opening, want no earlier than its moment (%s)", d, delay)
	}
}

func TestGateHoldsARequestThatFailsAtTheTransport(t *testing.T) {
	// A listener that is closed: connections are refused, as by a dead
	// API server on its port.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	downs := make(chan error, 1)
	g := newGate(true, 0, newMetrics(nil, nil), func(err error) { downs <- err })
	hc := gateClient(g)
	result := make(chan int, 1)
	go func() {
		resp, err := hc.Get("http://" + addr + "/api/v1/services?watch=true&resourceVersion=7")
		if err != nil {
			result <- -1
			return
		}
		resp.Body.Close()
		result <- resp.StatusCode
	}()
	<-downs // the refused connection closed the gate and told the supervisor
	if !g.isClosed() {
		t.Fatal("the gate is open after a refused connection")
	}
	// The server comes back on the same port.
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })}
	go srv.Serve(l)
	defer srv.Close()
	g.open(0, false)
	if code := <-result; code != http.StatusTeapot {
		t.Fatalf("the held request ended with %d, want the server's answer (418): it must wait, not fail", code)
	}
}

func TestGateEndsOldStreamsCleanlyOnReopening(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done() // a watch that never ends on its own (a frozen server)
	}))
	defer srv.Close()
	g := newGate(true, 0, newMetrics(nil, nil), func(error) {})
	hc := gateClient(g)
	resp, err := hc.Get(srv.URL + "/api/v1/services?watch=true&resourceVersion=7")
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(resp.Body) // nil: io.EOF, the end of a stream
		read <- err
	}()
	g.close()
	g.open(0, false)
	select {
	case err := <-read:
		if err != nil {
			t.Fatalf("the old stream ended with %v, want a clean end (the reflector then resumes, not relists)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the old stream was not ended on reopening")
	}
}

func TestRelistDelayIsDrawnWithinTheSpread(t *testing.T) {
	g := newGate(true, time.Second, newMetrics(nil, nil), func(error) {})
	seen := map[time.Duration]bool{}
	for range 100 {
		d := g.relistDelay()
		if d < 0 || d >= time.Second {
			t.Fatalf("delay %s outside [0, 1s)", d)
		}
		seen[d.Truncate(100*time.Millisecond)] = true
	}
	if len(seen) < 5 {
		t.Fatalf("100 draws fell into %d of 10 tenths of the spread: not spread", len(seen))
	}
}

func TestGateAfterTheClusterChangedAnswersResumesGoneAndListsTheCurrentState(t *testing.T) {
	queries := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { queries <- r.URL.RawQuery }))
	defer srv.Close()
	g := newGate(true, 0, newMetrics(nil, nil), func(error) {})
	hc := gateClient(g)
	get := func(query string) int {
		t.Helper()
		resp, err := hc.Get(srv.URL + "/api/v1/services?" + query)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	get("watch=true&resourceVersion=7") // the resource is known
	<-queries
	g.close()
	g.open(0, true)
	if code := get("watch=true&resourceVersion=7"); code != http.StatusGone {
		t.Fatalf("a resume after the cluster changed answered %d, want 410 Gone from the gate", code)
	}
	select {
	case q := <-queries:
		t.Fatalf("the resume reached the server: %s", q)
	default:
	}
	get("resourceVersion=7&resourceVersionMatch=NotOlderThan&limit=500")
	if q := <-queries; strings.Contains(q, "resourceVersion") {
		t.Fatalf("the relist after the cluster changed asked for %q, want the current state (no resourceVersion)", q)
	}
	// Relisted: the next watch resumes from the new server's versions.
	get("watch=true&resourceVersion=9")
	if q := <-queries; !strings.Contains(q, "resourceVersion=9") {
		t.Fatalf("the watch after the relist was %q", q)
	}
}

// Discovery requests are not lists: the bench and the outage tests count
// relists to tell a resumed watch from a full list.
func TestIsDiscovery(t *testing.T) {
	for p, want := range map[string]bool{
		"/api": true, "/api/v1": true, "/apis": true, "/apis/gateway.networking.k8s.io": true,
		"/apis/gateway.networking.k8s.io/v1":                         true,
		"/api/v1/services":                                           false,
		"/api/v1/namespaces/default/services":                        false,
		"/apis/discovery.k8s.io/v1/endpointslices":                   false,
		"/apis/gateway.networking.k8s.io/v1/namespaces/a/httproutes": false,
	} {
		if got := isDiscovery(p); got != want {
			t.Errorf("isDiscovery(%q) = %v", p, got)
		}
	}
}
