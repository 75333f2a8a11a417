package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
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
	errConnectTimeout        = &timeoutError{"upstream connect timeout"}
	errResponseHeaderTimeout = &timeoutError{"upstream response header timeout"}
	errRequestTimeout        = &timeoutError{"upstream request timeout"}
)

// attemptState travels in an attempt's context: the dialer reads the
// connect timeout from it, and a fired timeout leaves its cause there.
// It is itself the attempt's context (the cancelable one, plus this
// value): one allocation instead of a separate context.WithValue.
type attemptState struct {
	context.Context
	connect time.Duration
	// serverName is what a TLS backend's certificate is checked against
	// (the route's server-name), read by the TLS dial.
	serverName string
	cancel     context.CancelCauseFunc
	fired      atomic.Bool
}

type attemptKey struct{}

// Value implements context.Context: the state under attemptKey.
func (s *attemptState) Value(key any) any {
	if _, ok := key.(attemptKey); ok {
		return s
	}
	return s.Context.Value(key)
}

// fire is the response header timer's end.
func (s *attemptState) fire() {
	s.fired.Store(true)
	s.cancel(errResponseHeaderTimeout)
}

// wrapDial bounds connecting with the connect timeout of the attempt that
// asked for the connection. It costs nothing on a reused connection.
func wrapDial(dial func(context.Context, string, string) (net.Conn, error)) func(context.Context, string, string) (net.Conn, error) {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		s, ok := ctx.Value(attemptKey{}).(*attemptState)
		if !ok || s.connect <= 0 {
			return dial(ctx, network, addr)
		}
		ctx, cancel := context.WithTimeoutCause(ctx, s.connect, errConnectTimeout)
		defer cancel()
		c, err := dial(ctx, network, addr)
		if err != nil && context.Cause(ctx) == errConnectTimeout {
			return nil, &net.OpError{Op: "dial", Net: network, Addr: nil, Err: errConnectTimeout}
		}
		return c, err
	}
}

// isConnectTimeout recognises wrapDial's error through skipper's and
// net/http's wrapping.
func isConnectTimeout(err error) bool {
	return errors.Is(err, errConnectTimeout)
}

// attempt sends req to target under its timeouts: connect (in the
// dialer, see wrapDial) and response header (0: none), which runs from
// the start of the attempt to the response headers. (A timer per attempt, not
// httptrace hooks: composing those with skipper's own costs a dozen
// allocations per request.) The attempt counts as in flight on the
// endpoint until the headers arrive or it fails.
func (r *retrier) attempt(req *http.Request, rt http.RoundTripper, serverName, target string, body *attemptBody, br *breaker, connect, header time.Duration, sc *stats) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	st := &attemptState{Context: ctx, connect: connect, cancel: cancel, serverName: serverName}
	a := newAttempt(st, req, target, body)
	var timer *time.Timer
	if header > 0 {
		timer = time.AfterFunc(header, st.fire)
	}

	br.counters().requests.Inc()
	br.inflight.Add(1)
	resp, err := rt.RoundTrip(a)
	br.inflight.Add(-1)
	if timer != nil {
		timer.Stop()
	}

	if st.fired.Load() {
		if resp != nil { // headers won the race, but the body is cancelled
			resp.Body.Close()
			resp = nil
		}
		err = errResponseHeaderTimeout
		sc.timeouts(timeoutResponseHeader).Inc()
	} else if err != nil && isConnectTimeout(err) {
		err = errConnectTimeout
		sc.timeouts(timeoutConnect).Inc()
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
