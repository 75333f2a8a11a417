package upstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zalando/skipper/filters"
)

// MirrorFilterName is the skipper filter that sends a copy of a route's
// requests to another backend, e.g. `bulkheadMirror("up/shadow:80", 0.1)`
// (Gateway API's RequestMirror): the backend's key, as bulkheadBackend
// takes it, and the fraction of requests to mirror, from 0 to 1 (default
// 1). Place it after the filters whose changes the copy should carry and
// before the route's BackendFilterName.
//
// The copy has the method, path and query of the request as the filter
// sees it, its headers without the hop-by-hop ones, and the Host the
// client sent. It goes to any endpoint of the mirror backend, directly
// (not through the round tripper: no retries, breakers nor policy), from
// a goroutine of a bounded pool, under a timeout; its answer is read and
// discarded. The client's request never waits for it and never fails
// because of it: when the pool is full the copy is dropped. A body is
// mirrored when its length is known and at most MirrorConfig.MaxBody: it
// is read before the request goes on and handed to both; a request with a
// larger or streamed body, an upgrade, or a mirror backend without
// endpoints is not mirrored (skipped). Every copy is counted in
// MetricMirrorRequests by the mirror backend's label and result.
const MirrorFilterName = "bulkheadMirror"

// MetricMirrorRequests counts mirrored requests by the mirror backend's
// label (group) and result: sent (the mirror answered, whatever its
// status), failed (no answer: connect error, reset, timeout), dropped (the
// pool was full), skipped (not mirrored: a large or streamed body, an
// upgrade, no endpoint).
const MetricMirrorRequests = "bulkhead_upstream_mirror_requests_total"

const (
	mirrorSent    = "sent"
	mirrorFailed  = "failed"
	mirrorDropped = "dropped"
	mirrorSkipped = "skipped"
)

// MirrorConfig tunes the mirror filter. Zero values take the defaults.
type MirrorConfig struct {
	// MaxInFlight bounds the copies in flight; a copy beyond it is
	// dropped. Default 64.
	MaxInFlight int
	// Timeout bounds a copy, its answer's body included. Default 5s.
	Timeout time.Duration
	// MaxBody is the largest request body mirrored; default
	// Config.MaxBufferedBody (64 KiB).
	MaxBody int64
}

// mirrorSeries are the mirror counters of one backend label.
type mirrorSeries struct {
	sent, failed, dropped, skipped prometheus.Counter
}

// mirrors is the state the mirror filters of an Upstream share: their
// pool and their client.
type mirrors struct {
	u       *Upstream
	slots   chan struct{}
	timeout time.Duration
	maxBody int64
	client  *http.Client
}

// MirrorSpec returns the spec of the MirrorFilterName filter; register it
// with the filter registry.
func (u *Upstream) MirrorSpec() filters.Spec {
	u.mirrorOnce.Do(func() {
		c := u.cfg.Mirror
		if c.MaxInFlight <= 0 {
			c.MaxInFlight = 64
		}
		if c.Timeout <= 0 {
			c.Timeout = 5 * time.Second
		}
		if c.MaxBody <= 0 {
			c.MaxBody = u.cfg.MaxBufferedBody
		}
		tr := &http.Transport{
			Proxy:               nil, // a pod address, never through a proxy
			DialContext:         (&net.Dialer{Timeout: DefaultPolicy.ConnectTimeout}).DialContext,
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     30 * time.Second,
		}
		u.mirror = &mirrors{u: u, slots: make(chan struct{}, c.MaxInFlight), timeout: c.Timeout, maxBody: c.MaxBody,
			client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			}}}
	})
	return mirrorSpec{m: u.mirror}
}

type mirrorSpec struct{ m *mirrors }

func (mirrorSpec) Name() string { return MirrorFilterName }

func (s mirrorSpec) CreateFilter(args []any) (filters.Filter, error) {
	if len(args) < 1 || len(args) > 2 {
		return nil, fmt.Errorf("%s: want the backend key and optionally the fraction, got %d arguments: %w",
			MirrorFilterName, len(args), filters.ErrInvalidFilterParameters)
	}
	key, ok := args[0].(string)
	if !ok || strings.TrimSpace(key) == "" {
		return nil, fmt.Errorf("%s: the backend key must be a non-empty string, got %v: %w", MirrorFilterName, args[0], filters.ErrInvalidFilterParameters)
	}
	f := &mirrorFilter{m: s.m, key: key, fraction: 1}
	if len(args) == 2 {
		v, ok := args[1].(float64)
		if !ok || !(v >= 0 && v <= 1) {
			return nil, fmt.Errorf("%s: the fraction must be a number from 0 to 1, got %v: %w", MirrorFilterName, args[1], filters.ErrInvalidFilterParameters)
		}
		f.fraction = v
	}
	return f, nil
}

type mirrorFilter struct {
	m        *mirrors
	key      string
	fraction float64
}

// mirrorCopy is what the copy is made of, taken from the request before
// it goes on.
type mirrorCopy struct {
	method, url, host string
	header            http.Header
	body              []byte
	series            *mirrorSeries
}

func (f *mirrorFilter) Request(ctx filters.FilterContext) {
	if f.fraction < 1 && (f.fraction <= 0 || rand.Float64() >= f.fraction) {
		return
	}
	m := f.m
	r := ctx.Request()
	be := (*m.u.backends.Load())[f.key]
	if be == nil {
		// A route naming a backend the upstream layer was not given (yet):
		// rare, so the series is looked up every time rather than kept.
		m.u.metrics.mirrored.WithLabelValues(m.u.cfg.Label(f.key), mirrorSkipped).Inc()
		return
	}
	ms := be.mirrorCounters()
	var set *endpointSet
	if set = be.set.Load(); set == nil || len(set.state) == 0 || isUpgrade(r.Header) ||
		r.ContentLength < 0 || r.ContentLength > m.maxBody {
		ms.skipped.Inc()
		return
	}
	select {
	case m.slots <- struct{}{}:
	default:
		ms.dropped.Inc()
		return
	}
	c := &mirrorCopy{method: r.Method, host: r.Host, series: ms}
	if r.ContentLength > 0 && r.Body != nil && r.Body != http.NoBody {
		body, err := readBody(r, r.ContentLength)
		if err != nil {
			<-m.slots
			ms.skipped.Inc()
			return
		}
		c.body = body
	}
	ep := set.state[m.pick(set)].endpoint
	u := *r.URL
	u.Scheme, u.Host, u.User, u.Fragment, u.RawFragment = "http", ep, nil, "", ""
	c.url = u.String()
	c.header = r.Header.Clone()
	removeHopByHop(c.header)
	go m.send(c)
}

func (*mirrorFilter) Response(filters.FilterContext) {}

// pick chooses an endpoint of set: a random one whose breaker lets
// traffic through, else any.
func (m *mirrors) pick(set *endpointSet) int {
	n := len(set.state)
	start := rand.IntN(n)
	for i := 0; i < n; i++ {
		if j := (start + i) % n; m.u.breakers.available(set.state[j]) {
			return j
		}
	}
	return start
}

// send sends the copy and frees its slot.
func (m *mirrors) send(c *mirrorCopy) {
	defer func() { <-m.slots }()
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, c.url, body)
	if err != nil {
		c.series.failed.Inc()
		return
	}
	req.Header, req.Host = c.header, c.host
	resp, err := m.client.Do(req)
	if err != nil {
		c.series.failed.Inc()
		return
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		c.series.failed.Inc()
		return
	}
	c.series.sent.Inc()
}

// readBody reads the request's body of length n and gives the request a
// body replaying it (closing the original). On an error the request gets
// what was read followed by that error, so the main request fails as it
// would have.
func readBody(r *http.Request, n int64) ([]byte, error) {
	orig := r.Body
	buf := make([]byte, n)
	k, err := io.ReadFull(orig, buf)
	if err != nil {
		r.Body = readCloser{io.MultiReader(bytes.NewReader(buf[:k]), bodyError{err}), orig}
		return nil, err
	}
	r.Body = readCloser{bytes.NewReader(buf), orig}
	return buf, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

type bodyError struct{ err error }

func (e bodyError) Read([]byte) (int, error) { return 0, e.err }

// hopByHop are the headers of one connection (RFC 9110 7.6.1), not sent
// on with the copy.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		delete(h, name)
	}
}

func isUpgrade(h http.Header) bool {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(name), "upgrade") {
				return true
			}
		}
	}
	return false
}

// mirrorCounters returns the backend's mirror series, made on first use
// (see counters).
func (s *stats) mirrorCounters() *mirrorSeries {
	if c := s.mirror.Load(); c != nil {
		return c
	}
	c := newMirrorSeries(s.metrics, s.label)
	if !s.mirror.CompareAndSwap(nil, c) {
		return s.mirror.Load()
	}
	return c
}

func newMirrorSeries(m *metrics, label string) *mirrorSeries {
	return &mirrorSeries{
		sent:    m.mirrored.WithLabelValues(label, mirrorSent),
		failed:  m.mirrored.WithLabelValues(label, mirrorFailed),
		dropped: m.mirrored.WithLabelValues(label, mirrorDropped),
		skipped: m.mirrored.WithLabelValues(label, mirrorSkipped),
	}
}
