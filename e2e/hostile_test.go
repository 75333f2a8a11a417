package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/loadgen"
	"github.com/bulkhead-router/bulkhead/internal/testpods"
)

// TestHostileInput sends what an attacker would, over raw TCP, to the built
// router while steady legitimate load runs through it: request smuggling
// shapes, malformed framing, oversized and too many headers, slow headers
// and bodies, absolute-form targets, odd Host values, forged forwarded
// headers and hundreds of idle connections. Each gets the answer the README
// promises (status, connection closed where required), the pod behind never
// sees a smuggled request, the router's memory stays bounded, and not one
// legitimate request fails.
func TestHostileInput(t *testing.T) {
	// Header, body and idle timeouts, short so that the test is quick.
	const clientTimeout, idleTimeout = time.Second, 3 * time.Second
	e := newEnv(t, "-client-header-timeout="+clientTimeout.String(), "-client-body-timeout="+clientTimeout.String(),
		"-client-idle-timeout="+idleTimeout.String(), "-max-body-bytes=1048576")
	e.ingressClass("bulkhead", true)
	e.startPods("web", "web", 2)
	probe := e.startPods("web", "probe", 1)[0] // counts what reaches it
	e.apply(ingress("web", "web", "bulkhead",
		rule("load.example", path("/", prefix(), "web")),
		rule("probe.example", path("/", prefix(), "probe")),
		rule("empty.example", path("/", prefix(), "nobody")), // no such Service: 503
	))
	e.router.WaitReady(30 * time.Second)
	e.expectPod("load.example", "/", "web", "")
	e.expectPod("probe.example", "/", "probe", "")
	addr := strings.TrimPrefix(e.router.ProxyURL, "http://")
	pid := e.router.Pid()
	rssBefore := procStatusKB(t, pid, "VmRSS")

	load := loadgen.Start(loadgen.Target{URL: e.router.ProxyURL + "/steady", Host: "load.example"}, loadgen.Options{Rate: 200})
	uploads := loadgen.Start(loadgen.Target{Method: http.MethodPost, URL: e.router.ProxyURL + "/upload", Host: "load.example",
		Body: []byte(strings.Repeat("u", 20<<10))}, loadgen.Options{Rate: 50})
	loadStopped := false
	stopLoad := func() (*loadgen.Result, *loadgen.Result) {
		loadStopped = true
		return load.Stop(), uploads.Stop()
	}
	defer func() {
		if !loadStopped {
			stopLoad()
		}
	}()

	probeRequests := func() int64 {
		t.Helper()
		s, err := probe.Stats(e.ctx())
		if err != nil {
			t.Fatalf("probe pod stats: %v", err)
		}
		return s.Requests
	}

	// Many idle and slowloris connections for the whole run: connected and
	// silent, or stopped in the middle of the headers after 48 KiB of them
	// (within the limits, so the router holds them until the timeout).
	const idleConns = 400
	slowPad := strings.Repeat("X-Pad: "+strings.Repeat("p", 12<<10)+"\r\n", 4)
	var idle sync.WaitGroup
	idleClosed := make(chan time.Duration, idleConns)
	for i := range idleConns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		defer c.Close()
		if i%2 == 1 {
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: probe.example\r\n%sX-Slow: ", slowPad) // never finished
		}
		idle.Add(1)
		go func(start time.Time) {
			defer idle.Done()
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			n, err := c.Read(make([]byte, 1))
			if n == 0 && err != nil && !isTimeout(err) {
				idleClosed <- time.Since(start)
			}
		}(time.Now())
	}

	// Keep-alive connections left idle after a request: closed after the
	// idle timeout.
	const keptConns = 100
	keptClosed := make(chan time.Duration, keptConns)
	for i := range keptConns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("kept connection %d: %v", i, err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: load.example\r\n\r\n")
		idle.Add(1)
		go func() {
			defer idle.Done()
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			answered := time.Now()
			if _, err := br.ReadByte(); err != nil && !isTimeout(err) {
				keptClosed <- time.Since(answered)
			}
		}()
	}

	smuggled := "GET /smuggled HTTP/1.1\r\nHost: probe.example\r\n\r\n"
	for _, tc := range []struct {
		name string
		raw  string
		want int // status of the only answer; 0: none (closed silently)
		// keepAlive: the connection stays usable; otherwise it must be
		// closed after the answer.
		keepAlive bool
		// reachesProbe: requests the probe pod may see (at most).
		reachesProbe int64
	}{
		{name: "CL.TE: Content-Length covers a hidden request, chunked ends first",
			raw:  "POST / HTTP/1.1\r\nHost: probe.example\r\nContent-Length: " + strconv.Itoa(5+len(smuggled)) + "\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			want: 200, reachesProbe: 1},
		{name: "TE.CL: chunked covers a hidden request, Content-Length ends first",
			raw:  "POST / HTTP/1.1\r\nHost: probe.example\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(smuggled) + "0\r\n\r\n" + smuggled,
			want: 200, reachesProbe: 1},
		{name: "TE.TE: Chunked in capitals with Content-Length",
			raw:  "POST / HTTP/1.1\r\nHost: probe.example\r\nContent-Length: 5\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n" + smuggled,
			want: 200, reachesProbe: 1},
		{name: "TE.TE: tab before chunked with Content-Length",
			raw:  "POST / HTTP/1.1\r\nHost: probe.example\r\nContent-Length: 5\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n" + smuggled,
			want: 200, reachesProbe: 1},
		{name: "TE.TE: obs-fold value",
			raw:  "POST / HTTP/1.1\r\nHost: probe.example\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + smuggled,
			want: 200, reachesProbe: 1},
		{name: "TE.TE: space before the colon",
			raw:  "POST / HTTP/1.1\r\nHost: probe.example\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + smuggled,
			want: 400},
		{name: "TE.TE: xchunked", raw: "POST / HTTP/1.1\r\nHost: probe.example\r\nTransfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + smuggled, want: 501},
		{name: "TE.TE: chunked then identity", raw: "POST / HTTP/1.1\r\nHost: probe.example\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggled, want: 501},
		{name: "TE.TE: gzip, chunked", raw: "POST / HTTP/1.1\r\nHost: probe.example\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + smuggled, want: 501},
		{name: "TE.TE: chunked, chunked", raw: "POST / HTTP/1.1\r\nHost: probe.example\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n" + smuggled, want: 501},
		{name: "two different Content-Lengths", raw: "POST / HTTP/1.1\r\nHost: probe.example\r\nContent-Length: 3\r\nContent-Length: 48\r\n\r\nabc" + smuggled, want: 400},
		{name: "Content-Length list", raw: "POST / HTTP/1.1\r\nHost: probe.example\r\nContent-Length: 3, 3\r\n\r\nabc", want: 400},
		{name: "Content-Length with a sign", raw: "POST / HTTP/1.1\r\nHost: probe.example\r\nContent-Length: +3\r\n\r\nabc", want: 400},
		{name: "equal duplicate Content-Lengths are one", raw: "POST / HTTP/1.1\r\nHost: probe.example\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", want: 200, keepAlive: true, reachesProbe: 1},
		{name: "bare LF ends a chunk size line", raw: "POST / HTTP/1.1\r\nHost: probe.example\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n" + smuggled, want: 400, reachesProbe: 1},
		{name: "chunk size not hex", raw: "POST / HTTP/1.1\r\nHost: probe.example\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n" + smuggled, want: 400, reachesProbe: 1},
		{name: "one header of 16 KiB", raw: "GET / HTTP/1.1\r\nHost: probe.example\r\nX-Big: " + strings.Repeat("a", 16<<10-len("X-Big")) + "\r\n\r\n", want: 200, keepAlive: true, reachesProbe: 1},
		{name: "one header over 16 KiB", raw: "GET / HTTP/1.1\r\nHost: probe.example\r\nX-Big: " + strings.Repeat("a", 16<<10) + "\r\n\r\n", want: 431},
		{name: "one header of 64 KiB", raw: "GET / HTTP/1.1\r\nHost: probe.example\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", want: 431},
		{name: "headers over 64 KiB in all", raw: "GET / HTTP/1.1\r\nHost: probe.example\r\n" + strings.Repeat("X-Many: "+strings.Repeat("m", 8<<10)+"\r\n", 8) + "\r\n", want: 431},
		{name: "150 headers", raw: "GET / HTTP/1.1\r\nHost: probe.example\r\n" + manyHeaders(150) + "\r\n", want: 431},
		{name: "target over 16 KiB", raw: "GET /" + strings.Repeat("p", 16<<10) + " HTTP/1.1\r\nHost: probe.example\r\n\r\n", want: 414},
		{name: "declared body over -max-body-bytes", raw: "POST / HTTP/1.1\r\nHost: probe.example\r\nContent-Length: 2000000\r\n\r\n" + strings.Repeat("b", 1000), want: 413},
		{name: "chunked body over -max-body-bytes", raw: "POST / HTTP/1.1\r\nHost: probe.example\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat(chunk(strings.Repeat("c", 64<<10)), 17) + "0\r\n\r\n", want: 413, reachesProbe: 1},
		{name: "no Host", raw: "GET / HTTP/1.1\r\n\r\n", want: 400},
		{name: "two Hosts", raw: "GET / HTTP/1.1\r\nHost: probe.example\r\nHost: load.example\r\n\r\n", want: 400},
		{name: "Host with a space", raw: "GET / HTTP/1.1\r\nHost: probe example\r\n\r\n", want: 400},
		{name: "Host with userinfo", raw: "GET / HTTP/1.1\r\nHost: x@probe.example\r\n\r\n", want: 400},
		{name: "NUL in a header", raw: "GET / HTTP/1.1\r\nHost: probe.example\r\nX-A: a\x00b\r\n\r\n", want: 400},
		{name: "HTTP/2.0 request line", raw: "GET / HTTP/2.0\r\nHost: probe.example\r\n\r\n", want: 505},
		{name: "unknown host", raw: "GET / HTTP/1.1\r\nHost: nowhere.example\r\n\r\n", want: 404, keepAlive: true},
	} {
		before := probeRequests()
		res := rawExchange(t, addr, tc.raw)
		switch {
		case len(res.responses) != 1:
			t.Errorf("%s: %d answers %q, want exactly one (a second would be the hidden request)", tc.name, len(res.responses), res.bodies)
		case res.responses[0].StatusCode != tc.want:
			t.Errorf("%s: %d %q, want %d", tc.name, res.responses[0].StatusCode, res.bodies[0], tc.want)
		case tc.keepAlive && res.closed:
			t.Errorf("%s: connection closed, want it kept", tc.name)
		case !tc.keepAlive && !res.closed:
			t.Errorf("%s: connection kept open after the answer, want it closed", tc.name)
		}
		if len(res.responses) == 1 && tc.want >= 400 {
			checkGeneric(t, tc.name, res.responses[0], res.bodies[0])
		}
		if got := probeRequests() - before; got > tc.reachesProbe {
			t.Errorf("%s: the probe pod got %d requests, want at most %d", tc.name, got, tc.reachesProbe)
		}
	}

	// Absolute-form targets: the target's authority is the host (RFC 9112
	// §3.2.2), for routing and for what the pod sees, whatever Host says.
	for target, want := range map[string]string{"http://probe.example/x": "probe", "http://load.example/x": "web"} {
		res := rawExchange(t, addr, "GET "+target+" HTTP/1.1\r\nHost: nowhere.example\r\n\r\n")
		if len(res.responses) != 1 || res.responses[0].StatusCode != 200 {
			t.Errorf("absolute form %s: %q, want 200", target, res.bodies)
			continue
		}
		echo, _ := testpods.DecodeEcho(strings.NewReader(res.bodies[0]))
		u, _ := url.Parse(target)
		if echo.Service != want || echo.Host != u.Host || echo.Path != "/x" {
			t.Errorf("absolute form %s: reached %q with Host %q path %q, want %s with Host %s", target, echo.Service, echo.Host, echo.Path, want, u.Host)
		}
	}
	// Odd but valid Host values route like the plain name.
	for _, host := range []string{"PROBE.example", "probe.example.", "probe.example:8080"} {
		a, err := e.get(host, "/")
		if err != nil || a.status != 200 || a.echo.Service != "probe" {
			t.Errorf("Host %q: %d %q (%v), want the probe pod", host, a.status, a.echo.Service, err)
		}
	}

	// A backend without endpoints answers a generic 503: nothing of the
	// namespace or Service.
	if a, err := e.get("empty.example", "/"); err != nil || a.status != 503 || strings.Contains(a.body, "nobody") || strings.Contains(a.body, "web/") {
		t.Errorf("no endpoints: %d %q (%v), want a generic 503", a.status, a.body, err)
	} else {
		checkGeneric(t, "no endpoints", &http.Response{StatusCode: a.status, Header: a.header}, a.body)
	}

	// Forged forwarded headers from an untrusted client (no -trusted-proxies)
	// are replaced or removed; headers listed in Connection never arrive.
	a, err := e.get("probe.example", "/", "X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "https",
		"Forwarded", "for=192.0.2.1;host=evil.example", "X-Forwarded-Port", "443",
		"Connection", "x-secret, x-forwarded-for, x-request-id", "X-Secret", "1", "X-Request-Id", "chosen")
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header(a.echo.Headers)
	if h.Get("X-Forwarded-Host") != "probe.example" || h.Get("X-Forwarded-Proto") != "http" || h.Get("Forwarded") != "" ||
		h.Get("X-Forwarded-Port") != "" || h.Get("X-Secret") != "" || h.Get("X-Forwarded-For") != "127.0.0.1" || len(h.Get("X-Request-Id")) != 32 {
		t.Errorf("forwarded headers at the pod: %v", h)
	}

	// Slow bodies. A small one (buffered for retries) trickled past the body
	// timeout: 408 and closed. A large one streamed with pauses longer than
	// the timeout: delivered.
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	start := time.Now()
	fmt.Fprintf(slow, "PUT / HTTP/1.1\r\nHost: probe.example\r\nContent-Length: 1000\r\n\r\n%s", strings.Repeat("s", 100))
	res := readAnswers(slow)
	if len(res.responses) != 1 || res.responses[0].StatusCode != http.StatusRequestTimeout || !res.closed {
		t.Errorf("slow small body: %d answers %q closed %v, want one 408 and the connection closed", len(res.responses), res.bodies, res.closed)
	} else if took := time.Since(start); took < clientTimeout || took > clientTimeout+3*time.Second {
		t.Errorf("slow small body answered after %s, want just after %s", took, clientTimeout)
	}
	large, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer large.Close()
	fmt.Fprintf(large, "PUT / HTTP/1.1\r\nHost: probe.example\r\nContent-Length: %d\r\n\r\n", 3*(100<<10))
	for i := range 3 {
		if i > 0 {
			<-time.After(clientTimeout + 200*time.Millisecond) // the point: a pause longer than the body timeout
		}
		io.WriteString(large, strings.Repeat("L", 100<<10))
	}
	res = readAnswers(large)
	if len(res.responses) < 1 || res.responses[0].StatusCode != 200 {
		t.Errorf("slow large body: %q, want 200", res.bodies)
	} else if echo, _ := testpods.DecodeEcho(strings.NewReader(res.bodies[0])); echo.BodyBytes != 3*(100<<10) {
		t.Errorf("slow large body: the pod read %d bytes, want %d", echo.BodyBytes, 3*(100<<10))
	}

	// The idle and slowloris connections were closed by the header timeout
	// (net/http counts it from the connection's start), none answered.
	idle.Wait()
	close(idleClosed)
	var closedIdle int
	var slowest time.Duration
	for d := range idleClosed {
		closedIdle++
		slowest = max(slowest, d)
	}
	if closedIdle != idleConns {
		t.Errorf("%d of %d idle or slowloris connections closed by the router, want all", closedIdle, idleConns)
	}
	close(keptClosed)
	var closedKept int
	var keptSlowest time.Duration
	for d := range keptClosed {
		closedKept++
		keptSlowest = max(keptSlowest, d)
		if d < idleTimeout-500*time.Millisecond {
			t.Errorf("an idle keep-alive connection was closed %s after its answer, before the %s idle timeout", d, idleTimeout)
		}
	}
	if closedKept != keptConns {
		t.Errorf("%d of %d idle keep-alive connections closed by the router, want all", closedKept, keptConns)
	}

	steady, up := stopLoad()
	if steady.Failed != 0 || up.Failed != 0 || steady.Sent < 100 || up.Sent < 25 {
		t.Errorf("legitimate load: GET %s; POST %s: want none failed", steady, up)
	}
	if e.router.Pid() != pid {
		t.Fatalf("the router restarted or died (pid %d, was %d)", e.router.Pid(), pid)
	}
	rssAfter, peak := procStatusKB(t, pid, "VmRSS"), procStatusKB(t, pid, "VmHWM")
	const peakLimitKB = 200 << 10
	if peak > peakLimitKB {
		t.Errorf("router peak RSS %d MiB, want at most %d MiB", peak>>10, peakLimitKB>>20)
	}
	t.Logf("legitimate load: GET %s", steady)
	t.Logf("legitimate load: POST 20 KiB %s", up)
	t.Logf("idle/slowloris connections: %d of %d closed, the last after %s", closedIdle, idleConns, slowest.Round(time.Millisecond))
	t.Logf("idle keep-alive connections: %d of %d closed, the last %s after its answer", closedKept, keptConns, keptSlowest.Round(time.Millisecond))
	t.Logf("router RSS: %d MiB before, %d MiB after, peak %d MiB", rssBefore>>10, rssAfter>>10, peak>>10)
}

// chunk frames s as one chunk.
func chunk(s string) string { return strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n" }

func manyHeaders(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "X-H%d: %d\r\n", i, i)
	}
	return b.String()
}

// checkGeneric asserts the router's generic error body: status line and
// request id, nothing else.
func checkGeneric(t *testing.T, what string, resp *http.Response, body string) {
	t.Helper()
	id := resp.Header.Get("X-Request-Id")
	want := fmt.Sprintf("%d %s\nrequest id: %s\n", resp.StatusCode, http.StatusText(resp.StatusCode), id)
	if id == "" && (resp.StatusCode == 400 || resp.StatusCode == 431 || resp.StatusCode == 501 || resp.StatusCode == 505) {
		// refused by net/http before any handler: its own one-line text
		if strings.Contains(body, "\n") || len(body) > 80 {
			t.Errorf("%s: body %q, want net/http's short text", what, body)
		}
		return
	}
	if id == "" || body != want {
		t.Errorf("%s: body %q with X-Request-Id %q, want %q", what, body, id, want)
	}
}

type rawAnswers struct {
	responses []*http.Response
	bodies    []string
	closed    bool // the router closed the connection after the answers
}

// rawExchange sends raw on a new connection and reads every answer, until
// the connection is closed or stays silent for a second.
func rawExchange(t *testing.T, addr, raw string) rawAnswers {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil && len(raw) < 64<<10 {
		t.Fatalf("write: %v", err)
	}
	return readAnswers(c)
}

func readAnswers(c net.Conn) rawAnswers {
	var res rawAnswers
	br := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if len(res.responses) > 0 {
			c.SetReadDeadline(time.Now().Add(time.Second)) // a kept connection stays silent
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			res.closed = !isTimeout(err)
			return res
		}
		b, _ := io.ReadAll(resp.Body)
		res.responses = append(res.responses, resp)
		res.bodies = append(res.bodies, string(b))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// procStatusKB reads a kB field of /proc/PID/status.
func procStatusKB(t *testing.T, pid int, field string) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("%s: %q", field, line)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
