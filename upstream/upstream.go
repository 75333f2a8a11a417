package upstream

import (
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zalando/skipper/filters"
	"github.com/zalando/skipper/routing"

	"github.com/bulkhead-router/bulkhead/record"
)

// Config configures an Upstream. Zero values take the documented defaults.
type Config struct {
	Breaker BreakerConfig
	Budget  BudgetConfig
	// MaxRetries per client request. Default 2; negative disables retries.
	MaxRetries int
	// MaxBufferedBody is the largest request body kept for replay.
	// Default 64 KiB. Larger or streamed bodies are never replayed.
	MaxBufferedBody int64
	// Backoff between attempts: jittered exponential from
	// InitialBackoff (default 10ms) capped at MaxBackoff (default 50ms).
	InitialBackoff, MaxBackoff time.Duration
	// Label names a backend (its SetEndpoints key) in metrics. It must
	// have low cardinality; backends given the same label share its
	// series. Default: the key itself.
	Label func(backendKey string) string
	// Defaults is the policy of routes that do not set their own (see
	// Policy and PolicyFilterName). Unset fields take DefaultPolicy's.
	Defaults Policy
	// RetryDeadline bounds a request that is retried, from its first
	// attempt: a retry is started only if a whole attempt (its response
	// header timeout; without one, its connect timeout, the attempt then
	// being cut at the deadline) still fits before it. Default 55s, below
	// an ALB's default 60s idle timeout, so that 30s response header
	// timeouts never chain to 90s of work nobody receives. Negative: none
	// (the request timeout, if any, still applies).
	RetryDeadline time.Duration
	// RefuseUnrouted: an outgoing request for which no bulkhead backend
	// chose the endpoint (the bulkheadBackend filter) is never sent; it is answered 502 and counted
	// (MetricUnroutedRefused). With skipper's dynamic backend, a request
	// no filter gave a target would otherwise go to whatever host the
	// client's Host header names.
	RefuseUnrouted bool
	// Mirror tunes the MirrorFilterName filter.
	Mirror MirrorConfig
	// TLS is how pods of TLS backends (protocol=tls) are trusted.
	TLS TLSConfig
}

// DefaultRetryDeadline is Config.RetryDeadline's default.
const DefaultRetryDeadline = 55 * time.Second

// DefaultPolicy holds the built-in defaults:
//
//   - connect timeout 1s: a pod on the cluster network connects in well
//     under a millisecond; a second means it is gone (no RST from a dead
//     node) and another endpoint should be tried;
//   - response header timeout 30s: long enough for slow but working
//     endpoints, and short enough that the router answers 504 before an
//     ALB's default 60s idle timeout cuts the client off (a retry after
//     such a timeout would not fit the 55s retry deadline, so none is
//     started);
//   - no whole-request timeout: it would also cut streamed responses,
//     downloads and long polls; the response header timeout already bounds
//     a pod that never answers;
//   - no slow start.
var DefaultPolicy = Policy{
	ConnectTimeout: time.Second, ConnectTimeoutSet: true,
	ResponseHeaderTimeout: 30 * time.Second, ResponseHeaderTimeoutSet: true,
	RequestTimeout: 0, RequestTimeoutSet: true,
	SlowStart: 0, SlowStartSet: true,
}

// Upstream holds the state shared by the bulkheadBackend filter and the
// retrying round tripper. Create one per process.
type Upstream struct {
	cfg      Config
	metrics  *metrics
	breakers *Breakers
	policies *policies
	now      func() time.Time
	log      *slog.Logger

	// backends maps SetEndpoints keys to backends. The map is immutable:
	// SetEndpoints replaces it when a backend comes or goes, and swaps
	// only the endpoint set of a backend that stays.
	backends atomic.Pointer[map[string]*backend]

	// mu serialises SetEndpoints and guards what follows.
	mu sync.Mutex
	// departed holds the endpoints that left every backend in the last
	// update: their state is kept one more update (requests balanced on
	// the previous set may still be on their way to them).
	departed map[*breaker]struct{}
	// labels counts the backends per metric label.
	labels map[string]int
	// seeded: SetEndpoints was called once; endpoints joining from now on
	// are new (slow start).
	seeded  bool
	unwired sync.Once

	// mirror is the mirror filters' pool and client, made by MirrorSpec.
	mirrorOnce sync.Once
	mirror     *mirrors
}

// New builds an Upstream registering its metrics on reg (nil: none).
func New(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Upstream, error) {
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 2
	} else if cfg.MaxRetries < 0 {
		cfg.MaxRetries = 0
	}
	if cfg.MaxBufferedBody <= 0 {
		cfg.MaxBufferedBody = 64 << 10
	}
	if cfg.InitialBackoff <= 0 {
		cfg.InitialBackoff = 10 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.InitialBackoff {
		cfg.MaxBackoff = max(50*time.Millisecond, cfg.InitialBackoff)
	}
	if cfg.RetryDeadline == 0 {
		cfg.RetryDeadline = DefaultRetryDeadline
	}
	if cfg.Label == nil {
		cfg.Label = func(key string) string { return key }
	}
	cfg.Breaker.defaults()
	cfg.Budget.defaults()
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	defaults := cfg.Defaults.effective(DefaultPolicy)
	defaults.RetryNonIdempotent = false // never a global default
	u := &Upstream{cfg: cfg, metrics: m, now: time.Now, log: log,
		policies: &policies{defaults: &defaults, log: log},
		labels:   map[string]int{}}
	u.breakers = newBreakers(cfg.Breaker, m, log)
	u.backends.Store(&map[string]*backend{})
	return u, nil
}

// Breakers returns the breaker registry.
func (u *Upstream) Breakers() *Breakers { return u.breakers }

// PostProcessor returns a routing.PostProcessor (for
// routing.Options.PostProcessors, in any position) that drops every
// dynamic route without the BackendFilterName filter: skipper would send
// its requests wherever the client's Host header says. RefuseUnrouted
// stops plain requests in the round tripper, but upgrades bypass the
// round tripper: this is their only guard.
func (u *Upstream) PostProcessor() routing.PostProcessor { return unchosenGuard{log: u.log} }

// BackendSpec returns the spec of the BackendFilterName filter; register
// it with the filter registry.
func (u *Upstream) BackendSpec() filters.Spec { return backendSpec{u: u} }

// WrapRoundTripper is meant for proxy.Params.CustomHttpRoundTripperWrap.
// When next is an *http.Transport (skipper's), its dialer is wrapped to
// apply per-route connect timeouts.
func (u *Upstream) WrapRoundTripper(next http.RoundTripper) http.RoundTripper {
	if tr, ok := next.(*http.Transport); ok {
		tr.DialContext = wrapDial(tr.DialContext)
		if tr.ResponseHeaderTimeout < 0 {
			// The response header timeout is the round tripper's, per
			// route. Negative means none to HTTP/1 but fires at once on
			// HTTP/2 (skipper is given -1 so as not to set its own).
			tr.ResponseHeaderTimeout = 0
		}
		if tr.Protocols != nil && tr.Protocols.UnencryptedHTTP2() {
			h2Health(tr) // skipper's h2c transport
		}
	}
	return &retrier{u: u, next: next}
}

// PolicySpec returns the spec of the PolicyFilterName filter; register it
// with the filter registry. Its policies take effect only for requests
// served through Handler.
func (u *Upstream) PolicySpec() filters.Spec { return policySpec{ps: u.policies} }

// Handler wraps the serving handler (skipper's proxy): it gives every
// request the context slot through which the route's PolicyFilterName
// filter hands its policy to the round tripper. Without it, every route
// gets the default policy (and an error is logged once).
func (u *Upstream) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slot := &policySlot{Context: r.Context(), w: w, rec: record.FromContext(r.Context())}
		r = r.WithContext(slot)
		slot.in = r
		next.ServeHTTP(w, r)
	})
}

// DefaultPolicy returns the effective policy of routes without their own.
func (u *Upstream) DefaultPolicy() Policy { return *u.policies.defaults }
