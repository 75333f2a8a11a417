package testpods

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/podnet"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// These tests need root and create real network namespaces. Outside CI they
// skip on a host that cannot; with CI=true they fail there.

var httpClient = DirectClient(30 * time.Second)

func startPod(t *testing.T, c *Cluster, spec PodSpec) *Pod {
	t.Helper()
	p, err := c.StartPod(t.Context(), spec)
	if err != nil {
		t.Fatalf("StartPod(%+v): %v", spec, err)
	}
	return p
}

// getEcho GETs url and decodes the echo document strictly, so a field the
// testpod sends and Echo lacks is caught.
func getEcho(t *testing.T, req *http.Request) (*http.Response, Echo) {
	t.Helper()
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	var e Echo
	dec := json.NewDecoder(resp.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("%s %s: decode echo: %v", req.Method, req.URL, err)
	}
	return resp, e
}

func newRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func awaitInFlight(t *testing.T, p *Pod, want int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := p.AwaitStats(ctx, func(s Stats) bool { return s.InFlight == want }); err != nil {
		t.Fatal(err)
	}
}

// dialError connects to addr and returns the error (nil if it connected).
func dialError(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		conn.Close()
	}
	return err
}

func TestPodsAnswerAtTheirOwnAddresses(t *testing.T) {
	c := ForTest(t, nil, Options{})
	a := startPod(t, c, PodSpec{Namespace: "shop", Service: "web", Name: "web-a"})
	b := startPod(t, c, PodSpec{Namespace: "shop", Service: "web", Name: "web-b"})

	if a.IP == b.IP {
		t.Fatalf("both pods have address %s", a.IP)
	}
	for _, p := range []*Pod{a, b} {
		if !podnet.Range.Contains(p.IP) || p.IP.IsLoopback() || p.IP.IsLinkLocalUnicast() {
			t.Errorf("pod %s has address %s, want a non-loopback address in %s", p.Name, p.IP, podnet.Range)
		}
		if p.Addr != p.IP.String()+":8080" {
			t.Errorf("pod %s: Addr = %q", p.Name, p.Addr)
		}
		req := newRequest(t, "GET", p.URL("/some/path?q=1"))
		req.Host = "shop.example"
		req.Header.Set("X-Probe", p.Name)
		resp, e := getEcho(t, req)
		if resp.StatusCode != 200 {
			t.Errorf("pod %s: status %d", p.Name, resp.StatusCode)
		}
		want := Echo{Pod: p.Name, Service: "web", Namespace: "shop", Method: "GET", Host: "shop.example",
			Path: "/some/path", RawQuery: "q=1", Proto: "HTTP/1.1"}
		got := e
		got.Headers, got.RemoteAddr = nil, ""
		if !reflect.DeepEqual(got, want) {
			t.Errorf("pod %s answered %+v\nwant %+v", p.Name, got, want)
		}
		if e.Headers.Get("X-Probe") != p.Name {
			t.Errorf("pod %s: headers %v", p.Name, e.Headers)
		}
		// The root namespace reaches the pod over the bridge, from the
		// gateway address, not through any other route.
		if host, _, _ := net.SplitHostPort(e.RemoteAddr); host != c.Gateway() {
			t.Errorf("pod %s saw the request from %s, want %s", p.Name, e.RemoteAddr, c.Gateway())
		}
		if got := resp.Header.Get("X-Testpod-Pod"); got != p.Name {
			t.Errorf("X-Testpod-Pod = %q", got)
		}
	}
	if pods := c.Pods(); len(pods) != 2 || pods[0] != a || pods[1] != b {
		t.Errorf("Pods() = %v", pods)
	}
}

func TestQueryParametersShapeOneResponse(t *testing.T) {
	c := ForTest(t, nil, Options{})
	p := startPod(t, c, PodSpec{Service: "web", Name: "shape", Port: 9000})

	start := time.Now()
	resp, _ := getEcho(t, newRequest(t, "GET", p.URL("/?sleep=200ms")))
	if elapsed := time.Since(start); elapsed < 200*time.Millisecond || resp.StatusCode != 200 {
		t.Errorf("sleep=200ms: status %d after %v", resp.StatusCode, elapsed)
	}

	resp, e := getEcho(t, newRequest(t, "GET", p.URL("/x?status=503")))
	if resp.StatusCode != 503 || e.Pod != "shape" || e.Path != "/x" {
		t.Errorf("status=503: status %d, echo %+v", resp.StatusCode, e)
	}

	resp, e = getEcho(t, newRequest(t, "GET", p.URL("/?status=abc")))
	if resp.StatusCode != 400 || e.Error == "" {
		t.Errorf("status=abc: status %d, error %q; want 400 saying why", resp.StatusCode, e.Error)
	}

	resp, err := httpClient.Do(newRequest(t, "GET", p.URL("/?bytes=1000000")))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, filler, _ := strings.Cut(string(body), "\n"); len(filler) != 1000000 {
		t.Errorf("bytes=1000000: %d filler bytes", len(filler))
	}

	// A client giving up ends the sleep on the pod too.
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "GET", p.URL("/?sleep=5m"), nil)
	errs := make(chan error, 1)
	go func() {
		resp, err := httpClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errs <- err
	}()
	awaitInFlight(t, p, 1)
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled request: %v", err)
	}
	awaitInFlight(t, p, 0)
}

func TestModesSwitchTheWholePod(t *testing.T) {
	c := ForTest(t, nil, Options{})
	p := startPod(t, c, PodSpec{Service: "web", Name: "moody"})
	ctx := t.Context()

	if err := p.SetMode(ctx, Mode503); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/", "/other?status=200"} {
		if resp, e := getEcho(t, newRequest(t, "GET", p.URL(path))); resp.StatusCode != 503 || e.Pod != "moody" {
			t.Errorf("503 mode, %s: status %d", path, resp.StatusCode)
		}
	}

	if err := p.SetMode(ctx, ModeHang); err != nil {
		t.Fatal(err)
	}
	reqCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	req, _ := http.NewRequestWithContext(reqCtx, "GET", p.URL("/"), nil)
	_, err := httpClient.Do(req)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hang mode: err = %v, want the client's deadline", err)
	}
	awaitInFlight(t, p, 0) // the pod noticed the client leave

	if err := p.SetMode(ctx, ModeClose); err != nil {
		t.Fatal(err)
	}
	if _, err := httpClient.Do(newRequest(t, "GET", p.URL("/"))); err == nil {
		t.Error("close mode: got an answer")
	}

	if err := p.SetMode(ctx, Mode("bogus")); err == nil {
		t.Error("bogus mode accepted")
	}
	if err := p.SetMode(ctx, ModeOK); err != nil {
		t.Fatal(err)
	}
	if resp, _ := getEcho(t, newRequest(t, "GET", p.URL("/"))); resp.StatusCode != 200 {
		t.Errorf("ok mode: status %d", resp.StatusCode)
	}
	s, err := p.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Mode != ModeOK || s.Requests != 5 || s.InFlight != 0 {
		t.Errorf("stats = %+v, want ok mode, 5 requests, none in flight", s)
	}
}

func TestKillMakesConnectionsFail(t *testing.T) {
	c := ForTest(t, nil, Options{})
	p := startPod(t, c, PodSpec{Service: "web", Name: "doomed"})

	inFlight := make(chan error, 1)
	go func() {
		resp, err := httpClient.Do(newRequest(t, "GET", p.URL("/?sleep=5m")))
		if err == nil {
			resp.Body.Close()
		}
		inFlight <- err
	}()
	awaitInFlight(t, p, 1)

	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Exited():
	default:
		t.Error("Kill returned before the process exited")
	}
	if err := <-inFlight; err == nil {
		t.Error("in-flight request got an answer from a killed pod")
	}
	// The namespace still has the address, nothing listens: refused, at once.
	if err := dialError(p.Addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after Kill: %v, want connection refused", err)
	}
	if err := p.Kill(); err != nil {
		t.Errorf("second Kill: %v", err)
	}
}

func TestTerminateFinishesInFlightRequests(t *testing.T) {
	c := ForTest(t, nil, Options{})
	p := startPod(t, c, PodSpec{Service: "web", Name: "graceful"})

	type result struct {
		status int
		err    error
	}
	inFlight := make(chan result, 1)
	go func() {
		resp, err := httpClient.Do(newRequest(t, "GET", p.URL("/?sleep=1s")))
		if err != nil {
			inFlight <- result{err: err}
			return
		}
		resp.Body.Close()
		inFlight <- result{status: resp.StatusCode}
	}()
	awaitInFlight(t, p, 1)

	start := time.Now()
	if err := p.Terminate(t.Context()); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Terminate took %v", elapsed)
	}
	r := <-inFlight
	if r.err != nil || r.status != 200 {
		t.Errorf("in-flight request: status %d, err %v; want it to finish with 200", r.status, r.err)
	}
	if err := dialError(p.Addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after Terminate: %v, want connection refused", err)
	}
	if err := p.Terminate(t.Context()); err != nil {
		t.Errorf("second Terminate: %v", err)
	}
}

func TestStartPodValidatesSpec(t *testing.T) {
	c := ForTest(t, nil, Options{})
	for _, spec := range []PodSpec{
		{Name: "no-service"},
		{Service: "web"},
		{Service: "Web", Name: "x"},
		{Service: "web", Name: "x", Port: 70000},
	} {
		if _, err := c.StartPod(t.Context(), spec); err == nil {
			t.Errorf("StartPod(%+v) succeeded", spec)
		}
	}
	startPod(t, c, PodSpec{Service: "web", Name: "one"})
	if _, err := c.StartPod(t.Context(), PodSpec{Service: "web", Name: "one"}); err == nil {
		t.Error("duplicate pod name accepted")
	}
	if _, err := c.StartPod(t.Context(), PodSpec{Service: "web", Name: "two", Port: 9999}); err == nil {
		t.Error("second port for one service accepted")
	}
}

// hostState lists our netns and links, to compare before and after.
func hostState(t *testing.T, ip podnet.Tool) (namespaces, links []string) {
	t.Helper()
	ns, err := ip.NetnsNames(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ls, err := ip.LinkNames(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return ns, ls
}

func TestCloseLeavesNothingBehind(t *testing.T) {
	requireHost(t)
	c, err := New(t.Context(), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	a := startPod(t, c, PodSpec{Service: "web", Name: "a"})
	b := startPod(t, c, PodSpec{Service: "web", Name: "b"})
	if err := b.Kill(); err != nil { // a dead pod must be cleaned up too
		t.Fatal(err)
	}

	namespaces, links := hostState(t, c.ip)
	mine := []string{a.network.Netns, b.network.Netns, a.network.HostVeth, b.network.HostVeth, c.net.Bridge()}
	for _, name := range mine {
		if !slices.Contains(namespaces, name) && !slices.Contains(links, name) {
			t.Fatalf("%s not found before Close; netns %v links %v", name, namespaces, links)
		}
	}
	pids := []int{a.proc.Cmd.Process.Pid, b.proc.Cmd.Process.Pid}
	if comm := readComm(a.proc.Cmd.Process.Pid); comm != "testpod" {
		t.Errorf("pod process is %q, want testpod itself (ip netns exec should exec in place)", comm)
	}

	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	namespaces, links = hostState(t, c.ip)
	for _, name := range mine {
		if slices.Contains(namespaces, name) || slices.Contains(links, name) {
			t.Errorf("%s still exists after Close", name)
		}
	}
	for _, pid := range pids {
		if podnet.ProcessRunning(pid) {
			t.Errorf("pod process %d still running after Close", pid)
		}
	}
	if _, err := os.Stat(c.net.OwnerRecord()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ownership record %s still exists", c.net.OwnerRecord())
	}
	if _, err := c.StartPod(t.Context(), PodSpec{Service: "web", Name: "late"}); !errors.Is(err, ErrClosed) {
		t.Errorf("StartPod after Close: %v, want ErrClosed", err)
	}
	// Nothing routes the old address into a namespace any more, and the
	// guard route keeps it from going anywhere else.
	if err := dialError(a.Addr); !errors.Is(err, syscall.EHOSTUNREACH) {
		t.Errorf("dial %s after Close: %v, want host unreachable", a.Addr, err)
	}
}

func TestClustersInOneProcessGetDistinctSubnets(t *testing.T) {
	a := ForTest(t, nil, Options{})
	b := ForTest(t, nil, Options{})
	if a.Subnet() == b.Subnet() {
		t.Fatalf("both clusters got %s", a.Subnet())
	}
	pa := startPod(t, a, PodSpec{Service: "web", Name: "same-name"})
	pb := startPod(t, b, PodSpec{Service: "web", Name: "same-name"})
	for _, p := range []*Pod{pa, pb} {
		if _, e := getEcho(t, newRequest(t, "GET", p.URL("/"))); e.Pod != "same-name" {
			t.Errorf("pod at %s answered as %q", p.Addr, e.Pod)
		}
	}
}

func readComm(pid int) string {
	out, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(out))
}

// requireHost skips (or, with CI=true, fails) a test that builds Clusters
// with New rather than ForTest on a host that cannot run pods.
func requireHost(t *testing.T) {
	t.Helper()
	if err := CheckPreconditions(Options{}); err != nil {
		if InCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

func TestStartPodPublishesByDefault(t *testing.T) {
	client := fake.NewClientset()
	c := ForTest(t, client, Options{})
	ctx := t.Context()
	p := startPod(t, c, PodSpec{Namespace: "shop", Service: "web", Name: "published"})
	startPod(t, c, PodSpec{Namespace: "shop", Service: "hidden", Name: "unpublished", Unpublished: true})

	if _, err := client.CoreV1().Services("shop").Get(ctx, "web", metav1.GetOptions{}); err != nil {
		t.Errorf("service of a published pod: %v", err)
	}
	want := []endpointView{{p.IP.String(), true, true, false, "published"}}
	s := getSlice(t, client, "shop", "web")
	if got := endpointsOf(t, s); !equalViews(got, want) {
		t.Errorf("endpoints %+v, want %+v", got, want)
	}
	if len(s.Ports) != 1 || *s.Ports[0].Port != p.Port {
		t.Errorf("ports %+v, want the pod port %d", s.Ports, p.Port)
	}
	if _, err := client.CoreV1().Services("shop").Get(ctx, "hidden", metav1.GetOptions{}); err == nil {
		t.Error("an unpublished pod created its service")
	}

	// A killed pod stays listed until the test removes it.
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.SyncEndpointSlice(ctx, "shop", "web"); err != nil {
		t.Fatal(err)
	}
	if got := endpointsOf(t, getSlice(t, client, "shop", "web")); !equalViews(got, want) {
		t.Errorf("after Kill: endpoints %+v, want %+v", got, want)
	}
	c.RemoveFromEndpoints(p)
	if err := c.SyncEndpointSlice(ctx, "shop", "web"); err != nil {
		t.Fatal(err)
	}
	if got := getSlice(t, client, "shop", "web").Endpoints; len(got) != 0 {
		t.Errorf("after RemoveFromEndpoints: endpoints %+v", got)
	}
}
