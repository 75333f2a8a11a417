package record

import (
	"context"
	"net/http"
	"time"
)

// Request is the record of one client request.
type Request struct {
	// Start is when the router began serving the request.
	Start time.Time
	// RouteID is the id of the route that matched and chose a backend
	// (skipper's route id); empty when no route with a backend matched:
	// no route (404), a redirect, an answer of the router's own.
	RouteID string
	// Backend is the backend key the route named ("namespace/service:port"
	// for Kubernetes Services).
	Backend string
	// Attempts are the attempts toward pods, in order.
	Attempts []Attempt
	// BreakerSkips counts endpoints passed over because their breaker was
	// open (or a half-open probe was in flight) when the attempt was due.
	BreakerSkips int
	// Stop says why no further attempt was made after the last one; empty
	// when the last attempt succeeded or needed no retry.
	Stop StopReason
	// Tracer, when not nil, is told of each attempt (see AttemptTracer).
	Tracer AttemptTracer
	// TraceID is the request's W3C trace id (32 lowercase hex digits) when
	// the tracer gave it one; the access log prints it.
	TraceID string

	attempts [4]Attempt // Attempts' first storage: no allocation for up to four
}

// Attempt is one attempt toward a pod.
type Attempt struct {
	// Endpoint is the pod's address, ip:port.
	Endpoint string
	// Start is when the attempt began; Duration runs from there to the
	// pod's response headers, or to the attempt's failure.
	Start    time.Time
	Duration time.Duration
	// Status is the pod's HTTP status; 0 when no answer came (see Error).
	Status int
	// Error classifies an attempt without an answer; empty with a Status.
	Error AttemptError
	// Breaker is the endpoint's breaker as the attempt was sent:
	// "closed", "half-open" (this attempt is the probe) or "open" (no
	// other endpoint was available, so it was sent anyway).
	Breaker string
}

// AttemptError classifies an attempt that got no answer.
type AttemptError string

const (
	ErrConnect        AttemptError = "connect"         // connection refused or unreachable
	ErrConnectTimeout AttemptError = "connect-timeout" // the route's connect timeout
	ErrHeaderTimeout  AttemptError = "header-timeout"  // the route's response header timeout
	ErrTLS            AttemptError = "tls"             // TLS handshake with the pod failed
	ErrReset          AttemptError = "reset"           // the pod closed or reset the connection
	ErrRefused        AttemptError = "refused"         // HTTP/2: REFUSED_STREAM or GOAWAY before the stream began
	ErrCanceled       AttemptError = "canceled"        // the client went away
	ErrTimeout        AttemptError = "timeout"         // the route's request timeout
	ErrOther          AttemptError = "error"           // anything else
)

// StopReason says why a failed attempt was not retried.
type StopReason string

const (
	StopNotRetryable StopReason = "not-retryable" // the method or the body forbids another attempt
	StopMaxRetries   StopReason = "max-retries"   // the retries per request were used up
	StopNoEndpoint   StopReason = "no-endpoint"   // no other endpoint to try
	StopDeadline     StopReason = "deadline"      // another attempt would not fit the request's or the retry deadline
	StopBudget       StopReason = "budget"        // the backend's retry budget was spent
	StopClientGone   StopReason = "client-gone"   // the client went away while waiting to retry
)

// AttemptTracer is told of each attempt of a traced request.
type AttemptTracer interface {
	// StartAttempt is called just before the attempt goes out as out; it
	// may set headers on out (the attempt span's traceparent). a is the
	// attempt's record, filled in until EndAttempt.
	StartAttempt(out *http.Request, a *Attempt)
	// EndAttempt is called once a's outcome is recorded.
	EndAttempt(a *Attempt)
}

// AddAttempt appends an attempt to endpoint starting now and returns it,
// to be completed by the caller.
func (r *Request) AddAttempt(endpoint, breaker string, now time.Time) *Attempt {
	if r.Attempts == nil {
		r.Attempts = r.attempts[:0]
	}
	r.Attempts = append(r.Attempts, Attempt{Endpoint: endpoint, Start: now, Breaker: breaker})
	return &r.Attempts[len(r.Attempts)-1]
}

// Retries is the number of attempts after the first.
func (r *Request) Retries() int { return max(len(r.Attempts)-1, 0) }

// HeaderTime is the time from Start to the response headers of the last
// attempt, or 0 when it got none.
func (r *Request) HeaderTime() time.Duration {
	if len(r.Attempts) == 0 {
		return 0
	}
	a := &r.Attempts[len(r.Attempts)-1]
	if a.Status == 0 {
		return 0
	}
	return a.Start.Add(a.Duration).Sub(r.Start)
}

// Reset empties r for reuse (a pool of records), keeping its storage.
func (r *Request) Reset() {
	*r = Request{}
}

type key struct{}

// FromContext returns the record in ctx, or nil.
func FromContext(ctx context.Context) *Request {
	r, _ := ctx.Value(key{}).(*Request)
	return r
}

// NewContext returns ctx carrying r.
func NewContext(ctx context.Context, r *Request) context.Context {
	return context.WithValue(ctx, key{}, r)
}

// Ensure returns req's record and req, giving req a new record started at
// now when it has none (the access log and the tracer both call it; the
// outer one creates the record).
func Ensure(req *http.Request, now time.Time) (*Request, *http.Request) {
	if r := FromContext(req.Context()); r != nil {
		return r, req
	}
	r := &Request{Start: now}
	return r, req.WithContext(NewContext(req.Context(), r))
}
