package upstream

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/bulkhead-router/bulkhead/record"
)

// Recording into the request's record (package record), for the access
// log and the tracer. Only requests that carry a record pay for it.

// breakerAsSent names the endpoint's breaker as an attempt is sent.
func breakerAsSent(admitted, probe bool) string {
	switch {
	case !admitted:
		return "open" // no other endpoint was available: sent anyway
	case probe:
		return "half-open"
	}
	return "closed"
}

// startRecord records an attempt to endpoint about to go out as req.
func startRecord(rec *record.Request, req *http.Request, endpoint string, admitted, probe bool) *record.Attempt {
	a := rec.AddAttempt(endpoint, breakerAsSent(admitted, probe), time.Now())
	if rec.Tracer != nil {
		rec.Tracer.StartAttempt(req, a)
	}
	return a
}

// endRecord records the attempt's outcome.
func endRecord(rec *record.Request, a *record.Attempt, ctx context.Context, resp *http.Response, err error) {
	a.Duration = time.Since(a.Start)
	if err == nil {
		a.Status = resp.StatusCode
	} else {
		a.Error = attemptError(ctx, err)
	}
	if rec.Tracer != nil {
		rec.Tracer.EndAttempt(a)
	}
}

// stopped records why a failed request was not retried.
func stopped(rec *record.Request, why record.StopReason) {
	if rec != nil {
		rec.Stop = why
	}
}

// attemptError classifies an attempt that got no answer.
func attemptError(ctx context.Context, err error) record.AttemptError {
	switch {
	case errors.Is(err, errConnectTimeout):
		return record.ErrConnectTimeout
	case errors.Is(err, errResponseHeaderTimeout):
		return record.ErrHeaderTimeout
	case ctx.Err() == context.Canceled:
		return record.ErrCanceled
	case ctx.Err() == context.DeadlineExceeded:
		return record.ErrTimeout
	case isTLSFailure(err):
		return record.ErrTLS
	case neverSent(err):
		if isDial(err) {
			return record.ErrConnect
		}
		return record.ErrRefused
	case isReset(err):
		return record.ErrReset
	}
	return record.ErrOther
}

// isDial recognises a failed connect (refused, unreachable).
func isDial(err error) bool {
	// skipper's dialer wraps dial errors in *proxy.proxyError (no Unwrap)
	// exposing DialError().
	var de interface{ DialError() bool }
	if errors.As(err, &de) && de.DialError() {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}
