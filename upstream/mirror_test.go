package upstream

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/zalando/skipper/filters"
	"github.com/zalando/skipper/filters/filtertest"
)

const mirrorKey = "default/shadow:80"

// mirrorPod is a real HTTP server recording the requests it gets; with
// hold set, each request waits for release before it is answered.
type mirrorPod struct {
	srv     *httptest.Server
	mu      sync.Mutex
	got     []*http.Request
	bodies  []string
	arrived chan struct{}
	release chan struct{}
}

func newMirrorPod(t *testing.T, hold bool) *mirrorPod {
	p := &mirrorPod{arrived: make(chan struct{}, 100), release: make(chan struct{})}
	if !hold {
		close(p.release)
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		p.got = append(p.got, r)
		p.bodies = append(p.bodies, string(b))
		p.mu.Unlock()
		// Never blocks: tests that await arrivals await fewer than the
		// buffer holds, and a test sending hundreds of copies (the
		// fraction test) reads none. A blocking send held those handlers,
		// and with them the mirror's slots and httptest's Close, forever.
		select {
		case p.arrived <- struct{}{}:
		default:
		}
		select {
		case <-p.release:
		case <-r.Context().Done():
		}
		io.WriteString(w, strings.Repeat("x", 1000))
	}))
	t.Cleanup(func() {
		if hold {
			close(p.release)
		}
		p.srv.Close()
	})
	return p
}

func (p *mirrorPod) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.got)
}

func (p *mirrorPod) req(i int) *http.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.got[i]
}

func (p *mirrorPod) body(i int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bodies[i]
}

func mirrorFilterOf(t *testing.T, u *Upstream, args ...any) filters.Filter {
	t.Helper()
	f, err := u.MirrorSpec().CreateFilter(args)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func mirrored(u *Upstream, result string) float64 {
	return testutil.ToFloat64(u.metrics.mirrored.WithLabelValues(mirrorKey, result))
}

// runMirror runs the filter on a request as skipper would, and returns
// the request as the route goes on with it.
func runMirror(f filters.Filter, r *http.Request) *http.Request {
	ctx := &filtertest.Context{FRequest: r, FStateBag: map[string]any{}}
	f.Request(ctx)
	return ctx.FRequest
}

func TestMirrorSendsACopy(t *testing.T) {
	u, _ := newUpstream(t, Config{})
	pod := newMirrorPod(t, false)
	u.SetEndpoints(map[string][]string{mirrorKey: {pod.srv.Listener.Addr().String()}})
	f := mirrorFilterOf(t, u, mirrorKey)

	r := httptest.NewRequest(http.MethodPost, "http://client.example/a/b%2Fc?x=1&y=2", strings.NewReader("hello"))
	r.Header.Set("X-Test", "yes")
	r.Header.Set("Connection", "close, X-Hop")
	r.Header.Set("X-Hop", "1")
	r.Header.Set("Keep-Alive", "timeout=5")
	out := runMirror(f, r)
	if b, err := io.ReadAll(out.Body); err != nil || string(b) != "hello" {
		t.Fatalf("the main request's body after the filter: %q, %v", b, err)
	}
	eventually(t, "the copy is counted as sent", func() bool { return mirrored(u, mirrorSent) == 1 })
	if pod.count() != 1 {
		t.Fatalf("mirror got %d requests", pod.count())
	}
	got := pod.req(0)
	if got.Method != http.MethodPost || got.URL.EscapedPath() != "/a/b%2Fc" || got.URL.RawQuery != "x=1&y=2" {
		t.Errorf("copy: %s %s?%s", got.Method, got.URL.EscapedPath(), got.URL.RawQuery)
	}
	if got.Host != "client.example" {
		t.Errorf("copy's Host %q", got.Host)
	}
	if got.Header.Get("X-Test") != "yes" || got.Header.Get("X-Hop") != "" || got.Header.Get("Keep-Alive") != "" {
		t.Errorf("copy's headers %v", got.Header)
	}
	if pod.body(0) != "hello" {
		t.Errorf("copy's body %q", pod.body(0))
	}
}

func TestMirrorNeverHoldsTheClient(t *testing.T) {
	t.Run("slow mirror", func(t *testing.T) {
		u, _ := newUpstream(t, Config{Mirror: MirrorConfig{Timeout: 100 * time.Millisecond}})
		pod := newMirrorPod(t, true) // answers nothing until the test ends
		u.SetEndpoints(map[string][]string{mirrorKey: {pod.srv.Listener.Addr().String()}})
		f := mirrorFilterOf(t, u, mirrorKey)
		out := runMirror(f, httptest.NewRequest(http.MethodPut, "http://client.example/x", strings.NewReader("body")))
		// The filter returned while the copy is held by the pod.
		<-pod.arrived
		if b, _ := io.ReadAll(out.Body); string(b) != "body" {
			t.Fatalf("main body %q", b)
		}
		eventually(t, "the copy to time out", func() bool { return mirrored(u, mirrorFailed) == 1 })
		if mirrored(u, mirrorSent) != 0 {
			t.Fatal("a copy that timed out counted as sent")
		}
	})
	t.Run("mirror down", func(t *testing.T) {
		u, _ := newUpstream(t, Config{})
		u.SetEndpoints(map[string][]string{mirrorKey: {deadAddr(t)}})
		f := mirrorFilterOf(t, u, mirrorKey)
		out := runMirror(f, httptest.NewRequest(http.MethodGet, "http://client.example/x", nil))
		if out.Body != http.NoBody {
			if b, _ := io.ReadAll(out.Body); len(b) != 0 {
				t.Fatalf("main body %q", b)
			}
		}
		eventually(t, "the copy to fail", func() bool { return mirrored(u, mirrorFailed) == 1 })
	})
	t.Run("client body fails", func(t *testing.T) {
		u, _ := newUpstream(t, Config{})
		pod := newMirrorPod(t, false)
		u.SetEndpoints(map[string][]string{mirrorKey: {pod.srv.Listener.Addr().String()}})
		f := mirrorFilterOf(t, u, mirrorKey)
		r := httptest.NewRequest(http.MethodPost, "http://client.example/x", io.MultiReader(strings.NewReader("ab"), bodyError{errors.New("client gone")}))
		r.ContentLength = 10
		out := runMirror(f, r)
		b, err := io.ReadAll(out.Body)
		if string(b) != "ab" || err == nil || err.Error() != "client gone" {
			t.Fatalf("main body %q, %v: want what was read, then the error", b, err)
		}
		if mirrored(u, mirrorSkipped) != 1 || len(u.mirror.slots) != 0 {
			t.Fatalf("skipped %v, slots taken %d", mirrored(u, mirrorSkipped), len(u.mirror.slots))
		}
	})
}

func TestMirrorFraction(t *testing.T) {
	u, _ := newUpstream(t, Config{})
	pod := newMirrorPod(t, false)
	u.SetEndpoints(map[string][]string{mirrorKey: {pod.srv.Listener.Addr().String()}})
	none := mirrorFilterOf(t, u, mirrorKey, 0.0)
	half := mirrorFilterOf(t, u, mirrorKey, 0.5)
	all := mirrorFilterOf(t, u, mirrorKey, 1.0)
	for range 100 {
		runMirror(none, httptest.NewRequest(http.MethodGet, "http://client.example/none", nil))
	}
	runMirror(all, httptest.NewRequest(http.MethodGet, "http://client.example/all", nil))
	eventually(t, "the one copy", func() bool { return mirrored(u, mirrorSent) == 1 })
	if pod.count() != 1 || pod.req(0).URL.Path != "/all" {
		t.Fatalf("fraction 0 mirrored: %d copies", pod.count())
	}
	const n = 400
	for range n {
		runMirror(half, httptest.NewRequest(http.MethodGet, "http://client.example/half", nil))
	}
	eventually(t, "the copies of the half", func() bool {
		return mirrored(u, mirrorSent)+mirrored(u, mirrorDropped)+mirrored(u, mirrorFailed) > 1 && len(u.mirror.slots) == 0
	})
	// Binomial(400, 0.5): 200 ± 10σ.
	if got := mirrored(u, mirrorSent) + mirrored(u, mirrorDropped) + mirrored(u, mirrorFailed) - 1; got < 100 || got > 300 {
		t.Fatalf("fraction 0.5 mirrored %v of %d", got, n)
	}
	for _, bad := range [][]any{{}, {""}, {mirrorKey, 1.5}, {mirrorKey, -0.1}, {mirrorKey, "0.5"}, {mirrorKey, 0.5, 1.0}} {
		if _, err := u.MirrorSpec().CreateFilter(bad); err == nil {
			t.Errorf("args %v accepted", bad)
		}
	}
}

func TestMirrorDropsWhenSaturated(t *testing.T) {
	u, _ := newUpstream(t, Config{Mirror: MirrorConfig{MaxInFlight: 2}})
	pod := newMirrorPod(t, true)
	u.SetEndpoints(map[string][]string{mirrorKey: {pod.srv.Listener.Addr().String()}})
	f := mirrorFilterOf(t, u, mirrorKey)
	for range 5 {
		runMirror(f, httptest.NewRequest(http.MethodGet, "http://client.example/x", nil))
	}
	if d := mirrored(u, mirrorDropped); d != 3 {
		t.Fatalf("dropped %v, want 3 (2 in flight)", d)
	}
	<-pod.arrived
	<-pod.arrived
	if pod.count() != 2 {
		t.Fatalf("mirror got %d", pod.count())
	}
}

func TestMirrorSkips(t *testing.T) {
	u, _ := newUpstream(t, Config{Mirror: MirrorConfig{MaxBody: 4}})
	pod := newMirrorPod(t, false)
	u.SetEndpoints(map[string][]string{mirrorKey: {pod.srv.Listener.Addr().String()}, "default/empty:80": {}})
	f := mirrorFilterOf(t, u, mirrorKey)

	large := httptest.NewRequest(http.MethodPost, "http://client.example/x", strings.NewReader("12345"))
	if b, _ := io.ReadAll(runMirror(f, large).Body); string(b) != "12345" {
		t.Fatalf("large body %q", b)
	}
	streamed := httptest.NewRequest(http.MethodPost, "http://client.example/x", strings.NewReader("1"))
	streamed.ContentLength = -1
	runMirror(f, streamed)
	upgrade := httptest.NewRequest(http.MethodGet, "http://client.example/ws", nil)
	upgrade.Header.Set("Connection", "Upgrade")
	upgrade.Header.Set("Upgrade", "websocket")
	runMirror(f, upgrade)
	if s := mirrored(u, mirrorSkipped); s != 3 {
		t.Fatalf("skipped %v, want 3", s)
	}
	runMirror(mirrorFilterOf(t, u, "default/empty:80"), httptest.NewRequest(http.MethodGet, "http://client.example/x", nil))
	runMirror(mirrorFilterOf(t, u, "default/unknown:80"), httptest.NewRequest(http.MethodGet, "http://client.example/x", nil))
	for _, k := range []string{"default/empty:80", "default/unknown:80"} {
		if s := testutil.ToFloat64(u.metrics.mirrored.WithLabelValues(k, mirrorSkipped)); s != 1 {
			t.Errorf("%s: skipped %v", k, s)
		}
	}
	// A small body is mirrored; nothing else was.
	runMirror(f, httptest.NewRequest(http.MethodPost, "http://client.example/small", strings.NewReader("1234")))
	eventually(t, "the small body's copy", func() bool { return mirrored(u, mirrorSent) == 1 })
	if pod.count() != 1 {
		t.Fatalf("mirror got %d requests", pod.count())
	}
	if b := pod.body(0); b != "1234" {
		t.Fatalf("copy body %q", b)
	}
}
