package upstream

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// Timeout kinds, as in the metric's "kind" label.
const (
	timeoutConnect        = "connect"
	timeoutResponseHeader = "response-header"
	timeoutRequest        = "request"
)

// timeoutError is what an attempt cut by one of our timeouts returns. It
// is a net.Error with Timeout() true, which skipper answers with 504.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string   { return e.msg }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

var (
	errConnectTimeout = &timeoutError{"upstream connect timeout"}
	// errConnectTimeoutRaced: the connect timeout fired while the
	// connection was being handed over, so the request may have been
	// written: not provably unsent.
	errConnectTimeoutRaced   = &timeoutError{"upstream connect timeout"}
	errResponseHeaderTimeout = &timeoutError{"upstream response header timeout"}
	errRequestTimeout        = &timeoutError{"upstream request timeout"}
)

// Attempt phases, for attemptTimer.
const (
	phaseConnect int32 = iota // no connection yet: the connect timeout runs
	phaseWrite                // writing the request: no timeout (as net/http)
	phaseHeader               // awaiting response headers: that timeout runs
	phaseFired                // a timeout cancelled the attempt
	phaseDone                 // the round trip returned
)

// attemptTimer runs one timer through an attempt's phases, driven by
// httptrace: the connect timeout until a connection is in hand, the
// response header timeout once the request is written. (The transport's
// own timeouts cannot be set per route.)
type attemptTimer struct {
	cancel context.CancelCauseFunc
	timer  *time.Timer
	header time.Duration
	phase  atomic.Int32
	raced  atomic.Bool // the connect timeout fired as the connection came
	cause  atomic.Pointer[timeoutError]
}

func (t *attemptTimer) fire() {
	switch {
	case t.phase.CompareAndSwap(phaseConnect, phaseFired):
		t.cause.Store(errConnectTimeout)
		t.cancel(errConnectTimeout)
	case t.phase.CompareAndSwap(phaseHeader, phaseFired):
		t.cause.Store(errResponseHeaderTimeout)
		t.cancel(errResponseHeaderTimeout)
	}
}

func (t *attemptTimer) gotConn(httptrace.GotConnInfo) {
	if !t.phase.CompareAndSwap(phaseConnect, phaseWrite) {
		t.raced.Store(true)
		return
	}
	t.timer.Stop()
}

func (t *attemptTimer) wroteRequest(httptrace.WroteRequestInfo) {
	if t.header > 0 && t.phase.CompareAndSwap(phaseWrite, phaseHeader) {
		t.timer.Reset(t.header)
	}
}

// attempt sends a on its endpoint under the policy's connect and response
// header timeouts, counting it in flight on the endpoint until the
// response headers arrive (or it fails).
func (r *retrier) attempt(a *http.Request, br *breaker, pol *Policy, g *group) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(a.Context())
	t := &attemptTimer{cancel: cancel, header: pol.ResponseHeaderTimeout}
	t.timer = time.AfterFunc(pol.ConnectTimeout, t.fire)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: t.gotConn, WroteRequest: t.wroteRequest})
	a = a.WithContext(ctx)

	br.requests.Inc()
	br.inflight.Add(1)
	resp, err := r.next.RoundTrip(a)
	br.inflight.Add(-1)
	t.phase.Store(phaseDone)
	t.timer.Stop()

	if cause := t.cause.Load(); cause != nil {
		if resp != nil { // headers won the race, but the body is cancelled
			resp.Body.Close()
			resp = nil
		}
		err = cause
		if cause == errConnectTimeout && t.raced.Load() {
			err = errConnectTimeoutRaced
		}
		kind := timeoutResponseHeader
		if cause == errConnectTimeout {
			kind = timeoutConnect
		}
		g.timeouts(kind).Inc()
	}
	if err != nil {
		cancel(nil)
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose releases an attempt's context once its body is closed:
// the context must outlive the round trip, as the body is read through it.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel(nil)
	return err
}
