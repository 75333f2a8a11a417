package upstream

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// Outcome is the result of one attempt against one endpoint, as the
// breaker sees it.
type Outcome int

const (
	// Success: any answer other than 502/503/504 (4xx included: the pod
	// is alive and answering).
	Success Outcome = iota
	// Failure: connect error, reset, timeout, or a 502/503/504 answer.
	Failure
	// Ignored: the attempt says nothing about the endpoint (the client
	// went away). It counts neither way: the consecutive-failure count
	// stands (a pod that hangs longer than clients wait still trips once
	// some of them wait long enough), and a cancelled half-open probe
	// frees its slot for the next probe without closing or reopening the
	// breaker (gobreaker's exclusions).
	Ignored
)

// The errors gobreaker is told an attempt's outcome with: nil is success,
// errIgnored is excluded (IsExcluded), anything else a failure.
var (
	errFailure = errors.New("upstream attempt failed")
	errIgnored = errors.New("upstream attempt cancelled by the client")
)

func isIgnored(err error) bool { return err == errIgnored }

// BreakerConfig configures every per-endpoint breaker.
type BreakerConfig struct {
	// ConsecutiveFailures opens the breaker. Default 5.
	ConsecutiveFailures uint32
	// OpenFor is the cool-down before a single probe is let through.
	// Default 10s: longer than an EndpointSlice change takes to reach
	// SetEndpoints, so an endpoint of a terminating pod normally stays
	// ejected until it leaves its backend, while an overloaded-but-alive
	// pod costs at most one probe (itself retried elsewhere) per 10s.
	OpenFor time.Duration
}

func (c *BreakerConfig) defaults() {
	if c.ConsecutiveFailures == 0 {
		c.ConsecutiveFailures = 5
	}
	if c.OpenFor <= 0 {
		c.OpenFor = 10 * time.Second
	}
}

// Breakers is a registry of circuit breakers keyed by endpoint "ip:port".
// It is independent of route tables and of backends: the breaker of a
// backend's endpoint lives until the endpoint has been out of every
// backend for one SetEndpoints update. Lookups are lock-free (sync.Map,
// read-mostly); each breaker only takes its own mutex inside gobreaker.
type Breakers struct {
	cfg     BreakerConfig
	m       sync.Map // string -> *breaker
	metrics *metrics
	log     *slog.Logger
	now     func() time.Time
	// notClosed counts breakers that are open or half-open: while it is
	// 0, load balancing skips looking at breakers at all.
	notClosed atomic.Int32
}

// breaker is everything the router keeps per endpoint: its circuit
// breaker, its in-flight attempts, when it was first seen and its metric
// series.
type breaker struct {
	endpoint string
	// host is endpoint as the state bag's value (skipper's dynamic
	// target), boxed once for the life of the breaker rather than in every
	// endpoint set.
	host any
	// added is when the endpoint joined a backend (unix nanos), 0 for
	// endpoints of the first SetEndpoints call: slow start measures from
	// it.
	added    int64
	inflight atomic.Int64 // attempts on the wire, until response headers
	// refs counts the backends that list the endpoint (guarded by
	// Upstream.mu): in the padding of the struct, where a map of every
	// endpoint of the cluster cost about 1 MB at 30,000.
	refs   int32
	owner  *Breakers
	series atomic.Pointer[endpointSeries]                            // made on the first attempt: see counters
	cb     atomic.Pointer[gobreaker.TwoStepCircuitBreaker[struct{}]] // made on the first attempt: see circuit
	// mirror of the gobreaker state for the lock-free read path.
	state     atomic.Int32
	openUntil atomic.Int64 // unix nanos; meaningful while state is open
	probing   atomic.Bool  // the single half-open probe is in flight

	mu     sync.Mutex // guards isOpen/pruned (gauge bookkeeping; rare)
	isOpen bool
	pruned bool
}

// endpointSeries are an endpoint's metric series.
type endpointSeries struct {
	requests, failures prometheus.Counter
}

// counters returns the endpoint's series, making them on first use: the
// router knows every endpoint of every backend in the cluster, most never
// get a request through this router, and a series for each would cost
// memory and every scrape (at 30,000 endpoints, most of both).
func (br *breaker) counters() *endpointSeries {
	if s := br.series.Load(); s != nil {
		return s
	}
	s := &endpointSeries{
		requests: br.owner.metrics.endpointRequests.WithLabelValues(br.endpoint),
		failures: br.owner.metrics.endpointFailures.WithLabelValues(br.endpoint),
	}
	if !br.series.CompareAndSwap(nil, s) {
		return br.series.Load()
	}
	return s
}

func newBreakers(cfg BreakerConfig, m *metrics, log *slog.Logger) *Breakers {
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Breakers{cfg: cfg, metrics: m, log: log, now: time.Now}
}

// get returns the endpoint's state, creating it (not new for slow start)
// if needed.
func (b *Breakers) get(endpoint string) *breaker {
	return b.getOrAdd(endpoint, false)
}

// getOrAdd returns the endpoint's state, creating it if needed; a state
// created with fresh set counts as new for slow start.
func (b *Breakers) getOrAdd(endpoint string, fresh bool) *breaker {
	if v, ok := b.m.Load(endpoint); ok {
		return v.(*breaker)
	}
	br := &breaker{endpoint: endpoint, host: endpoint, owner: b}
	if fresh {
		br.added = b.now().UnixNano()
	}
	if v, loaded := b.m.LoadOrStore(endpoint, br); loaded {
		return v.(*breaker)
	}
	return br
}

// circuit returns the endpoint's gobreaker, making it on the first
// attempt: a gobreaker (with its counts and two closures) was about 350
// bytes, 10 MB for the 30,000 endpoints of 10,000 backends, most of which
// never get a request through this router. Until it is made the breaker
// is closed with no counts, which is what a new gobreaker says. Two
// first attempts at once may both make one; only the one stored is used.
func (br *breaker) circuit() *gobreaker.TwoStepCircuitBreaker[struct{}] {
	if cb := br.cb.Load(); cb != nil {
		return cb
	}
	b := br.owner
	threshold := b.cfg.ConsecutiveFailures
	cb := gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        br.endpoint,
		MaxRequests: 1, // half-open: exactly one probe
		Timeout:     b.cfg.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= threshold },
		IsExcluded:  isIgnored,
		// Called under the breaker's own mutex: only touch atomics,
		// metrics and the log here.
		OnStateChange: func(_ string, from, to gobreaker.State) { b.onStateChange(br, from, to) },
	})
	if !br.cb.CompareAndSwap(nil, cb) {
		return br.cb.Load()
	}
	return cb
}

func (b *Breakers) onStateChange(br *breaker, from, to gobreaker.State) {
	if to == gobreaker.StateOpen {
		br.openUntil.Store(b.now().Add(b.cfg.OpenFor).UnixNano())
	}
	br.state.Store(int32(to))
	br.mu.Lock()
	if !br.pruned {
		switch {
		case from == gobreaker.StateClosed:
			b.notClosed.Add(1)
		case to == gobreaker.StateClosed:
			b.notClosed.Add(-1)
		}
	}
	if !br.pruned {
		switch {
		case to == gobreaker.StateOpen && !br.isOpen:
			br.isOpen = true
			b.metrics.open.Inc()
		case to != gobreaker.StateOpen && br.isOpen:
			br.isOpen = false
			b.metrics.open.Dec()
		}
		b.metrics.stateChanges.WithLabelValues(br.endpoint, to.String()).Inc()
	}
	br.mu.Unlock()
	b.log.Info("upstream breaker state change", "endpoint", br.endpoint, "from", from.String(), "to", to.String())
}

// Allow asks the endpoint's breaker whether an attempt may proceed. When
// ok, done must be called exactly once with the attempt's outcome.
// ok is false while the breaker is open, or half-open with its probe
// already in flight.
func (b *Breakers) Allow(endpoint string) (done func(Outcome), ok bool) {
	t, ok := b.get(endpoint).admit()
	if !ok {
		return nil, false
	}
	return t.done, true
}

// ticket is an admitted attempt: done records its outcome, once. A value,
// so that the retry loop admits attempts without allocating a closure.
type ticket struct {
	br     *breaker
	record func(error) // gobreaker's
	probe  bool
}

func (br *breaker) admit() (ticket, bool) {
	d, err := br.circuit().Allow()
	if err != nil {
		return ticket{}, false
	}
	probe := gobreaker.State(br.state.Load()) == gobreaker.StateHalfOpen
	if probe {
		br.probing.Store(true)
	}
	return ticket{br: br, record: d, probe: probe}, true
}

func (t ticket) done(o Outcome) {
	if t.probe {
		t.br.probing.Store(false)
	}
	switch o {
	case Success:
		t.record(nil)
	case Failure:
		t.record(errFailure)
	default:
		t.record(errIgnored)
	}
}

// Record is Allow+done in one step, for callers that only observe.
// It is a no-op when the breaker refuses attempts.
func (b *Breakers) Record(endpoint string, o Outcome) {
	if done, ok := b.Allow(endpoint); ok {
		done(o)
	}
}

// State returns the endpoint's breaker state (closed if unknown).
func (b *Breakers) State(endpoint string) gobreaker.State {
	v, ok := b.m.Load(endpoint)
	if !ok {
		return gobreaker.StateClosed
	}
	if cb := v.(*breaker).cb.Load(); cb != nil {
		return cb.State()
	}
	return gobreaker.StateClosed
}

// Available is the lock-free read used on every load-balancing decision:
// false while the breaker is open, or half-open with its probe in flight.
// It never creates a breaker.
func (b *Breakers) Available(endpoint string) bool {
	v, ok := b.m.Load(endpoint)
	if !ok {
		return true
	}
	return b.available(v.(*breaker))
}

func (b *Breakers) available(br *breaker) bool {
	switch gobreaker.State(br.state.Load()) {
	case gobreaker.StateClosed:
		return true
	case gobreaker.StateHalfOpen:
		return !br.probing.Load()
	default: // open
		if b.now().UnixNano() < br.openUntil.Load() {
			return false
		}
		// cool-down over: let gobreaker move to half-open (lazy in gobreaker).
		return br.circuit().State() == gobreaker.StateHalfOpen && !br.probing.Load()
	}
}

// drop drops one endpoint's breaker, if it is still the endpoint's,
// together with its metric series.
func (b *Breakers) drop(ep string, br *breaker) {
	if !b.m.CompareAndDelete(ep, br) {
		return
	}
	br.mu.Lock()
	br.pruned = true
	if gobreaker.State(br.state.Load()) != gobreaker.StateClosed {
		b.notClosed.Add(-1)
	}
	if br.isOpen {
		br.isOpen = false
		b.metrics.open.Dec()
	}
	br.mu.Unlock()
	for _, s := range []gobreaker.State{gobreaker.StateClosed, gobreaker.StateHalfOpen, gobreaker.StateOpen} {
		b.metrics.stateChanges.DeleteLabelValues(ep, s.String())
	}
	b.metrics.endpointRequests.DeleteLabelValues(ep)
	b.metrics.endpointFailures.DeleteLabelValues(ep)
}

// Len is the number of endpoints with a breaker.
func (b *Breakers) Len() int {
	n := 0
	b.m.Range(func(_, _ any) bool { n++; return true })
	return n
}

// EndpointState is what the operator view shows of one endpoint's breaker.
type EndpointState struct {
	State               string `json:"breaker"` // closed, half-open or open
	InFlight            int64  `json:"inFlight"`
	Requests            uint32 `json:"requests"`
	Failures            uint32 `json:"failures"`
	ConsecutiveFailures uint32 `json:"consecutiveFailures"`
}

// Snapshot reads an endpoint's breaker without creating one. The counts
// are those since the breaker last changed state ("recent").
func (b *Breakers) Snapshot(endpoint string) EndpointState {
	v, ok := b.m.Load(endpoint)
	if !ok {
		return EndpointState{State: gobreaker.StateClosed.String()}
	}
	br := v.(*breaker)
	cb := br.cb.Load()
	if cb == nil {
		return EndpointState{State: gobreaker.StateClosed.String(), InFlight: br.inflight.Load()}
	}
	c := cb.Counts()
	return EndpointState{State: cb.State().String(), InFlight: br.inflight.Load(), Requests: c.Requests, Failures: c.TotalFailures, ConsecutiveFailures: c.ConsecutiveFailures}
}
