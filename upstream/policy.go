package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/zalando/skipper/filters"

	"github.com/bulkhead-router/bulkhead/record"
)

const (
	// PolicyFilterName is the skipper filter that carries a route's own
	// upstream settings, each argument one "key=value" string, e.g.
	// `bulkheadUpstream("response-header-timeout=5s", "retry-non-idempotent=true")`.
	// Keys: see the Policy fields. A route without it uses the defaults of
	// Config. The route source (bulkhead's Ingress annotations) emits it.
	PolicyFilterName = "bulkheadUpstream"
)

// Policy keys, as used in PolicyFilterName's arguments.
const (
	KeyConnectTimeout        = "connect-timeout"
	KeyResponseHeaderTimeout = "response-header-timeout"
	KeyRequestTimeout        = "request-timeout"
	KeyRetryNonIdempotent    = "retry-non-idempotent"
	KeySlowStart             = "slow-start"
)

// Limits of the values a Policy accepts.
const (
	MaxConnectTimeout = time.Minute
	MaxTimeout        = 24 * time.Hour
	MaxSlowStart      = time.Hour
)

// Policy is the per-route part of the upstream configuration. A field
// whose Set flag is false takes Config's default.
type Policy struct {
	// ConnectTimeout bounds establishing a connection to an endpoint
	// (TCP, and TLS for https endpoints). A connect timeout is retried on
	// another endpoint for any method: the request never left.
	ConnectTimeout    time.Duration
	ConnectTimeoutSet bool
	// ResponseHeaderTimeout bounds each attempt from its start (connect
	// and sending the request included) to the response headers. 0: no
	// limit (long polling). A timeout is retried elsewhere for idempotent
	// (or opted-in) methods.
	ResponseHeaderTimeout    time.Duration
	ResponseHeaderTimeoutSet bool
	// RequestTimeout bounds the whole exchange, every attempt and the
	// response body included. 0: no limit (streams, downloads).
	RequestTimeout    time.Duration
	RequestTimeoutSet bool
	// RetryNonIdempotent allows retrying POST, PATCH and other
	// non-idempotent methods on 502/503/504 answers, resets and response
	// header timeouts: only for backends whose writes are idempotent.
	RetryNonIdempotent bool
	// SlowStart ramps a new endpoint's share of traffic up linearly over
	// this duration (from 10%). 0: off.
	SlowStart    time.Duration
	SlowStartSet bool
}

// ParsePolicy parses PolicyFilterName's arguments. Errors name the
// argument and what is wanted.
func ParsePolicy(args []string) (Policy, error) {
	var p Policy
	seen := map[string]bool{}
	for _, a := range args {
		key, val, ok := strings.Cut(a, "=")
		if !ok {
			return p, fmt.Errorf("argument %q: want key=value", a)
		}
		if seen[key] {
			return p, fmt.Errorf("argument %q: %s given twice", a, key)
		}
		seen[key] = true
		var err error
		switch key {
		case KeyConnectTimeout:
			p.ConnectTimeout, err = parseDuration(val, time.Nanosecond, MaxConnectTimeout)
			p.ConnectTimeoutSet = true
		case KeyResponseHeaderTimeout:
			p.ResponseHeaderTimeout, err = parseDuration(val, 0, MaxTimeout)
			p.ResponseHeaderTimeoutSet = true
		case KeyRequestTimeout:
			p.RequestTimeout, err = parseDuration(val, 0, MaxTimeout)
			p.RequestTimeoutSet = true
		case KeySlowStart:
			p.SlowStart, err = parseDuration(val, 0, MaxSlowStart)
			p.SlowStartSet = true
		case KeyRetryNonIdempotent:
			switch val {
			case "true":
				p.RetryNonIdempotent = true
			case "false":
			default:
				err = errors.New("want true or false")
			}
		default:
			return p, fmt.Errorf("argument %q: unknown key %q", a, key)
		}
		if err != nil {
			return p, fmt.Errorf("%s %q: %w", key, val, err)
		}
	}
	return p, nil
}

// parseDuration parses a policy duration: Go syntax ("500ms", "30s",
// "2m"), or "0" where min is 0, within [min, max].
func parseDuration(s string, min, max time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("want a duration such as 500ms, 30s or 2m")
	}
	if d < min || d > max {
		if min > 0 {
			return 0, fmt.Errorf("want a duration above 0 and at most %s", max)
		}
		return 0, fmt.Errorf("want a duration from 0 (no limit) to %s", max)
	}
	return d, nil
}

// Args renders p as PolicyFilterName's arguments, in a fixed order (the
// inverse of ParsePolicy; unset fields are left out).
func (p Policy) Args() []string {
	var out []string
	if p.ConnectTimeoutSet {
		out = append(out, KeyConnectTimeout+"="+p.ConnectTimeout.String())
	}
	if p.ResponseHeaderTimeoutSet {
		out = append(out, KeyResponseHeaderTimeout+"="+p.ResponseHeaderTimeout.String())
	}
	if p.RequestTimeoutSet {
		out = append(out, KeyRequestTimeout+"="+p.RequestTimeout.String())
	}
	if p.RetryNonIdempotent {
		out = append(out, KeyRetryNonIdempotent+"=true")
	}
	if p.SlowStartSet {
		out = append(out, KeySlowStart+"="+p.SlowStart.String())
	}
	return out
}

// effective fills the unset fields from the defaults.
func (p Policy) effective(d Policy) Policy {
	if !p.ConnectTimeoutSet {
		p.ConnectTimeout = d.ConnectTimeout
	}
	if !p.ResponseHeaderTimeoutSet {
		p.ResponseHeaderTimeout = d.ResponseHeaderTimeout
	}
	if !p.RequestTimeoutSet {
		p.RequestTimeout = d.RequestTimeout
	}
	if !p.SlowStartSet {
		p.SlowStart = d.SlowStart
	}
	p.ConnectTimeoutSet, p.ResponseHeaderTimeoutSet, p.RequestTimeoutSet, p.SlowStartSet = true, true, true, true
	return p
}

// policies interns the effective policies of the routes, keyed by their
// canonical argument string, so that routes with the same annotations
// share one *Policy. Entries are few (one per distinct annotation set) and
// never removed.
type policies struct {
	defaults *Policy
	m        sync.Map // canonical args -> *Policy
	log      *slog.Logger
	unwired  sync.Once
}

func (ps *policies) intern(p Policy) *Policy {
	key := strings.Join(p.Args(), ",")
	if v, ok := ps.m.Load(key); ok {
		return v.(*Policy)
	}
	e := p.effective(*ps.defaults)
	v, _ := ps.m.LoadOrStore(key, &e)
	return v.(*Policy)
}

// policySlot carries a request's route policy, and the backend and
// endpoint the bulkheadBackend filter chose, from the route's filters to
// the round tripper, inside the process: Upstream.Handler puts an empty
// slot into the request context, the filters of the matched route fill
// it, the round tripper reads it. skipper derives the outgoing request's
// context from the incoming one on every path, and nothing of it is ever
// written to the wire, so neither a client nor a pod can see or set a
// policy or a backend. The slot is itself the context (one allocation,
// not two).
type policySlot struct {
	context.Context
	pol *Policy
	be  *backend       // nil: no bulkheadBackend filter ran
	ep  *breaker       // the endpoint be's filter chose
	via *backendFilter // the filter that chose: the protocol toward the pods
	// The client's request and response writer, as Handler saw them: the
	// round tripper reads the request's te header and trailers (skipper
	// forwards neither) and writes the pod's response trailers as
	// http.TrailerPrefix headers (skipper drops them).
	in *http.Request
	w  http.ResponseWriter
	// rec is the request's record (package record) when an access log or
	// a tracer reads it, else nil: nothing is recorded.
	rec *record.Request
}

type policyKey struct{}

// Value implements context.Context: the slot under policyKey.
func (s *policySlot) Value(key any) any {
	if _, ok := key.(policyKey); ok {
		return s
	}
	return s.Context.Value(key)
}

// requestPolicy is the policy the route's filter left in ctx, else the
// default policy.
func (ps *policies) requestPolicy(ctx context.Context) *Policy {
	if s, ok := ctx.Value(policyKey{}).(*policySlot); ok && s.pol != nil {
		return s.pol
	}
	return ps.defaults
}

type policySpec struct{ ps *policies }

type policyFilter struct {
	pol *Policy
	ps  *policies
}

func (s policySpec) Name() string { return PolicyFilterName }

func (s policySpec) CreateFilter(args []any) (filters.Filter, error) {
	strs := make([]string, 0, len(args))
	for _, a := range args {
		str, ok := a.(string)
		if !ok {
			return nil, fmt.Errorf("%s: every argument must be a \"key=value\" string: %w", PolicyFilterName, filters.ErrInvalidFilterParameters)
		}
		strs = append(strs, str)
	}
	p, err := ParsePolicy(strs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", PolicyFilterName, err)
	}
	return policyFilter{pol: s.ps.intern(p), ps: s.ps}, nil
}

// Request leaves the route's policy in the request's slot. It touches no
// header: on every path (plain, upgrade) the pod receives nothing of it.
func (f policyFilter) Request(ctx filters.FilterContext) {
	if s, ok := ctx.Request().Context().Value(policyKey{}).(*policySlot); ok {
		s.pol = f.pol
		return
	}
	f.ps.unwired.Do(func() {
		f.ps.log.Error("route policies are not applied: the serving handler is not wrapped with upstream.Upstream.Handler", "filter", PolicyFilterName)
	})
}

func (policyFilter) Response(filters.FilterContext) {}
