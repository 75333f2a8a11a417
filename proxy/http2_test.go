package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zalando/skipper/eskip"
	skrouting "github.com/zalando/skipper/routing"
	"github.com/zalando/skipper/routing/testdataclient"
)

// h2Front serves New(o) on a real listener that speaks HTTP/1.1 and h2c
// with prior knowledge, as bulkhead's proxy listeners do, in front of a pod
// that reports what it got. It counts the connections clients opened: an
// answer that made net/http end an HTTP/2 connection shows as one more.
type h2Front struct {
	url      string
	accepted atomic.Int64
	lastPod  atomic.Pointer[podView]
	release  chan struct{} // ends the pod's /stream answer
}

// podView is what the pod saw of the last request.
type podView struct {
	proto            string
	contentLength    int64
	transferEncoding []string
	header           http.Header
	bodyBytes        int64
}

type acceptCounter struct {
	net.Listener
	n *atomic.Int64
}

func (l acceptCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func newH2Front(t *testing.T, o Options) *h2Front {
	t.Helper()
	f := &h2Front{release: make(chan struct{})}
	pod := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" { // a streamed answer: the first part, then the rest once released
			io.WriteString(w, "first\n")
			w.(http.Flusher).Flush()
			select {
			case <-f.release:
			case <-r.Context().Done():
			}
			io.WriteString(w, "second\n")
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		f.lastPod.Store(&podView{proto: r.Proto, contentLength: r.ContentLength, transferEncoding: r.TransferEncoding,
			header: r.Header.Clone(), bodyBytes: n})
		switch r.URL.Path {
		case "/hop": // what Node.js (Connection, Keep-Alive), Apache (Upgrade) and old proxies answer with
			w.Header().Set("Connection", "keep-alive, X-Hop")
			w.Header().Set("X-Hop", "for the router only")
			w.Header().Set("Keep-Alive", "timeout=5")
			w.Header().Set("Upgrade", "h2c")
		case "/close": // what a pod shutting down answers with (Go's transport takes it out)
			w.Header().Set("Connection", "close")
		}
		w.Header().Set("X-Body-Bytes", itoa(n))
		io.WriteString(w, "ok "+r.URL.Path)
	}))
	t.Cleanup(pod.Close)
	parsed, err := eskip.Parse(`r: * -> "` + pod.URL + `";`)
	if err != nil {
		t.Fatal(err)
	}
	dc := testdataclient.New(parsed)
	t.Cleanup(dc.Close)
	o.DataClients = []skrouting.DataClient{dc}
	px := New(o)
	t.Cleanup(func() { px.Close() })
	<-px.FirstLoad()
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: px, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 60 << 10, Protocols: &protocols}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(acceptCounter{Listener: l, n: &f.accepted})
	t.Cleanup(func() { srv.Close() })
	f.url = "http://" + l.Addr().String()
	return f
}

// h2cClient speaks HTTP/2 with prior knowledge only: an answer it gets
// came over HTTP/2.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &p}}
}

type h2Answer struct {
	resp *http.Response
	body string
}

func send(t *testing.T, c *http.Client, req *http.Request) h2Answer {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL.Path, err)
	}
	return h2Answer{resp, string(b)}
}

func newRequest(method, url string, body io.Reader, header ...string) *http.Request {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		panic(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return req
}

// The edge rules over HTTP/2: each holds or is not applicable, none of
// them ends the client's connection (shared, behind an ALB, by many
// clients), and what goes to the pod is plain HTTP/1.1.
func TestHTTP2EdgeRules(t *testing.T) {
	f := newH2Front(t, Options{})
	c := h2cClient()

	// A plain GET: the pod gets HTTP/1.1 with the forwarded headers, no
	// body, and nothing of HTTP/2's (TE: trailers, which gRPC clients
	// send, is hop-by-hop toward an HTTP/1.1 pod).
	a := send(t, c, newRequest(http.MethodGet, f.url+"/x", nil, "Te", "trailers"))
	pod := f.lastPod.Load()
	if a.resp.ProtoMajor != 2 || a.resp.StatusCode != 200 || a.body != "ok /x" {
		t.Fatalf("GET over h2c: %s %d %q", a.resp.Proto, a.resp.StatusCode, a.body)
	}
	if pod.proto != "HTTP/1.1" || pod.contentLength != 0 || pod.header.Get("Te") != "" || pod.header.Get(HeaderForwardedProto) != "http" ||
		pod.header.Get(HeaderForwardedFor) != "127.0.0.1" || len(pod.header.Get(HeaderRequestID)) != 32 {
		t.Errorf("the pod saw %+v", pod)
	}
	if len(a.resp.Header.Get(HeaderRequestID)) != 32 {
		t.Errorf("no request id on the answer: %v", a.resp.Header)
	}

	// A body without content-length (HTTP/2 frames it with DATA frames):
	// the pod gets it whole, chunked.
	pr, pw := io.Pipe()
	go func() {
		for range 4 {
			pw.Write([]byte(strings.Repeat("b", 1000)))
		}
		pw.Close()
	}()
	a = send(t, c, newRequest(http.MethodPost, f.url+"/upload", pr))
	pod = f.lastPod.Load()
	if a.resp.StatusCode != 200 || pod.bodyBytes != 4000 || pod.contentLength != -1 || len(pod.transferEncoding) != 1 {
		t.Errorf("a body of unknown length: %d, the pod read %d bytes (Content-Length %d, %v)", a.resp.StatusCode, pod.bodyBytes,
			pod.contentLength, pod.transferEncoding)
	}

	// The pod's connection-specific headers never reach the client, and
	// its Connection: close does not end the client's connection.
	for _, path := range []string{"/hop", "/close"} {
		a = send(t, c, newRequest(http.MethodGet, f.url+path, nil))
		for _, h := range []string{"Connection", "X-Hop", "Keep-Alive", "Upgrade"} {
			if v, ok := a.resp.Header[h]; ok {
				t.Errorf("%s: the pod's %s: %q reached the HTTP/2 client", path, h, v)
			}
		}
	}

	// Header limits and the router's own errors: the same answers as
	// over HTTP/1, generic bodies with the request id.
	var many []string
	for i := range DefaultMaxHeaderCount + 1 {
		many = append(many, fmt.Sprintf("X-H%d", i), "1")
	}
	for name, tc := range map[string]struct {
		req  *http.Request
		code int
	}{
		"one header over 16 KiB": {newRequest(http.MethodGet, f.url+"/", nil, "X-Big", strings.Repeat("a", 16<<10)), 431},
		"101 headers":            {newRequest(http.MethodGet, f.url+"/", nil, many...), 431},
		"path over 16 KiB":       {newRequest(http.MethodGet, f.url+"/"+strings.Repeat("a", 16<<10), nil), 414},
	} {
		a := send(t, c, tc.req)
		if a.resp.StatusCode != tc.code {
			t.Errorf("%s: %d %q, want %d", name, a.resp.StatusCode, a.body, tc.code)
			continue
		}
		checkGenericBody(t, name, a.resp, a.body)
	}
	// (Over the whole header list size, MaxHeaderBytes plus net/http's
	// allowance, Go's client refuses to send: cmd/bulkhead's hostile
	// HTTP/2 tests send it with raw frames.)
	// The answers that close an HTTP/1 connection did not end this one.
	if a := send(t, c, newRequest(http.MethodGet, f.url+"/after", nil)); a.resp.StatusCode != 200 {
		t.Errorf("after the refusals: %d", a.resp.StatusCode)
	}
	if n := f.accepted.Load(); n != 1 {
		t.Errorf("the HTTP/2 client opened %d connections, want 1: an answer ended its connection", n)
	}

	// Over HTTP/1 too, the pod's Connection: close is the pod's business.
	var h1p http.Protocols
	h1p.SetHTTP1(true)
	h1 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &h1p}}
	before := f.accepted.Load()
	for _, path := range []string{"/hop", "/close", "/after"} {
		a = send(t, h1, newRequest(http.MethodGet, f.url+path, nil))
		if a.resp.Close || a.resp.Header.Get("X-Hop") != "" || a.resp.Header.Get("Keep-Alive") != "" || a.resp.Header.Get("Upgrade") != "" {
			t.Errorf("HTTP/1 client, %s: Connection: close %v, headers %v: want the pod's connection headers removed", path, a.resp.Close, a.resp.Header)
		}
	}
	if n := f.accepted.Load() - before; n != 1 {
		t.Errorf("the HTTP/1 client opened %d connections, want 1: the pod's Connection: close ended it", n)
	}
}

// A slow small body over HTTP/2 is answered 408 on its stream alone: the
// connection's other streams go on, and the connection stays.
func TestHTTP2SlowBodyIs408OnItsStream(t *testing.T) {
	const timeout = 300 * time.Millisecond
	f := newH2Front(t, Options{BodyTimeout: timeout})
	c := h2cClient()
	if a := send(t, c, newRequest(http.MethodGet, f.url+"/warm", nil)); a.resp.StatusCode != 200 {
		t.Fatalf("first GET: %d", a.resp.StatusCode)
	}
	pr, pw := io.Pipe()
	defer pw.Close()
	slow := make(chan h2Answer, 1)
	start := time.Now()
	go func() {
		req := newRequest(http.MethodPost, f.url+"/slow", pr)
		req.ContentLength = 10
		slow <- send(t, c, req)
	}()
	pw.Write([]byte("12345"))
	// Meanwhile, another stream on the same connection.
	if a := send(t, c, newRequest(http.MethodGet, f.url+"/meanwhile", nil)); a.resp.StatusCode != 200 || time.Since(start) > timeout {
		t.Errorf("a GET beside the slow body: %d after %s", a.resp.StatusCode, time.Since(start))
	}
	var a h2Answer
	select {
	case a = <-slow:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow body was not answered")
	}
	if a.resp.StatusCode != http.StatusRequestTimeout || a.resp.Close {
		t.Errorf("slow body: %d (Connection: close %v), want 408 on the stream", a.resp.StatusCode, a.resp.Close)
	}
	checkGenericBody(t, "slow body", a.resp, a.body)
	if took := time.Since(start); took < timeout {
		t.Errorf("answered after %s, before the %s body timeout", took, timeout)
	}
	if a := send(t, c, newRequest(http.MethodGet, f.url+"/after", nil)); a.resp.StatusCode != 200 {
		t.Errorf("after the 408: %d", a.resp.StatusCode)
	}
	if n := f.accepted.Load(); n != 1 {
		t.Errorf("%d connections, want 1: the 408 ended the connection", n)
	}
}

// A body over MaxBodyBytes over HTTP/2: 413, declared or not, the
// connection kept.
func TestHTTP2BodyOverTheLimitIs413(t *testing.T) {
	f := newH2Front(t, Options{MaxBodyBytes: 2000})
	c := h2cClient()
	declared := newRequest(http.MethodPost, f.url+"/", strings.NewReader(strings.Repeat("x", 2001)))
	pr, pw := io.Pipe()
	go func() {
		for range 3 {
			if _, err := pw.Write([]byte(strings.Repeat("x", 1024))); err != nil {
				return
			}
		}
		pw.Close()
	}()
	unknown := newRequest(http.MethodPost, f.url+"/", pr)
	for name, req := range map[string]*http.Request{"declared": declared, "unknown length": unknown} {
		a := send(t, c, req)
		if a.resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: %d %q, want 413", name, a.resp.StatusCode, a.body)
			continue
		}
		checkGenericBody(t, name, a.resp, a.body)
	}
	if a := send(t, c, newRequest(http.MethodPost, f.url+"/", strings.NewReader(strings.Repeat("x", 1024)))); a.resp.StatusCode != 200 ||
		a.resp.Header.Get("X-Body-Bytes") != "1024" {
		t.Errorf("a body within the limit: %d %v", a.resp.StatusCode, a.resp.Header)
	}
	if n := f.accepted.Load(); n != 1 {
		t.Errorf("%d connections, want 1: a 413 ended the connection", n)
	}
}

// An HTTP/1.1 request offering an upgrade to h2c (curl --http2 on http://)
// is served as the HTTP/1.1 request it is, through the normal path: the
// pod sees neither the offer nor its settings, the answer is no 101.
// (skipper takes a request for an upgrade when its Connection header is
// exactly "Upgrade", and tunnels it past the upstream layer.)
func TestH2CUpgradeOfferIsServedAsHTTP1(t *testing.T) {
	f := newH2Front(t, Options{})
	for _, connection := range []string{"Upgrade, HTTP2-Settings", "Upgrade"} {
		res := rawExchange(t, strings.TrimPrefix(f.url, "http://"), "GET /x HTTP/1.1\r\nHost: a\r\nConnection: "+connection+"\r\n"+
			"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
		if len(res.responses) != 1 || res.responses[0].StatusCode != 200 || res.bodies[0] != "ok /x" {
			t.Errorf("Connection: %s: got %d responses %v", connection, len(res.responses), res.bodies)
			continue
		}
		pod := f.lastPod.Load()
		if pod.header.Get("Upgrade") != "" || pod.header.Get("Http2-Settings") != "" || pod.header.Get("Connection") != "" ||
			len(pod.header.Get(HeaderRequestID)) != 32 {
			t.Errorf("Connection: %s: the pod saw the upgrade offer, or not the normal path's headers: %v", connection, pod.header)
		}
	}
}

// A streamed answer reaches an HTTP/2 client as the pod sends it: the
// first part arrives while the pod still holds the rest.
func TestHTTP2StreamedAnswerIsPassedOnAsItComes(t *testing.T) {
	f := newH2Front(t, Options{})
	resp, err := h2cClient().Get(f.url + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	first := make(chan string, 1)
	go func() {
		line, _ := br.ReadString('\n')
		first <- line
	}()
	select {
	case line := <-first:
		if line != "first\n" || resp.ProtoMajor != 2 {
			t.Errorf("first part %q over %s", line, resp.Proto)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first part did not arrive while the pod held the rest: the answer was buffered")
	}
	close(f.release)
	if rest, err := io.ReadAll(br); err != nil || string(rest) != "second\n" {
		t.Errorf("the rest: %q, %v", rest, err)
	}
}
