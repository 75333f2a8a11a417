package upstream

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zalando/skipper/filters"
	"github.com/zalando/skipper/routing"
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
	// Label names endpoint groups in metrics. Default: smallest route ID.
	Label LabelFunc
}

// Upstream holds the state shared by the route post-processor, the LB
// wrapper and the retrying round tripper. Create one per process.
type Upstream struct {
	cfg      Config
	metrics  *metrics
	breakers *Breakers
	topo     atomic.Pointer[topology]
	pp       *postProcessor
	optIn    string // secret value of OptInHeader
	now      func() time.Time
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
	if cfg.Label == nil {
		cfg.Label = defaultLabel
	}
	cfg.Breaker.defaults()
	cfg.Budget.defaults()
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	var secret [16]byte
	_, _ = rand.Read(secret[:]) // never fails (crypto/rand contract)
	u := &Upstream{cfg: cfg, metrics: m, optIn: hex.EncodeToString(secret[:]), now: time.Now}
	u.breakers = newBreakers(cfg.Breaker, m, log)
	u.pp = &postProcessor{u: u}
	u.topo.Store(&topology{})
	return u, nil
}

// Breakers returns the breaker registry.
func (u *Upstream) Breakers() *Breakers { return u.breakers }

// PostProcessor returns the routing.PostProcessor to append after
// loadbalancer.NewAlgorithmProvider() in routing.Options.PostProcessors.
func (u *Upstream) PostProcessor() routing.PostProcessor { return u.pp }

// WrapRoundTripper is meant for proxy.Params.CustomHttpRoundTripperWrap.
func (u *Upstream) WrapRoundTripper(next http.RoundTripper) http.RoundTripper {
	return &retrier{u: u, next: next}
}

// OptInSpec returns the filter spec of OptInFilterName; register it with
// the filter registry.
func (u *Upstream) OptInSpec() filters.Spec { return optInSpec{value: u.optIn} }
