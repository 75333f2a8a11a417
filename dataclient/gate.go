package dataclient

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"path"
	"sync"
	"sync/atomic"
	"time"
)

// Reconnect modes: what the router does when the API server is back after
// an outage.
const (
	// ReconnectResume keeps the informers. Their list and watch requests
	// pass through a gate that holds them while the API server is away
	// (client-go's reflector never sees an error, so its backoff never
	// grows), lets watches resume from their resourceVersion at once when
	// the server returns, and holds relists until a random moment within
	// the relist spread.
	ReconnectResume = "resume"
	// ReconnectRestart starts new informers on fresh connections as soon as
	// the server answers, and installs them once fully listed: every router
	// lists everything within about 2 s of the server's return. Kept for
	// comparison (make bench-fleet).
	ReconnectRestart = "restart"
)

// gate stands between the informers and the API server (as a wrapper of
// their client's transport and dialer). It holds list and watch requests
// while the supervisor counts the server as away, instead of letting them
// fail; a request that fails at the transport closes the gate and waits.
// When the server is back, watch requests from a known resourceVersion
// (resumes: cheap for the server's watch cache) go at once; full lists
// (a LIST, or a watch-list stream with sendInitialEvents) wait until
// relistAt, a random moment per outage, so a fleet's relists are spread.
// Streams and connections from before the outage are ended then, a stream
// as a clean end (io.EOF) so the reflector re-watches from where it was
// rather than relisting.
//
// A passive gate (restart mode) holds nothing; it only counts requests.
type gate struct {
	hold    bool
	metrics *metrics
	onDown  func(error) // a request failed at the transport
	spread  time.Duration

	mu       sync.Mutex
	up       bool
	opened   chan struct{} // closed while up
	relistAt time.Time
	epoch    uint64 // bumped when the gate closes: streams and connections of older epochs are cut on reopening
	streams  map[*cutBody]uint64
	conns    map[*trackedConn]uint64
}

func newGate(hold bool, spread time.Duration, m *metrics, onDown func(error)) *gate {
	g := &gate{hold: hold, spread: spread, metrics: m, onDown: onDown, up: true, opened: make(chan struct{}),
		streams: map[*cutBody]uint64{}, conns: map[*trackedConn]uint64{}}
	close(g.opened)
	return g
}

// hooks is what a Connector needs to route a client through the gate.
func (g *gate) hooks() ClientHooks {
	return ClientHooks{WrapTransport: g.wrapTransport, WrapDial: g.wrapDial}
}

// close holds every request from now on. It returns whether the gate was
// open.
func (g *gate) close() bool {
	if !g.hold {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.up {
		return false
	}
	g.up = false
	g.opened = make(chan struct{})
	g.epoch++
	return true
}

// isClosed reports whether requests are being held.
func (g *gate) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.up
}

// open lets requests through again: resumes at once, relists after
// relistDelay. Streams and connections from before the gate closed are
// ended, so nothing waits on a connection that died silently.
func (g *gate) open(relistDelay time.Duration) {
	if !g.hold {
		return
	}
	g.mu.Lock()
	if g.up {
		g.mu.Unlock()
		return
	}
	g.up = true
	g.relistAt = time.Now().Add(relistDelay)
	var streams []*cutBody
	for s, e := range g.streams {
		if e < g.epoch {
			streams = append(streams, s)
			delete(g.streams, s)
		}
	}
	var conns []*trackedConn
	for c, e := range g.conns {
		if e < g.epoch {
			conns = append(conns, c)
			delete(g.conns, c)
		}
	}
	close(g.opened)
	g.mu.Unlock()
	// Mark the streams first: their reads then end as io.EOF (a watch
	// that ended), not as the error closing their connection causes.
	for _, s := range streams {
		s.cut()
	}
	for _, c := range conns {
		c.Conn.Close()
	}
}

// relistDelay draws this outage's moment for relists, uniform within the
// spread: every router draws its own.
func (g *gate) relistDelay() time.Duration {
	if g.spread <= 0 {
		return 0
	}
	return rand.N(g.spread)
}

// wait blocks until the gate is open and, for a relist, relistAt has come.
// It returns the epoch the request runs in.
func (g *gate) wait(ctx context.Context, relist bool) (uint64, error) {
	for {
		g.mu.Lock()
		up, opened, at, epoch := g.up, g.opened, g.relistAt, g.epoch
		g.mu.Unlock()
		if !up {
			select {
			case <-opened:
				continue
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		if d := time.Until(at); relist && d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return 0, ctx.Err()
			}
			continue // the gate may have closed meanwhile
		}
		return epoch, nil
	}
}

func (g *gate) wrapTransport(next http.RoundTripper) http.RoundTripper {
	return &gatedTransport{g: g, next: next}
}

type gatedTransport struct {
	g    *gate
	next http.RoundTripper
}

func (t *gatedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet {
		return t.next.RoundTrip(req)
	}
	q := req.URL.Query()
	watching := q.Get("watch") == "true" || q.Get("watch") == "1"
	rv := q.Get("resourceVersion")
	relist := !watching || q.Get("sendInitialEvents") == "true" || rv == "" || rv == "0"
	resource := path.Base(req.URL.Path)
	for {
		epoch, err := t.g.wait(req.Context(), relist)
		if err != nil {
			return nil, err
		}
		if relist {
			t.g.metrics.relists.WithLabelValues(resource).Inc()
		} else {
			t.g.metrics.resumes.WithLabelValues(resource).Inc()
		}
		resp, err := t.next.RoundTrip(req)
		if err == nil {
			if watching {
				resp.Body = t.g.track(resp.Body, epoch)
			}
			return resp, nil
		}
		if req.Context().Err() != nil || !t.g.hold {
			return nil, err
		}
		// The server is away: wait for it here rather than hand the
		// reflector an error (it would back off, up to 30 s).
		t.g.down(err)
	}
}

func (g *gate) down(err error) {
	if g.close() {
		g.onDown(err)
	}
}

// track registers a watch stream so that reopening after an outage can end
// it.
func (g *gate) track(body io.ReadCloser, epoch uint64) io.ReadCloser {
	if !g.hold {
		return body
	}
	b := &cutBody{ReadCloser: body, g: g}
	g.mu.Lock()
	g.streams[b] = epoch
	g.mu.Unlock()
	return b
}

// cutBody is a watch stream the gate can end as if the server had closed it.
type cutBody struct {
	io.ReadCloser
	g      *gate
	isCut  atomic.Bool
	closed sync.Once
}

func (b *cutBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && b.isCut.Load() {
		return n, io.EOF
	}
	return n, err
}

func (b *cutBody) cut() {
	b.isCut.Store(true)
	b.closed.Do(func() { b.ReadCloser.Close() })
}

func (b *cutBody) Close() error {
	b.g.mu.Lock()
	delete(b.g.streams, b)
	b.g.mu.Unlock()
	var err error
	b.closed.Do(func() { err = b.ReadCloser.Close() })
	return err
}

// DialFunc dials a connection to the API server.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

func (g *gate) wrapDial(dial DialFunc) DialFunc {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := dial(ctx, network, address)
		if err != nil || !g.hold {
			return c, err
		}
		tc := &trackedConn{Conn: c, g: g}
		g.mu.Lock()
		g.conns[tc] = g.epoch
		g.mu.Unlock()
		return tc, nil
	}
}

type trackedConn struct {
	net.Conn
	g *gate
}

func (c *trackedConn) Close() error {
	c.g.mu.Lock()
	delete(c.g.conns, c)
	c.g.mu.Unlock()
	return c.Conn.Close()
}
