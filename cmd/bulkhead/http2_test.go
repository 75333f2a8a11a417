package main

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zalando/skipper/eskip"
	skrouting "github.com/zalando/skipper/routing"
	"github.com/zalando/skipper/routing/testdataclient"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/bulkhead-router/bulkhead/proxy"
)

// h2Edge is a proxy listener as bulkhead builds it (edgeConfig.proxyServer
// around proxy.New, the flags' defaults unless changed), on a real socket,
// in front of a pod that counts what reaches it.
type h2Edge struct {
	addr     string
	srv      *http.Server
	inflight atomic.Int64 // requests the pod is handling
	peak     atomic.Int64
	requests atomic.Int64
	errors   sync.Map // HTTP/2 error kind -> *atomic.Int64
}

func newH2Edge(t *testing.T, change func(*edgeConfig)) *h2Edge {
	t.Helper()
	cfg, err := parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Edge
	if change != nil {
		change(&e)
	}
	h := &h2Edge{}
	pod := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.requests.Add(1)
		n := h.inflight.Add(1)
		defer h.inflight.Add(-1)
		for {
			p := h.peak.Load()
			if n <= p || h.peak.CompareAndSwap(p, n) {
				break
			}
		}
		switch r.URL.Path {
		case "/slow": // a slow pod: 200 ms, or until the router gives up
			select {
			case <-time.After(200 * time.Millisecond):
			case <-r.Context().Done():
			}
		case "/hold": // a long poll: until the router gives up
			// The body first: net/http notices a closed connection
			// only once the body is read (and a flood's bodies never
			// end: the read fails when the router lets go).
			io.Copy(io.Discard, r.Body)
			select {
			case <-time.After(20 * time.Second):
			case <-r.Context().Done():
			}
		case "/big": // 8 MiB: more than any window a client is granted
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			for range 128 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(pod.Close)
	routes, err := eskip.Parse(`r: * -> "` + pod.URL + `";`)
	if err != nil {
		t.Fatal(err)
	}
	dc := testdataclient.New(routes)
	t.Cleanup(dc.Close)
	px := proxy.New(proxy.Options{DataClients: []skrouting.DataClient{dc}, MaxHeaderFieldBytes: e.MaxHeaderFieldBytes,
		MaxHeaderCount: e.MaxHeaderCount, BodyTimeout: e.BodyTimeout})
	t.Cleanup(func() { px.Close() })
	<-px.FirstLoad()
	h.srv = e.proxyServer(px, log.New(io.Discard, "", 0), func(kind string) {
		c, _ := h.errors.LoadOrStore(kind, new(atomic.Int64))
		c.(*atomic.Int64).Add(1)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go h.srv.Serve(l)
	t.Cleanup(func() { h.srv.Close() })
	h.addr = l.Addr().String()
	return h
}

func (h *h2Edge) errorKinds() string {
	var out []string
	h.errors.Range(func(k, v any) bool {
		out = append(out, fmt.Sprintf("%s=%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	return strings.Join(out, " ")
}

// legit sends GETs over h2c on a connection of its own until stop is
// closed and returns how many failed or took longer than slow, of how
// many.
func (h *h2Edge) legit(stop <-chan struct{}, slow time.Duration) (failed, sent int) {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &p}}
	defer c.CloseIdleConnections()
	for {
		select {
		case <-stop:
			return failed, sent
		default:
		}
		start := time.Now()
		resp, err := c.Get("http://" + h.addr + "/legit")
		sent++
		if err != nil {
			failed++
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(body) != "ok" || time.Since(start) > slow {
			failed++
		}
	}
}

// rawH2 is a client that writes HTTP/2 frames as it likes: what a hostile
// client does, which Go's transport never would.
type rawH2 struct {
	conn net.Conn
	mu   sync.Mutex // the framer's writes
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	next uint32

	// What the server sent, counted by the reading goroutine.
	resets      atomic.Int64 // RST_STREAM frames
	statuses    sync.Map     // :status -> *atomic.Int64
	goAway      atomic.Value // http2.ErrCode of the first GOAWAY
	closed      chan struct{}
	answerPings bool
}

// dialRawH2 connects and sends the preface and settings; unless it is
// told not to read, a goroutine reads what the server sends, answering
// its SETTINGS and PINGs.
func dialRawH2(t *testing.T, addr string, read bool, settings ...http2.Setting) *rawH2 {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawH2{conn: c, next: 1, closed: make(chan struct{}), answerPings: true}
	r.fr = http2.NewFramer(c, c)
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.enc = hpack.NewEncoder(&r.hbuf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := r.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	if read {
		go r.read()
	}
	return r
}

func (r *rawH2) read() {
	defer close(r.closed)
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				r.write(func() error { return r.fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() && r.answerPings {
				r.write(func() error { return r.fr.WritePing(true, f.Data) })
			}
		case *http2.RSTStreamFrame:
			r.resets.Add(1)
		case *http2.GoAwayFrame:
			if r.goAway.Load() == nil {
				r.goAway.Store(f.ErrCode)
			}
		case *http2.MetaHeadersFrame:
			c, _ := r.statuses.LoadOrStore(f.PseudoValue("status"), new(atomic.Int64))
			c.(*atomic.Int64).Add(1)
		}
	}
}

func (r *rawH2) write(f func() error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return f()
}

func (r *rawH2) status(code string) int64 {
	c, ok := r.statuses.Load(code)
	if !ok {
		return 0
	}
	return c.(*atomic.Int64).Load()
}

// request opens a stream for GET path (POST if body is set, the body left
// open), extra headers added, and returns its id.
func (r *rawH2) request(path string, openBody bool, extra ...string) (uint32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hbuf.Reset()
	method := http.MethodGet
	if openBody {
		method = http.MethodPost
	}
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: method}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "hostile.example"}, {Name: ":path", Value: path}} {
		r.enc.WriteField(f)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		r.enc.WriteField(hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
	}
	id := r.next
	r.next += 2
	return id, r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.hbuf.Bytes(), EndStream: !openBody, EndHeaders: true})
}

// isClosed reports whether the server closed the connection within d.
func (r *rawH2) isClosed(d time.Duration) bool {
	select {
	case <-r.closed:
		return true
	case <-time.After(d):
		return false
	}
}

// Rapid reset (CVE-2023-44487): a client opening streams and resetting
// them at once, as fast as it can write. The handlers it starts are
// bounded by the stream limit, legitimate clients on other connections
// are served throughout, and the router stays up.
func TestHTTP2RapidReset(t *testing.T) {
	h := newH2Edge(t, nil)
	stop := make(chan struct{})
	type result struct{ failed, sent int }
	legit := make(chan result, 1)
	go func() {
		f, s := h.legit(stop, 5*time.Second)
		legit <- result{f, s}
	}()
	a := dialRawH2(t, h.addr, true)
	start := time.Now()
	sent := 0
	for ; sent < 50000 && time.Since(start) < 5*time.Second; sent++ {
		id, err := a.request("/slow", false)
		if err == nil {
			err = a.write(func() error { return a.fr.WriteRSTStream(id, http2.ErrCodeCancel) })
		}
		if err != nil {
			break // the router closed the connection
		}
	}
	took := time.Since(start)
	closed := a.isClosed(2 * time.Second)
	close(stop)
	l := <-legit
	t.Logf("rapid reset: %d streams opened and reset in %s; connection closed by the router: %v (GOAWAY %v); the pod got %d requests, at most %d at once; legitimate GETs: %d of %d failed or slower than 5 s; HTTP/2 errors: %s",
		sent, took.Round(time.Millisecond), closed, a.goAway.Load(), h.requests.Load(), h.peak.Load(), l.failed, l.sent, h.errorKinds())
	if l.failed != 0 || l.sent == 0 {
		t.Errorf("%d of %d legitimate GETs failed or were slow during the attack", l.failed, l.sent)
	}
	if p := h.peak.Load(); p > defaultMaxStreams+1 {
		t.Errorf("the pod had %d requests at once, above the stream limit %d (+1 legitimate)", p, defaultMaxStreams)
	}
	// The router is still there for a new client.
	if _, err := http.Get("http://" + h.addr + "/after"); err != nil {
		t.Errorf("after the attack: %v", err)
	}
}

// Stream flood: a client opening far more streams than it may, each a
// request the pod holds. Those over the limit are refused (RST_STREAM);
// the pod never sees more than the limit from one connection; others are
// served meanwhile.
func TestHTTP2StreamFlood(t *testing.T) {
	h := newH2Edge(t, nil)
	a := dialRawH2(t, h.addr, true)
	for range 1000 {
		if _, err := a.request("/hold", true); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the flood's streams over the limit refused", func() bool {
		return a.resets.Load() >= 1000-defaultMaxStreams
	})
	waitFor(t, 10*time.Second, "the pod holding the flood's streams", func() bool { return h.inflight.Load() == defaultMaxStreams })
	stop := make(chan struct{})
	time.AfterFunc(time.Second, func() { close(stop) })
	failed, sent := h.legit(stop, 5*time.Second)
	t.Logf("stream flood: 1000 streams opened, %d refused, the pod held %d at most; legitimate GETs meanwhile: %d of %d failed or slower than 5 s",
		a.resets.Load(), h.peak.Load(), failed, sent)
	if failed != 0 || sent == 0 {
		t.Errorf("%d of %d legitimate GETs failed or were slow", failed, sent)
	}
	if p := h.peak.Load(); p > defaultMaxStreams+1 {
		t.Errorf("the pod had %d requests at once from one connection (+1 legitimate), above the limit %d", p, defaultMaxStreams)
	}
	if r := a.resets.Load(); r != 1000-defaultMaxStreams {
		t.Errorf("%d streams refused, want %d", r, 1000-defaultMaxStreams)
	}
	// The client goes away: every request it held is let go.
	a.conn.Close()
	waitFor(t, 5*time.Second, "the flood's requests let go after its client left", func() bool { return h.inflight.Load() == 0 })
}

// A client that asks for large answers on a connection it then stops
// reading: its connection is closed once nothing could be written to it
// for the write-byte timeout, and the pod's requests are let go. (Over
// HTTP/1 a stalled reader holds its one request; over HTTP/2 it would
// hold every stream of the connection.)
func TestHTTP2StalledReaderIsClosed(t *testing.T) {
	const timeout = 500 * time.Millisecond
	h := newH2Edge(t, func(e *edgeConfig) { e.h2WriteByteTimeout = timeout })
	// Windows as large as HTTP/2 allows: the router may send it all, so
	// it is the socket that stops taking bytes.
	a := dialRawH2(t, h.addr, false, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	if err := a.fr.WriteWindowUpdate(0, 1<<31-1-65535); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 8 {
		if _, err := a.request("/big", false); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the pod's answers let go once the stalled connection is closed", func() bool {
		return h.requests.Load() == 8 && h.inflight.Load() == 0
	})
	took := time.Since(start)
	// What the socket holds is read out; then the connection is closed.
	a.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, a.conn)
	t.Logf("stalled reader: the pod's 8 answers of 8 MiB let go after %s; the client then read %d bytes and %v; HTTP/2 errors: %s", took.Round(time.Millisecond), n, err, h.errorKinds())
	if err != nil {
		t.Errorf("reading the stalled connection: %v, want it closed by the router", err)
	}
	if n >= 8*8<<20 {
		t.Errorf("the client got all %d bytes: it never stalled the router", n)
	}
	if took > timeout+5*time.Second {
		t.Errorf("let go after %s, want soon after the %s write-byte timeout", took, timeout)
	}
}

// A client that vanished (it answers no PING) with streams open: its
// connection is closed after the ping interval and timeout, and the pod's
// requests are let go; one that answers keeps its streams.
func TestHTTP2DeadClientIsClosed(t *testing.T) {
	const ping = 300 * time.Millisecond
	h := newH2Edge(t, func(e *edgeConfig) { e.h2PingAfter = ping })
	alive := dialRawH2(t, h.addr, true)
	dead := dialRawH2(t, h.addr, false)
	dead.answerPings = false
	go func() { // reads, but never answers
		for {
			if _, err := dead.fr.ReadFrame(); err != nil {
				close(dead.closed)
				return
			}
		}
	}()
	for _, c := range []*rawH2{alive, dead} {
		if _, err := c.request("/hold", false); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the pod holding both", func() bool { return h.inflight.Load() == 2 })
	start := time.Now()
	if !dead.isClosed(10 * time.Second) {
		t.Fatal("the connection of a client answering no PING was not closed")
	}
	took := time.Since(start)
	waitFor(t, 10*time.Second, "the dead client's request let go", func() bool { return h.inflight.Load() == 1 })
	t.Logf("dead client: closed %s after its stream opened (ping after %s, timeout %s); HTTP/2 errors: %s", took.Round(time.Millisecond), ping, ping, h.errorKinds())
	if took > 2*ping+2*time.Second {
		t.Errorf("closed after %s, want about %s", took, 2*ping)
	}
	if alive.isClosed(0) {
		t.Error("the client that answers PINGs lost its connection")
	}
}

// A client trickling one header block (HEADERS, then a CONTINUATION now
// and then, never ending it) never opens a stream: the connection is
// closed at the idle timeout, and nothing reaches the pod.
func TestHTTP2HeaderTrickleIsCut(t *testing.T) {
	const idle = time.Second
	h := newH2Edge(t, func(e *edgeConfig) { e.IdleTimeout = idle })
	a := dialRawH2(t, h.addr, true)
	a.hbuf.Reset()
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "hostile.example"}, {Name: ":path", Value: "/"}} {
		a.enc.WriteField(f)
	}
	start := time.Now()
	if err := a.write(func() error {
		return a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: a.hbuf.Bytes(), EndStream: true})
	}); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var closedAfter time.Duration
	for i := 0; closedAfter == 0 && time.Since(start) < 10*time.Second; i++ {
		select {
		case <-a.closed:
			closedAfter = time.Since(start)
		case <-tick.C: // the pace of the trickle is the point of the test
			a.hbuf.Reset()
			a.enc.WriteField(hpack.HeaderField{Name: fmt.Sprintf("x-trickle-%d", i), Value: "1"})
			a.write(func() error { return a.fr.WriteContinuation(1, false, a.hbuf.Bytes()) })
		}
	}
	t.Logf("header trickle: closed %s after it began (idle timeout %s); GOAWAY %v", closedAfter.Round(time.Millisecond), idle, a.goAway.Load())
	if closedAfter == 0 || closedAfter > idle+2*time.Second {
		t.Errorf("a trickled header block held its connection for %s (0: still open), want it closed at the %s idle timeout", closedAfter, idle)
	}
	if n := h.requests.Load(); n != 0 {
		t.Errorf("%d requests reached the pod", n)
	}
}

// A header list over the limit, sent in CONTINUATION frames as no Go
// client would: 431 from net/http, nothing reaches the pod, and the
// connection serves the next request.
func TestHTTP2HeaderListOverTheLimit(t *testing.T) {
	h := newH2Edge(t, nil)
	a := dialRawH2(t, h.addr, true)
	a.hbuf.Reset()
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "hostile.example"}, {Name: ":path", Value: "/"}} {
		a.enc.WriteField(f)
	}
	for i := range 6 { // 6 fields of 12 KiB: 72 KiB, each within the 16 KiB field limit
		a.enc.WriteField(hpack.HeaderField{Name: fmt.Sprintf("x-big-%d", i), Value: strings.Repeat("a", 12<<10)})
	}
	block := a.hbuf.Bytes()
	const frame = 16 << 10 // the default SETTINGS_MAX_FRAME_SIZE
	err := a.write(func() error {
		if err := a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:frame], EndStream: true}); err != nil {
			return err
		}
		for rest := block[frame:]; len(rest) > 0; {
			n := min(frame, len(rest))
			if err := a.fr.WriteContinuation(1, n == len(rest), rest[:n]); err != nil {
				return err
			}
			rest = rest[n:]
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	a.next = 3
	waitFor(t, 5*time.Second, "a 431", func() bool { return a.status("431") == 1 })
	if _, err := a.request("/next", false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the next request answered 200", func() bool { return a.status("200") == 1 })
	if n := h.requests.Load(); n != 1 {
		t.Errorf("%d requests reached the pod, want only the next one", n)
	}
}

// waitFor polls cond every 10 ms until it holds, failing after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-time.After(10 * time.Millisecond)
	}
}
