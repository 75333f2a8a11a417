package proxy

import (
	"bufio"
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

// hostileFront serves routes (with $BACKEND replaced by the backend's
// address) through New on a real listener, with the server settings
// bulkhead uses, and counts the requests the backend receives.
type hostileFront struct {
	addr     string
	requests atomic.Int64
}

func newHostileFront(t *testing.T, o Options, routes string) *hostileFront {
	t.Helper()
	f := &hostileFront{}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		n, _ := io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/pod503" {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "pod says: overloaded\n")
			return
		}
		w.Header().Set("X-Body-Bytes", strconvItoa(n))
		io.WriteString(w, "ok "+r.URL.Path)
	}))
	t.Cleanup(backend.Close)
	parsed, err := eskip.Parse(strings.ReplaceAll(routes, "$BACKEND", backend.URL))
	if err != nil {
		t.Fatal(err)
	}
	dc := testdataclient.New(parsed)
	t.Cleanup(dc.Close)
	o.DataClients = []skrouting.DataClient{dc}
	px := New(o)
	t.Cleanup(func() { px.Close() })
	<-px.FirstLoad()
	srv := &http.Server{Handler: px, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 60 << 10}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	f.addr = l.Addr().String()
	return f
}

func strconvItoa(n int64) string { return itoa(n) }

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for ; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	return string(b[i:])
}

// rawExchange sends raw on a new connection and reads every response until
// the connection closes or stays silent for a second.
type rawResult struct {
	responses []*http.Response
	bodies    []string
	closed    bool // the router closed the connection
}

func rawExchange(t *testing.T, addr, raw string) rawResult {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	var res rawResult
	br := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			res.closed = !(errorsAs(err, &ne) && ne.Timeout())
			return res
		}
		b, _ := io.ReadAll(resp.Body)
		res.responses = append(res.responses, resp)
		res.bodies = append(res.bodies, string(b))
	}
}

const allRoute = `r: * -> "$BACKEND";`

func TestContentLengthWithChunkedIsServedThenClosed(t *testing.T) {
	f := newHostileFront(t, Options{}, allRoute)
	// Framed by Content-Length (6), the body is "0\r\n\r\n" and the GET is a
	// second request; framed by chunked, the GET is hidden in nothing.
	res := rawExchange(t, f.addr, "POST /first HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+
		"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
	if len(res.responses) != 1 || res.responses[0].StatusCode != 200 || !res.responses[0].Close || !res.closed {
		t.Fatalf("got %d responses (%v), closed %v: want one 200 with Connection: close, then the connection closed", len(res.responses), res.bodies, res.closed)
	}
	if n := f.requests.Load(); n != 1 {
		t.Errorf("backend got %d requests, want 1 (the smuggled one must never reach it)", n)
	}
}

func TestMalformedChunkedBodyIs400(t *testing.T) {
	f := newHostileFront(t, Options{}, allRoute)
	for name, body := range map[string]string{
		"bare LF after chunk size": "3\nabc\r\n0\r\n\r\n",
		"bad chunk size":           "zz\r\nabc\r\n0\r\n\r\n",
	} {
		res := rawExchange(t, f.addr, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"+body)
		if len(res.responses) != 1 || res.responses[0].StatusCode != http.StatusBadRequest || !res.closed {
			t.Errorf("%s: got %d responses %v, closed %v: want one 400 and the connection closed", name, len(res.responses), res.bodies, res.closed)
			continue
		}
		checkGenericBody(t, name, res.responses[0], res.bodies[0])
	}
}

func checkGenericBody(t *testing.T, what string, resp *http.Response, body string) {
	t.Helper()
	id := resp.Header.Get(HeaderRequestID)
	want := itoa(int64(resp.StatusCode)) + " " + http.StatusText(resp.StatusCode) + "\nrequest id: " + id + "\n"
	if len(id) != 32 || body != want {
		t.Errorf("%s: body %q, X-Request-Id %q: want %q", what, body, id, want)
	}
}

func TestHeaderLimits(t *testing.T) {
	f := newHostileFront(t, Options{}, allRoute)
	get := func(extra string) rawResult {
		return rawExchange(t, f.addr, "GET / HTTP/1.1\r\nHost: a\r\n"+extra+"\r\n")
	}
	if res := get("X-Big: " + strings.Repeat("a", 16<<10-len("X-Big")) + "\r\n"); len(res.responses) != 1 || res.responses[0].StatusCode != 200 {
		t.Errorf("a header of exactly 16 KiB: %v, want 200", res.bodies)
	}
	var many strings.Builder
	for i := range DefaultMaxHeaderCount - 1 { // plus Host (not counted) and User-Agent-less: 99 lines
		many.WriteString("X-H" + itoa(int64(i)) + ": 1\r\n")
	}
	if res := get(many.String()); len(res.responses) != 1 || res.responses[0].StatusCode != 200 {
		t.Errorf("99 headers: %v, want 200", res.bodies)
	}
	for name, tc := range map[string]struct {
		raw  string
		code int
	}{
		"one header over 16 KiB": {"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("a", 16<<10) + "\r\n\r\n", 431},
		"101 headers":            {"GET / HTTP/1.1\r\nHost: a\r\n" + many.String() + "X-A: 1\r\nX-B: 1\r\n\r\n", 431},
		"target over 16 KiB":     {"GET /" + strings.Repeat("a", 16<<10) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
	} {
		res := rawExchange(t, f.addr, tc.raw)
		if len(res.responses) != 1 || res.responses[0].StatusCode != tc.code || !res.closed {
			t.Errorf("%s: got %d responses %v, closed %v: want %d and closed", name, len(res.responses), res.bodies, res.closed, tc.code)
			continue
		}
		checkGenericBody(t, name, res.responses[0], res.bodies[0])
	}
	if n := f.requests.Load(); n != 2 {
		t.Errorf("backend got %d requests, want only the 2 within the limits", n)
	}
}

// The router's own errors say nothing internal; a pod's pass untouched.
func TestErrorBodiesAreGenericWithRequestID(t *testing.T) {
	f := newHostileFront(t, Options{}, `
		shunt: Path("/unavailable") -> status(503) -> inlineContent("Service Unavailable\n") -> <shunt>;
		down: Path("/down") -> "http://127.0.0.1:1";
		pod: Path("/pod503") -> "$BACKEND";`)
	for path, code := range map[string]int{"/nothing": 404, "/unavailable": 503, "/down": 502} {
		res := rawExchange(t, f.addr, "GET "+path+" HTTP/1.1\r\nHost: a\r\nX-Request-Id: client-chosen-id-0123456789abcdef\r\n\r\n")
		if len(res.responses) != 1 || res.responses[0].StatusCode != code {
			t.Errorf("%s: got %v, want %d", path, res.bodies, code)
			continue
		}
		want := itoa(int64(code)) + " " + http.StatusText(code) + "\nrequest id: client-chosen-id-0123456789abcdef\n"
		if res.bodies[0] != want || res.responses[0].Header.Get(HeaderRequestID) != "client-chosen-id-0123456789abcdef" {
			t.Errorf("%s: body %q, id header %q: want %q", path, res.bodies[0], res.responses[0].Header.Get(HeaderRequestID), want)
		}
	}
	res := rawExchange(t, f.addr, "GET /pod503 HTTP/1.1\r\nHost: a\r\n\r\n")
	if len(res.responses) != 1 || res.responses[0].StatusCode != 503 || res.bodies[0] != "pod says: overloaded\n" || len(res.responses[0].Header.Get(HeaderRequestID)) != 32 {
		t.Errorf("a pod's own 503: %v %v, want its body untouched and the request id added", res.bodies, res.responses)
	}
}

func TestSlowSmallBodyIs408AndLargeBodyStreamsSlowly(t *testing.T) {
	const timeout = 300 * time.Millisecond
	f := newHostileFront(t, Options{BodyTimeout: timeout, BufferedBodyLimit: 1000}, allRoute)

	// A body of 10 bytes, of which 5 arrive: answered 408 once the timeout
	// passes, and closed.
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Errorf("slow small body: %d (close %v), want 408 with Connection: close", resp.StatusCode, resp.Close)
	}
	if took := time.Since(start); took < timeout || took > timeout+2*time.Second {
		t.Errorf("answered after %s, want just after the %s body timeout", took, timeout)
	}

	// A body over the buffering limit, sent in pieces over 3 timeouts:
	// streamed to the pod and answered 200.
	c2, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	io.WriteString(c2, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
	chunk := "400\r\n" + strings.Repeat("x", 0x400) + "\r\n"
	io.WriteString(c2, chunk) // 1024 bytes: past the limit at once, the deadline is lifted
	for range 3 {
		<-time.After(timeout) // the point of the test: a pause longer than the timeout
		io.WriteString(c2, chunk)
	}
	io.WriteString(c2, "0\r\n\r\n")
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("X-Body-Bytes") != "4096" {
		t.Errorf("slow large body: %d, pod read %q bytes: want 200 and 4096", resp.StatusCode, resp.Header.Get("X-Body-Bytes"))
	}
}

func errorsAs(err error, target *net.Error) bool {
	ne, ok := err.(net.Error)
	if ok {
		*target = ne
	}
	return ok
}

func TestBodyOverTheLimitIs413(t *testing.T) {
	f := newHostileFront(t, Options{MaxBodyBytes: 2000}, allRoute)
	chunk := "400\r\n" + strings.Repeat("x", 0x400) + "\r\n"
	for name, raw := range map[string]string{
		"declared": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2001\r\n\r\n" + strings.Repeat("x", 2001),
		"chunked":  "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk + chunk + chunk + "0\r\n\r\n",
	} {
		res := rawExchange(t, f.addr, raw)
		if len(res.responses) != 1 || res.responses[0].StatusCode != http.StatusRequestEntityTooLarge || !res.closed {
			t.Errorf("%s: got %d responses %v, closed %v: want one 413 and closed", name, len(res.responses), res.bodies, res.closed)
			continue
		}
		checkGenericBody(t, name, res.responses[0], res.bodies[0])
	}
	res := rawExchange(t, f.addr, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"+chunk+"0\r\n\r\n")
	if len(res.responses) != 1 || res.responses[0].StatusCode != 200 || res.responses[0].Header.Get("X-Body-Bytes") != "1024" {
		t.Errorf("a chunked body within the limit: %v, want 200", res.bodies)
	}
}
