package dataclient

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"path"
	"strings"
	"sync"
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
// Connections from before the outage are closed then, and a watch stream
// ends as a clean end (io.EOF) however it ends, so the reflector
// re-watches from where it was rather than relisting.
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
	epoch    uint64 // bumped when the gate closes: connections of older epochs are closed on reopening
	conns    map[*trackedConn]uint64
	seen     map[string]bool // resources listed or watched so far
	// mustRelist are the resources whose watches may not resume: the
	// cluster behind the address changed, so a resourceVersion of ours
	// means nothing there. Their resumes are answered 410 Gone here, and
	// their next list reads the current state (no resourceVersion).
	mustRelist map[string]bool
}

func newGate(hold bool, spread time.Duration, m *metrics, onDown func(error)) *gate {
	g := &gate{hold: hold, spread: spread, metrics: m, onDown: onDown, up: true, opened: make(chan struct{}),
		conns: map[*trackedConn]uint64{}, seen: map[string]bool{}, mustRelist: map[string]bool{}}
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
// relistDelay. Connections from before the gate closed are closed, so
// nothing waits on a connection that died silently. With forget, the
// cluster behind the address is another one (or its store was replaced):
// every resource relists, none resumes. It returns whether the gate was
// closed.
func (g *gate) open(relistDelay time.Duration, forget bool) bool {
	if !g.hold {
		return false
	}
	g.mu.Lock()
	if g.up {
		g.mu.Unlock()
		return false
	}
	g.up = true
	if forget {
		for r := range g.seen {
			g.mustRelist[r] = true
		}
	}
	g.relistAt = time.Now().Add(relistDelay)
	var conns []*trackedConn
	for c, e := range g.conns {
		if e < g.epoch {
			conns = append(conns, c)
			delete(g.conns, c)
		}
	}
	close(g.opened)
	g.mu.Unlock()
	// Closing a connection ends the watch streams on it, as a clean end
	// (cutBody), after the HTTP/2 transport has taken the connection out
	// of its pool: the watches then start again on a new connection. (Ending
	// a stream first could let its re-watch onto the old connection, which
	// would then die under it within the second client-go calls a very
	// short watch, and relist.)
	for _, c := range conns {
		c.Conn.Close()
	}
	return true
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
func (g *gate) wait(ctx context.Context, relist bool) error {
	for {
		g.mu.Lock()
		up, opened, at := g.up, g.opened, g.relistAt
		g.mu.Unlock()
		if !up {
			select {
			case <-opened:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if d := time.Until(at); relist && d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
			continue // the gate may have closed meanwhile
		}
		return nil
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
		err := t.g.wait(req.Context(), relist)
		if err != nil {
			return nil, err
		}
		if t.g.hold {
			var gone bool
			if req, gone = t.g.forgotten(req, resource, relist); gone {
				return goneResponse(req), nil
			}
		}
		switch {
		case isDiscovery(req.URL.Path):
			// Asking which API groups are served (the Gateway API's
			// discovery) lists no objects: neither a relist nor a resume.
		case relist:
			t.g.metrics.relists.WithLabelValues(resource).Inc()
		default:
			t.g.metrics.resumes.WithLabelValues(resource).Inc()
		}
		resp, err := t.next.RoundTrip(req)
		if err == nil {
			if watching && t.g.hold {
				resp.Body = cutBody{resp.Body}
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

// isDiscovery reports whether a path is API discovery ("/api",
// "/api/v1", "/apis", "/apis/<group>", "/apis/<group>/<version>") rather
// than a request for objects of a resource.
func isDiscovery(p string) bool {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	switch parts[0] {
	case "api":
		return len(parts) <= 2
	case "apis":
		return len(parts) <= 3
	}
	return false
}

// forgotten applies mustRelist to a request: a resume is to be answered
// 410 Gone; a list reads the current state instead of one "not older than"
// a resourceVersion of the other cluster (which would wait for it, or
// be served from a point that has nothing to do with ours).
func (g *gate) forgotten(req *http.Request, resource string, relist bool) (*http.Request, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seen[resource] = true
	if !g.mustRelist[resource] {
		return req, false
	}
	if !relist {
		return req, true
	}
	delete(g.mustRelist, resource)
	q := req.URL.Query()
	if q.Get("resourceVersion") == "" {
		return req, false
	}
	q.Del("resourceVersion")
	if q.Get("sendInitialEvents") != "true" {
		q.Del("resourceVersionMatch") // a LIST may not name a match without a version
	}
	out := req.Clone(req.Context())
	out.URL.RawQuery = q.Encode()
	return out, false
}

// goneResponse is the API server's answer to a watch from a resourceVersion
// it no longer has: the reflector relists.
func goneResponse(req *http.Request) *http.Response {
	body := `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",` +
		`"message":"the cluster behind the API server's address changed: relist","reason":"Expired","code":410}`
	return &http.Response{
		Status: "410 Gone", StatusCode: http.StatusGone, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": []string{"application/json"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

func (g *gate) down(err error) {
	if g.close() {
		g.onDown(err)
	}
}

// cutBody is a watch stream whose end, however it ends, reads as a clean
// one.
type cutBody struct{ io.ReadCloser }

// Read ends the stream cleanly (io.EOF) however it ended: its connection
// closed by the gate, lost or reset. client-go reads any other error as a
// failed watch and relists everything; at a clean end it watches again
// from the last resourceVersion it saw, which is a resume (the server
// answers 410 Gone if it cannot).
func (b cutBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		return n, io.EOF
	}
	return n, nil
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
