package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/bulkhead-router/bulkhead/internal/loadgen"
	"github.com/bulkhead-router/bulkhead/internal/testcerts"
	"github.com/bulkhead-router/bulkhead/internal/testpods"
	"github.com/bulkhead-router/bulkhead/internal/testrouter"
)

// protocolClient speaks only the protocols p sets: what answers came over
// is then known. Certificates are not checked (the SNI picks them).
func protocolClient(set func(*http.Protocols), serverName string) *http.Client {
	var p http.Protocols
	set(&p)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, Protocols: &p, MaxIdleConnsPerHost: 8,
		TLSClientConfig: &tls.Config{ServerName: serverName, InsecureSkipVerify: true}}}
}

// getVia sends GET url with Host host through c and returns the answer,
// the protocol it came over and the pod's echo.
func getVia(c *http.Client, url, host string) (answer, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return answer{}, "", err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return answer{}, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, resp.Proto, err
	}
	a := answer{status: resp.StatusCode, body: string(body), header: resp.Header}
	a.echo, _ = testpods.DecodeEcho(strings.NewReader(a.body))
	return a, resp.Proto, nil
}

// loadCount is what runLoad saw.
type loadCount struct {
	sent, failed atomic.Int64
	mu           sync.Mutex
	first        string // the first failure, for the log
	done         chan struct{}
}

// runLoad sends GETs from workers goroutines through c until stop is
// closed and counts the answers that were not 200 from the pods of
// service. (internal/loadgen has a transport of its own; these tests
// choose the protocol.)
func runLoad(c *http.Client, url, host, service string, workers int, stop <-chan struct{}) *loadCount {
	l := &loadCount{done: make(chan struct{})}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				a, _, err := getVia(c, url, host)
				l.sent.Add(1)
				if err != nil || a.status != http.StatusOK || a.echo.Service != service {
					l.failed.Add(1)
					l.mu.Lock()
					if l.first == "" {
						l.first = fmt.Sprintf("%d %v %.100s", a.status, err, a.body)
					}
					l.mu.Unlock()
				}
			}
		}()
	}
	go func() { wg.Wait(); close(l.done) }()
	return l
}

// wait blocks until every worker has returned.
func (l *loadCount) wait() { <-l.done }

// TestHTTP2Clients: one router, one pod; the same GETs over HTTP/1.1, h2c
// with prior knowledge (an ALB target group of protocol version HTTP2 or
// GRPC over HTTP), HTTP/2 over TLS (ALPN, a Gateway HTTPS listener) and
// HTTP/1.1 over TLS all reach the pod; load over h2c and h2, many streams
// on each connection, answers nothing but 200; the connections are
// counted by protocol.
func TestHTTP2Clients(t *testing.T) {
	t.Parallel()
	e := newGatewayEnv(t, "-gateway-listeners", "443") // Gateway port 443 on the proxy listener, beside the Ingresses
	e.ingressClass("bulkhead", false)
	e.startPods("h2", "web", 1)
	e.apply(ingress("h2", "web", "bulkhead", rule("web.example", path("/", prefix(), "web"))))
	cert, key := testcerts.SelfSigned(t, "secure.example")
	e.tlsSecret("h2", "secure-tls", cert, key)
	e.gatewayClass("bulkhead")
	g := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "h2", Name: "edge"},
		Spec: gatewayv1.GatewaySpec{GatewayClassName: "bulkhead", Listeners: []gatewayv1.Listener{
			httpsListener("secure", 443, "secure.example", "secure-tls")}}}
	if _, err := e.gw.GatewayV1().Gateways("h2").Create(e.ctx(), g, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.applyRoute(httpRoute("h2", "web", "h2", "edge", "secure.example", toService("/", "web", 1)))
	e.router.WaitReady(30 * time.Second)

	plain := e.router.ProxyURL + "/x"
	secure := "https://" + strings.TrimPrefix(e.router.ProxyURL, "http://") + "/x"
	h1 := protocolClient(func(p *http.Protocols) { p.SetHTTP1(true) }, "")
	h2c := protocolClient(func(p *http.Protocols) { p.SetUnencryptedHTTP2(true) }, "")
	h2 := protocolClient(func(p *http.Protocols) { p.SetHTTP2(true) }, "secure.example")
	h1s := protocolClient(func(p *http.Protocols) { p.SetHTTP1(true) }, "secure.example")
	for _, tc := range []struct {
		name   string
		c      *http.Client
		url    string
		host   string
		proto  string
		scheme string // X-Forwarded-Proto the pod gets
	}{
		{"HTTP/1.1", h1, plain, "web.example", "HTTP/1.1", "http"},
		{"h2c", h2c, plain, "web.example", "HTTP/2.0", "http"},
		{"h2 over TLS", h2, secure, "secure.example", "HTTP/2.0", "https"},
		{"HTTP/1.1 over TLS", h1s, secure, "secure.example", "HTTP/1.1", "https"},
	} {
		e.eventually(20*time.Second, tc.name, func() error {
			a, proto, err := getVia(tc.c, tc.url, tc.host)
			if err != nil {
				return err
			}
			if a.status != http.StatusOK || a.echo.Pod != "web-0" || proto != tc.proto {
				return fmt.Errorf("%d over %s from %q: %.200s", a.status, proto, a.echo.Pod, a.body)
			}
			// The pod is spoken to over HTTP/1.1 whatever the client spoke.
			if a.echo.Proto != "HTTP/1.1" || a.echo.Path != "/x" || a.echo.Headers.Get("X-Forwarded-Proto") != tc.scheme ||
				len(a.header.Get("X-Request-Id")) != 32 {
				return fmt.Errorf("the pod saw %s %s, X-Forwarded-Proto %q; answer headers %v", a.echo.Proto, a.echo.Path,
					a.echo.Headers.Get("X-Forwarded-Proto"), a.header)
			}
			return nil
		})
	}

	// Bodies over HTTP/2, through the upstream layer (which buffers up to
	// 64 KiB for retries): of known length, and of unknown length (DATA
	// frames without content-length), below and above what is buffered.
	for _, tc := range []struct {
		name    string
		c       *http.Client
		url     string
		host    string
		size    int
		unknown bool
	}{
		{"h2c, 10 KiB", h2c, plain, "web.example", 10 << 10, false},
		{"h2c, 10 KiB of unknown length", h2c, plain, "web.example", 10 << 10, true},
		{"h2c, 200 KiB of unknown length", h2c, plain, "web.example", 200 << 10, true},
		{"h2, 200 KiB of unknown length", h2, secure, "secure.example", 200 << 10, true},
	} {
		var body io.Reader = bytes.NewReader(bytes.Repeat([]byte("b"), tc.size))
		if tc.unknown {
			body = io.MultiReader(body) // hides the length: sent without content-length
		}
		req, _ := http.NewRequest(http.MethodPost, tc.url, body)
		req.Host = tc.host
		resp, err := tc.c.Do(req)
		if err != nil {
			t.Errorf("POST %s: %v", tc.name, err)
			continue
		}
		echo, err := testpods.DecodeEcho(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || echo.BodyBytes != int64(tc.size) {
			t.Errorf("POST %s: %d over %s, the pod read %d bytes (%v)", tc.name, resp.StatusCode, resp.Proto, echo.BodyBytes, err)
		}
	}

	// Load: 16 workers on each HTTP/2 client (their requests multiplexed
	// on its connections) for 3 s.
	stop := make(chan struct{})
	overH2C := runLoad(h2c, plain, "web.example", "web", 16, stop)
	overH2 := runLoad(h2, secure, "secure.example", "web", 16, stop)
	<-time.After(3 * time.Second) // the duration of the load is the point
	close(stop)
	overH2C.wait()
	overH2.wait()
	t.Logf("load for 3 s, 16 workers each: h2c %d of %d failed (%s); h2 over TLS %d of %d failed (%s)",
		overH2C.failed.Load(), overH2C.sent.Load(), overH2C.first, overH2.failed.Load(), overH2.sent.Load(), overH2.first)
	for name, l := range map[string]*loadCount{"h2c": overH2C, "h2": overH2} {
		if l.failed.Load() != 0 || l.sent.Load() < 100 {
			t.Errorf("load over %s: %d of %d were not 200 from the pod (first: %s)", name, l.failed.Load(), l.sent.Load(), l.first)
		}
	}
	for _, p := range []string{"http", "h2c", "h2", "https"} {
		n, ok := e.router.Metric(`bulkhead_proxy_connections_total{protocol="` + p + `"}`)
		t.Logf("connections counted %s: %v", p, n)
		if !ok || n < 1 {
			t.Errorf("bulkhead_proxy_connections_total{protocol=%q} = %v (present %v), want at least 1", p, n, ok)
		}
	}
	// Multiplexed: far fewer connections than requests.
	if n, _ := e.router.Metric(`bulkhead_proxy_connections_total{protocol="h2c"}`); n > 16 {
		t.Errorf("%v h2c connections for 16 workers: streams were not multiplexed", n)
	}
}

// albDialer plays an ALB toward two targets over h2c: it connects to the
// first while it accepts connections, else to the second, and logs which
// target each connection went to and when. An ALB opens a new connection
// when a target sends GOAWAY, and sends to targets still registered.
type albDialer struct {
	targets [2]string
	mu      sync.Mutex
	dials   []albDial
}

type albDial struct {
	target int
	at     time.Time
}

func (d *albDialer) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	var dialer net.Dialer
	for i, addr := range d.targets {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			continue // refused: the target has stopped listening
		}
		d.mu.Lock()
		d.dials = append(d.dials, albDial{target: i, at: time.Now()})
		d.mu.Unlock()
		return c, nil
	}
	return nil, fmt.Errorf("no target accepts connections")
}

// TestHTTP2DrainOnSIGTERM: under h2c load from an ALB-like client, one of
// two routers gets SIGTERM. During the drain delay its HTTP/2 connection
// keeps serving (no GOAWAY yet: the load balancer may still send); then
// it sends GOAWAY, the stream in flight across that moment finishes, new
// streams go to a new connection (the other router), and the client sees
// no error; the router exits 0.
func TestHTTP2DrainOnSIGTERM(t *testing.T) {
	t.Parallel()
	const delay = 2 * time.Second
	e := newEnv(t, "-drain-delay", delay.String(), "-drain-timeout", "10s")
	other := testrouter.Start(t, testrouter.Options{Kubeconfig: e.cp.Kubeconfig()})
	e.ingressClass("bulkhead", false)
	e.startPods("up", "web", 2)
	e.apply(ingress("up", "web", "bulkhead", rule("web.example", path("/", prefix(), "web"))))
	e.router.WaitReady(30 * time.Second)
	other.WaitReady(30 * time.Second)
	e.expectPod("web.example", "/", "web", "")

	alb := &albDialer{targets: [2]string{strings.TrimPrefix(e.router.ProxyURL, "http://"), strings.TrimPrefix(other.ProxyURL, "http://")}}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: nil, Protocols: &p, DialContext: alb.dial}}
	url := "http://alb.invalid/" // the dialer picks the target
	e.eventually(20*time.Second, "both routers serving web.example", func() error {
		for _, u := range []string{e.router.ProxyURL, other.ProxyURL} {
			a, _, err := getVia(newTestHTTPClient(), u+"/", "web.example")
			if err != nil || a.status != http.StatusOK {
				return fmt.Errorf("%s: %d %v", u, a.status, err)
			}
		}
		return nil
	})

	stop := make(chan struct{})
	l := runLoad(client, url, "web.example", "web", 8, stop)
	e.eventually(10*time.Second, "load flowing", func() error {
		if l.sent.Load() < 50 {
			return errNotYet
		}
		return nil
	})
	sigterm := time.Now()
	e.router.Signal(syscall.SIGTERM)
	// A stream in flight across the end of the drain delay, on the
	// connection to the draining router.
	type result struct {
		a     answer
		proto string
		err   error
		took  time.Duration
	}
	long := make(chan result, 1)
	go func() {
		a, proto, err := getVia(client, url+"report?sleep=3s", "web.example")
		long <- result{a, proto, err, time.Since(sigterm)}
	}()
	code := e.router.Wait(30 * time.Second)
	exited := time.Since(sigterm)
	lr := <-long
	<-time.After(500 * time.Millisecond) // load on the other router after the exit: the point of the test
	close(stop)
	l.wait()

	alb.mu.Lock()
	dials := append([]albDial(nil), alb.dials...)
	alb.mu.Unlock()
	var log []string
	var toOther time.Duration
	for _, d := range dials {
		log = append(log, fmt.Sprintf("router %d at %+.3fs", d.target, d.at.Sub(sigterm).Seconds()))
		if d.target == 1 && toOther == 0 {
			toOther = d.at.Sub(sigterm)
		}
	}
	t.Logf("h2c drain: %d of %d requests failed (first: %s); connections: %s; in-flight stream: %d over %s after %s, %v; exited %s after SIGTERM with %d",
		l.failed.Load(), l.sent.Load(), l.first, strings.Join(log, ", "), lr.a.status, lr.proto, lr.took.Round(time.Millisecond), lr.err,
		exited.Round(time.Millisecond), code)
	if l.failed.Load() != 0 || l.sent.Load() == 0 {
		t.Errorf("%d of %d requests failed during the drain (first: %s)", l.failed.Load(), l.sent.Load(), l.first)
	}
	if lr.err != nil || lr.a.status != http.StatusOK || lr.proto != "HTTP/2.0" || lr.took < 3*time.Second {
		t.Errorf("the stream in flight across the GOAWAY: %d over %s after %s, %v; want 200 over HTTP/2 after 3 s", lr.a.status, lr.proto, lr.took, lr.err)
	}
	if len(dials) < 2 || dials[0].target != 0 || toOther == 0 {
		t.Errorf("connections %v: want the first to the draining router, then one to the other", log)
	}
	// No GOAWAY during the drain delay: the connection to the draining
	// router carried the load until the delay was over.
	if toOther != 0 && toOther < delay {
		t.Errorf("a new connection %s after SIGTERM, within the %s drain delay", toOther, delay)
	}
	if code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
}

// h2Attacker writes HTTP/2 frames as a hostile client does, which Go's
// transport never would, and counts what the router sends back.
type h2Attacker struct {
	conn   net.Conn
	mu     sync.Mutex // the framer's writes
	fr     *http2.Framer
	enc    *hpack.Encoder
	hbuf   bytes.Buffer
	next   uint32
	resets atomic.Int64 // RST_STREAM frames received
	goAway atomic.Bool
	closed chan struct{}
}

func dialAttacker(t *testing.T, addr string) *h2Attacker {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	a := &h2Attacker{conn: c, next: 1, closed: make(chan struct{})}
	a.fr = http2.NewFramer(c, c)
	a.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	a.enc = hpack.NewEncoder(&a.hbuf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := a.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(a.closed)
		for {
			f, err := a.fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					a.mu.Lock()
					a.fr.WriteSettingsAck()
					a.mu.Unlock()
				}
			case *http2.RSTStreamFrame:
				a.resets.Add(1)
			case *http2.GoAwayFrame:
				a.goAway.Store(true)
			}
		}
	}()
	return a
}

// open starts a stream for host and path (a POST whose body is left open
// when hold is set) and, when reset is set, cancels it at once.
func (a *h2Attacker) open(host, path string, hold, reset bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hbuf.Reset()
	method := http.MethodGet
	if hold {
		method = http.MethodPost
	}
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: method}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: host}, {Name: ":path", Value: path}} {
		a.enc.WriteField(f)
	}
	id := a.next
	a.next += 2
	if err := a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: a.hbuf.Bytes(), EndStream: !hold, EndHeaders: true}); err != nil {
		return err
	}
	if reset {
		return a.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	return nil
}

// TestHTTP2HostileClients: a real router under legitimate load over h2c
// and HTTP/1.1 while hostile HTTP/2 clients attack it: four rapid-reset
// connections (CVE-2023-44487: streams opened and cancelled as fast as
// they can be written) and four stream floods (1,000 streams each, held
// open, to a pod that holds them). Every legitimate request is answered
// 200, the flood reaches the pod with at most the stream limit per
// connection, and the router's memory stays bounded.
func TestHTTP2HostileClients(t *testing.T) {
	t.Parallel()
	const streamLimit = 128 // -client-max-concurrent-streams's default
	e := newEnv(t)
	e.ingressClass("bulkhead", true)
	e.startPods("web", "web", 2)
	probe := e.startPods("web", "probe", 1)[0] // what the attackers reach
	e.apply(ingress("web", "web", "bulkhead",
		rule("load.example", path("/", prefix(), "web")),
		rule("probe.example", path("/", prefix(), "probe"))))
	e.router.WaitReady(30 * time.Second)
	e.expectPod("load.example", "/", "web", "")
	e.expectPod("probe.example", "/", "probe", "")
	addr := strings.TrimPrefix(e.router.ProxyURL, "http://")
	pid := e.router.Pid()
	rssBefore := procStatusKB(t, pid, "VmRSS")
	stats := func() testpods.Stats {
		t.Helper()
		s, err := probe.Stats(e.ctx())
		if err != nil {
			t.Fatalf("probe pod stats: %v", err)
		}
		return s
	}
	probeBefore := stats().Requests

	stop := make(chan struct{})
	h2c := protocolClient(func(p *http.Protocols) { p.SetUnencryptedHTTP2(true) }, "")
	legitH2 := runLoad(h2c, e.router.ProxyURL+"/steady", "load.example", "web", 4, stop)
	legitH1 := loadgen.Start(loadgen.Target{URL: e.router.ProxyURL + "/steady", Host: "load.example"}, loadgen.Options{Rate: 100})
	defer legitH1.Stop()

	// The floods first: their streams stay open on the pod for 20 s.
	var floods []*h2Attacker
	for range 4 {
		a := dialAttacker(t, addr)
		for range 1000 {
			if err := a.open("probe.example", "/?sleep=20s", false, false); err != nil {
				t.Fatalf("flood: %v", err)
			}
		}
		floods = append(floods, a)
	}
	// Then the rapid resets, 20,000 streams each, concurrently.
	var wg sync.WaitGroup
	var resetSent atomic.Int64
	start := time.Now()
	resetters := make([]*h2Attacker, 4)
	for i := range resetters {
		resetters[i] = dialAttacker(t, addr)
	}
	for _, a := range resetters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20000 {
				if a.open("probe.example", "/", false, true) != nil {
					return // the router closed the connection
				}
				resetSent.Add(1)
			}
		}()
	}
	wg.Wait()
	resetTook := time.Since(start)
	e.eventually(10*time.Second, "the floods' streams over the limit refused", func() error {
		for _, a := range floods {
			if a.resets.Load() < 1000-streamLimit {
				return fmt.Errorf("%d refused on a flood connection", a.resets.Load())
			}
		}
		return nil
	})
	held := stats().InFlight
	<-time.After(time.Second) // legitimate load goes on under the held floods: the point of the test
	close(stop)
	legitH2.wait()
	h1 := legitH1.Stop()
	peak := procStatusKB(t, pid, "VmHWM")
	reached := stats().Requests - probeBefore
	closedResetters := 0
	for _, a := range resetters {
		if a.goAway.Load() {
			closedResetters++
		}
	}
	var kinds []string
	_, metrics := e.router.Admin("/metrics")
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "bulkhead_proxy_http2_errors_total{") {
			kinds = append(kinds, line)
		}
	}
	t.Logf("rapid-reset connections sent GOAWAY by the router: %d of 4; HTTP/2 errors: %v", closedResetters, kinds)
	t.Logf("hostile HTTP/2: %d streams opened and reset on 4 connections in %s; 4 floods of 1,000 streams: %d held by the pod (limit %d per connection); %d attacker requests reached the pod in all",
		resetSent.Load(), resetTook.Round(time.Millisecond), held, streamLimit, reached)
	t.Logf("legitimate load meanwhile: h2c %d of %d failed (%s); HTTP/1.1 %s; router RSS %d MiB before, peak %d MiB",
		legitH2.failed.Load(), legitH2.sent.Load(), legitH2.first, h1, rssBefore>>10, peak>>10)
	if legitH2.failed.Load() != 0 || legitH2.sent.Load() == 0 || h1.Failed != 0 || h1.Sent == 0 {
		t.Errorf("legitimate requests failed: h2c %d of %d, HTTP/1.1 %d of %d", legitH2.failed.Load(), legitH2.sent.Load(), h1.Failed, h1.Sent)
	}
	if held > 4*streamLimit {
		t.Errorf("the pod held %d of the floods' requests, above %d (4 connections × %d streams)", held, 4*streamLimit, streamLimit)
	}
	if peak > 256<<10 {
		t.Errorf("router peak RSS %d MiB, want at most 256 MiB", peak>>10)
	}
	// The floods leave: the pod's held requests are let go.
	for _, a := range floods {
		a.conn.Close()
	}
	e.eventually(10*time.Second, "the floods' requests let go", func() error {
		if n := stats().InFlight; n != 0 {
			return fmt.Errorf("%d still in flight on the pod", n)
		}
		return nil
	})
}
