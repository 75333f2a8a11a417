package upstream

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zalando/skipper/filters"
)

// BackendFilterName is the skipper filter that names a route's backend,
// e.g. `bulkheadBackend("up/web:80")` or
// `bulkheadBackend("up/web:80", "roundRobin")`, on a route ending in
// `<dynamic>`. Per request it chooses one of the backend's current
// endpoints (see SetEndpoints) and makes it skipper's dynamic target. The
// first argument is the backend's key, opaque to this package; the
// others, optional, are the algorithm (AlgorithmLeastInFlight, the
// default, or AlgorithmRoundRobin), the protocol toward the pods
// ("protocol=h2c", "protocol=tls"; HTTP/1.1 without one) and, for TLS,
// the name their certificates are checked against ("server-name=NAME"),
// e.g. `bulkheadBackend("up/rpc:443", "protocol=tls",
// "server-name=rpc.up.svc")`. A route's PolicyFilterName filter, when it
// has one, must come before it.
const BackendFilterName = "bulkheadBackend"

// endpointSet is one generation of a backend's endpoints. It is never
// modified: SetEndpoints swaps in a new one.
type endpointSet struct {
	state []*breaker // sorted by endpoint ("ip:port"); each holds its endpoint boxed for the state bag
}

func (s *endpointSet) index(ep string) int {
	for i, br := range s.state {
		if br.endpoint == ep {
			return i
		}
	}
	return -1
}

// backend is the live state of one SetEndpoints key: its current endpoint
// set, its retry budget and its metric series. It lives from the update
// that adds it to the one that removes it; requests that chose it before
// keep using it (and its last set) until they end.
type backend struct {
	key string
	stats
	set atomic.Pointer[endpointSet]
}

// stats is what a backend counts: its retry budget and its metric series
// (labelled by Config.Label).
type stats struct {
	label   string
	metrics *metrics
	budget  atomic.Pointer[budget]        // made on the first request: see retryBudget
	series  atomic.Pointer[backendSeries] // made on the first request: see counters
	mirror  atomic.Pointer[mirrorSeries]  // made on the first mirrored request: see mirrorCounters
	grpc    atomic.Pointer[grpcSeries]    // made on the first gRPC answer: see grpcResponse
}

// backendSeries are a backend's metric series.
type backendSeries struct {
	requests  prometheus.Counter
	failures  prometheus.Counter
	retries   prometheus.Counter
	exhausted prometheus.Counter
	timedOut  [3]prometheus.Counter // connect, response-header, request
}

func newStats(m *metrics, label string) stats {
	return stats{label: label, metrics: m}
}

// retryBudget returns the backend's retry budget, making it on first use
// (with u's configuration and clock): like the metric series, a budget
// for every backend of the cluster, most of which never get a request
// through this router, was about 320 bytes each (3 MB at 10,000).
func (s *stats) retryBudget(u *Upstream) *budget {
	if b := s.budget.Load(); b != nil {
		return b
	}
	b := newBudget(u.cfg.Budget, u.now)
	if !s.budget.CompareAndSwap(nil, b) {
		return s.budget.Load()
	}
	return b
}

// counters returns the backend's series, making them on first use: the
// router knows every backend in the cluster and most never get a request
// through this router; series for all would cost memory and every scrape.
func (s *stats) counters() *backendSeries {
	if c := s.series.Load(); c != nil {
		return c
	}
	m, label := s.metrics, s.label
	c := &backendSeries{
		requests:  m.requests.WithLabelValues(label),
		failures:  m.failures.WithLabelValues(label),
		retries:   m.retries.WithLabelValues(label),
		exhausted: m.exhausted.WithLabelValues(label),
		timedOut: [3]prometheus.Counter{
			m.timeouts.WithLabelValues(label, timeoutConnect),
			m.timeouts.WithLabelValues(label, timeoutResponseHeader),
			m.timeouts.WithLabelValues(label, timeoutRequest),
		},
	}
	if !s.series.CompareAndSwap(nil, c) {
		return s.series.Load()
	}
	return c
}

func (s *stats) timeouts(kind string) prometheus.Counter {
	c := s.counters()
	switch kind {
	case timeoutConnect:
		return c.timedOut[0]
	case timeoutResponseHeader:
		return c.timedOut[1]
	}
	return c.timedOut[2]
}

// next chooses the endpoint for a retry in the backend's current set,
// never current when another exists. Preference: untried+available,
// tried+available, untried+unavailable, tried+unavailable, current (only
// when it is the sole endpoint); random among equals. With onlyAvailable
// it returns nil rather than an unavailable endpoint (and never current).
func (be *backend) next(b *Breakers, current string, tried []string, onlyAvailable bool) *breaker {
	eps := be.set.Load().state
	n := len(eps)
	if n == 0 {
		return nil
	}
	start := rand.IntN(n)
	var best *breaker
	bestRank := 4
	for i := 0; i < n; i++ {
		br := eps[(start+i)%n]
		if br.endpoint == current {
			continue
		}
		rank := 0
		if contains(tried, br.endpoint) {
			rank++
		}
		if !b.available(br) {
			if onlyAvailable {
				continue
			}
			rank += 2
		}
		if rank < bestRank {
			best, bestRank = br, rank
			if rank == 0 {
				break
			}
		}
	}
	if best == nil && !onlyAvailable && n == 1 && eps[0].endpoint == current {
		return eps[0] // the only endpoint: retry it rather than nothing
	}
	return best
}

// SetEndpoints replaces the endpoint lists of the backends named in
// update ("ip:port" strings, IPv6 in brackets): a nil list removes the
// backend, an empty one leaves it without endpoints (its routes answer
// 503); backends not in update are untouched. Routes are not rebuilt:
// the next request of a route naming the backend uses the new list.
//
// It is meant to be called from one goroutine (it serialises callers
// anyway) and is safe against concurrent requests: each backend's set is
// swapped atomically, and the key map is copied only when a backend is
// added or removed. Endpoint state (breaker, in-flight count, slow-start
// age) is kept per "ip:port" across sets and backends; the state of an
// endpoint that left every backend is dropped one update later, since
// requests balanced on the previous set may still be on their way to it.
// Endpoints that join after the first call are new for slow start.
func (u *Upstream) SetEndpoints(update map[string][]string) {
	u.mu.Lock()
	defer u.mu.Unlock()

	old := *u.backends.Load()
	var grown map[string]*backend // the copy, once a backend comes or goes
	mutable := func() map[string]*backend {
		if grown == nil {
			grown = make(map[string]*backend, len(old)+1)
			for k, v := range old {
				grown[k] = v
			}
		}
		return grown
	}
	var left map[*breaker]struct{} // endpoints some backend dropped in this update
	for key, list := range update {
		be := old[key]
		if list == nil {
			if be == nil {
				continue
			}
			delete(mutable(), key)
			left = u.release(be.set.Load(), left)
			if u.labels[be.label]--; u.labels[be.label] == 0 {
				delete(u.labels, be.label)
				u.metrics.deleteBackend(be.label)
			}
			continue
		}
		set := u.newSet(list)
		if be == nil {
			label := u.cfg.Label(key)
			u.labels[label]++
			be = &backend{key: key, stats: newStats(u.metrics, label)}
			be.set.Store(&endpointSet{})
			mutable()[key] = be
		}
		prev := be.set.Load()
		for _, br := range set.state {
			br.refs++
		}
		be.set.Store(set)
		left = u.release(prev, left)
	}
	if grown != nil {
		u.backends.Store(&grown)
	}
	u.seeded = true

	// One generation of grace: drop the state of the endpoints that left
	// in the previous update and are still in no backend.
	for br := range u.departed {
		if _, again := left[br]; br.refs == 0 && !again {
			u.breakers.drop(br.endpoint, br)
		}
	}
	clear(u.departed)
	for br := range left {
		if br.refs == 0 {
			if u.departed == nil {
				u.departed = map[*breaker]struct{}{}
			}
			u.departed[br] = struct{}{}
		}
	}
}

// release drops the references of prev's endpoints (those of the set
// replacing it having been taken already) and adds to left the endpoints
// no backend lists any more.
func (u *Upstream) release(prev *endpointSet, left map[*breaker]struct{}) map[*breaker]struct{} {
	for _, br := range prev.state {
		if br.refs--; br.refs <= 0 {
			br.refs = 0
			if left == nil {
				left = map[*breaker]struct{}{}
			}
			left[br] = struct{}{}
		}
	}
	return left
}

// newSet builds an endpoint set from a list, sorted and without
// duplicates whatever the caller gave.
func (u *Upstream) newSet(list []string) *endpointSet {
	eps := slices.Clone(list)
	slices.Sort(eps)
	eps = slices.Compact(eps)
	eps = slices.DeleteFunc(eps, func(ep string) bool { return ep == "" })
	s := &endpointSet{state: make([]*breaker, len(eps))}
	for i, ep := range eps {
		s.state[i] = u.breakers.getOrAdd(ep, u.seeded)
	}
	return s
}

// Backends returns the endpoints of every backend, by key (a copy, for
// operator views; not for the request path).
func (u *Upstream) Backends() map[string][]string {
	m := *u.backends.Load()
	out := make(map[string][]string, len(m))
	for k, be := range m {
		s := be.set.Load()
		eps := make([]string, len(s.state))
		for i, br := range s.state {
			eps[i] = br.endpoint
		}
		out[k] = eps
	}
	return out
}

type backendSpec struct{ u *Upstream }

func (backendSpec) Name() string { return BackendFilterName }

// CreateFilter implements filters.Spec.
func (s backendSpec) CreateFilter(args []any) (filters.Filter, error) {
	if len(args) < 1 || len(args) > 4 {
		return nil, fmt.Errorf("%s: want the backend key, then optionally the algorithm (%q or %q), %q or %q, and %q: got %d arguments: %w",
			BackendFilterName, AlgorithmLeastInFlight, AlgorithmRoundRobin, "protocol=h2c", "protocol=tls", "server-name=NAME", len(args), filters.ErrInvalidFilterParameters)
	}
	key, ok := args[0].(string)
	if !ok || strings.TrimSpace(key) == "" {
		return nil, fmt.Errorf("%s: the backend key must be a non-empty string, got %v: %w", BackendFilterName, args[0], filters.ErrInvalidFilterParameters)
	}
	f := &backendFilter{u: s.u, key: key, leastInFlight: true, scheme: schemeHTTP}
	seen := map[string]bool{}
	for _, a := range args[1:] {
		v, _ := a.(string)
		name, value, keyed := strings.Cut(v, "=")
		if !keyed {
			name = "algorithm"
		}
		if seen[name] {
			return nil, fmt.Errorf("%s: %s given twice: %w", BackendFilterName, name, filters.ErrInvalidFilterParameters)
		}
		seen[name] = true
		switch name {
		case "algorithm":
			switch v {
			case AlgorithmLeastInFlight:
			case AlgorithmRoundRobin:
				f.leastInFlight = false
			default:
				return nil, fmt.Errorf("%s: unknown algorithm %v: want %q or %q: %w", BackendFilterName, a,
					AlgorithmLeastInFlight, AlgorithmRoundRobin, filters.ErrInvalidFilterParameters)
			}
		case "protocol":
			switch value {
			case ProtocolHTTP1:
			case ProtocolH2C:
				f.protocol, f.scheme = protoH2C, schemeH2C
			case ProtocolTLS:
				f.protocol, f.scheme = protoTLS, schemeHTTPS
			default:
				return nil, fmt.Errorf("%s: unknown protocol %q: want %q, %q or %q: %w", BackendFilterName, value,
					ProtocolHTTP1, ProtocolH2C, ProtocolTLS, filters.ErrInvalidFilterParameters)
			}
		case "server-name":
			if value == "" {
				return nil, fmt.Errorf("%s: empty server-name: %w", BackendFilterName, filters.ErrInvalidFilterParameters)
			}
			f.serverName = value
		default:
			return nil, fmt.Errorf("%s: unknown argument %q: %w", BackendFilterName, v, filters.ErrInvalidFilterParameters)
		}
	}
	if f.serverName != "" && f.protocol != protoTLS {
		return nil, fmt.Errorf("%s: server-name is for protocol=tls only: %w", BackendFilterName, filters.ErrInvalidFilterParameters)
	}
	f.rr.Store(rand.Uint64())
	return f, nil
}

// backendFilter is one route's BackendFilterName filter. It lives as long
// as the route, which endpoint changes no longer rebuild: its round-robin
// counter lives here. The protocol toward the pods is the route's (the
// Service port's), so it travels with the chosen backend in the request's
// slot to the round tripper.
type backendFilter struct {
	u             *Upstream
	key           string
	leastInFlight bool
	protocol      protocol
	scheme        any    // skipper's dynamic scheme for protocol, boxed once
	serverName    string // protocol=tls: the name the pod's certificate must carry
	rr            atomic.Uint64
}

// The state bag values, boxed once. skipper sends "h2c" through its
// cleartext HTTP/2 transport and everything else through its HTTP
// transport, where the round tripper takes "https" over (see tlsTransport).
var (
	schemeHTTP  any = "http"
	schemeH2C   any = "h2c"
	schemeHTTPS any = "https"
)

// unavailableBody is exactly what skipper answers on its own errors, which
// the proxy package recognises and replaces with its generic answer.
const unavailableBody = "Service Unavailable\n"

var unavailableLength = []string{strconv.Itoa(len(unavailableBody))}

// Request chooses the endpoint and makes it skipper's dynamic target; with
// none (an unknown backend, or one without endpoints) it answers 503.
func (f *backendFilter) Request(ctx filters.FilterContext) {
	slot, _ := ctx.Request().Context().Value(policyKey{}).(*policySlot)
	if slot != nil && slot.rec != nil {
		slot.rec.RouteID, slot.rec.Backend = ctx.RouteId(), f.key
	}
	be := (*f.u.backends.Load())[f.key]
	var set *endpointSet
	if be != nil {
		set = be.set.Load()
	}
	if set == nil || len(set.state) == 0 {
		ctx.Serve(&http.Response{
			StatusCode: http.StatusServiceUnavailable,
			Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"},
				"Content-Length": unavailableLength},
			ContentLength: int64(len(unavailableBody)),
			Body:          io.NopCloser(strings.NewReader(unavailableBody)),
		})
		return
	}
	var pol *Policy
	if slot != nil {
		pol = slot.pol
	}
	if pol == nil {
		pol = f.u.policies.defaults
	}
	i := choose(f.u.breakers, set.state, f.leastInFlight, int64(pol.SlowStart), &f.rr, f.u.breakers.now)
	bag := ctx.StateBag()
	bag[filters.DynamicBackendHostKey] = set.state[i].host
	bag[filters.DynamicBackendSchemeKey] = f.scheme
	if slot != nil {
		slot.be, slot.ep, slot.via = be, set.state[i], f
		return
	}
	f.u.unwired.Do(func() {
		f.u.log.Error("backend requests get no retries, timeouts nor breaker accounting: the serving handler is not wrapped with upstream.Upstream.Handler",
			"filter", BackendFilterName)
	})
}

// Response implements filters.Filter.
func (*backendFilter) Response(filters.FilterContext) {}
