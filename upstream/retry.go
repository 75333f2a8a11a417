package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/bulkhead-router/bulkhead/record"
)

// retrier is the http.RoundTripper installed through
// proxy.Params.CustomHttpRoundTripperWrap. It serves the backend that the
// route's bulkheadBackend filter chose (in the request's slot). Other
// requests are refused (Config.RefuseUnrouted) or pass through untouched.
type retrier struct {
	u    *Upstream
	next http.RoundTripper
	// tls is the transport of TLS backends, made on first use from next
	// (see tlsTransport in protocol.go).
	tlsOnce sync.Once
	tls     *http.Transport
}

func (r *retrier) tlsTransport() http.RoundTripper {
	r.tlsOnce.Do(func() {
		base, _ := r.next.(*http.Transport)
		r.tls = tlsTransport(base, r.u.cfg.TLS)
	})
	return r.tls
}

func (r *retrier) RoundTrip(req *http.Request) (*http.Response, error) {
	var be *backend
	var first *breaker
	pol := r.u.policies.defaults
	slot, _ := req.Context().Value(policyKey{}).(*policySlot)
	if slot != nil {
		if slot.pol != nil {
			pol = slot.pol
		}
		be, first = slot.be, slot.ep
	}
	if be == nil {
		if r.u.cfg.RefuseUnrouted {
			return r.refuse(req)
		}
		return r.next.RoundTrip(req)
	}
	st := &be.stats
	st.counters().requests.Inc()
	st.retryBudget(r.u).request()
	var cancel context.CancelFunc
	if pol.RequestTimeout > 0 {
		var ctx context.Context
		ctx, cancel = context.WithTimeout(req.Context(), pol.RequestTimeout)
		req = req.WithContext(ctx)
	}
	if slot.in != nil {
		forwardTrailers(req, slot.in)
	}
	resp, err := r.roundTrip(req, be, first, pol, slot)
	if err != nil && errors.Is(req.Context().Err(), context.DeadlineExceeded) {
		st.timeouts(timeoutRequest).Inc()
		err = errRequestTimeout
	}
	resp, err = badGatewayOnHangUp(req, resp, err)
	if err != nil && req.Context().Err() == nil && isTLSFailure(err) {
		// A pod whose TLS handshake failed (an untrusted or misnamed
		// certificate, no common protocol) is a bad gateway, not the
		// 500 skipper makes of an error it does not know.
		resp, err = badGateway(req), nil
	}
	if cancel != nil {
		if err != nil {
			cancel()
		} else {
			// The deadline also covers the body: release it when skipper
			// is done with the body.
			resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: func(error) { cancel() }}
		}
	}
	return resp, err
}

// badGatewayBody is exactly what skipper answers on its own 502s, which
// the proxy package recognises and replaces with its generic answer.
const badGatewayBody = "Bad Gateway\n"

var badGatewayLength = []string{strconv.Itoa(len(badGatewayBody))}

// refuse answers a request no bulkhead backend chose an endpoint for,
// without sending it anywhere.
func (r *retrier) refuse(req *http.Request) (*http.Response, error) {
	r.u.metrics.unrouted.Inc()
	if req.Body != nil {
		req.Body.Close()
	}
	return badGateway(req), nil
}

// badGateway is a 502 in skipper's own shape, which the proxy package
// replaces with its generic answer.
func badGateway(req *http.Request) *http.Response {
	return &http.Response{
		Status:        "502 Bad Gateway",
		StatusCode:    http.StatusBadGateway,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "Content-Length": badGatewayLength},
		Body:          io.NopCloser(strings.NewReader(badGatewayBody)),
		ContentLength: int64(len(badGatewayBody)),
		Request:       req,
	}
}

// isTLSFailure recognises a failed TLS handshake with a pod.
func isTLSFailure(err error) bool {
	var rh tls.RecordHeaderError
	var ae tls.AlertError
	var cv *tls.CertificateVerificationError
	if errors.As(err, &rh) || errors.As(err, &ae) || errors.As(err, &cv) {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "tls: ") || strings.Contains(msg, "x509: ")
}

// badGatewayOnHangUp turns "the pod took the request and hung up" (EOF or
// reset after sending, not retried) into a 502 answer. skipper would map
// a bare EOF to 500 and a reset to 503, but it is the gateway's upstream
// that failed: 502 is what clients and load balancers expect. Errors
// skipper already maps well pass through: dial errors (502), timeouts
// (504), a client that went away (499).
func badGatewayOnHangUp(req *http.Request, resp *http.Response, err error) (*http.Response, error) {
	if err == nil || req.Context().Err() != nil || neverSent(err) || !isReset(err) {
		return resp, err
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return resp, err
	}
	const body = "bad gateway: the backend closed the connection without answering\n"
	return &http.Response{
		Status:        "502 Bad Gateway",
		StatusCode:    http.StatusBadGateway,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}, nil
}

// trailersOnly turns a gRPC trailers-only answer (one HEADERS frame
// holding the status, and the end of the stream) into headers and
// trailers: skipper writes and flushes the headers before the body, so the
// client would get the status in headers of a stream that ends without
// trailers, which gRPC clients reject. Everything but the content type
// is a trailer in such an answer.
func trailersOnly(resp *http.Response) {
	t := make(http.Header, len(resp.Header))
	for k, v := range resp.Header {
		if k != "Content-Type" {
			t[k] = v
			delete(resp.Header, k)
		}
	}
	resp.Trailer = t
}

// forwardTrailers gives the outgoing request what skipper leaves out of
// it: "te: trailers" (a hop-by-hop header skipper strips, which gRPC
// servers require on HTTP/2), and the client's request trailers (skipper
// builds the outgoing request from headers and body only). The trailer
// map is the client's: net/http fills it when the client's body ends,
// before the transport sends it on.
func forwardTrailers(req, in *http.Request) {
	if te := in.Header["Te"]; len(te) > 0 && hasToken(te, "trailers") {
		req.Header["Te"] = teTrailers
	}
	if len(in.Trailer) > 0 {
		req.Trailer = in.Trailer
	}
}

var teTrailers = []string{"trailers"}

func hasToken(values []string, token string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if name, _, _ := strings.Cut(part, ";"); strings.EqualFold(strings.TrimSpace(name), token) {
				return true
			}
		}
	}
	return false
}

// roundTrip sends req to first and retries within be's current set. be
// is concrete, not an interface, so that tried stays on the stack.
func (r *retrier) roundTrip(req *http.Request, be *backend, first *breaker, pol *Policy, slot *policySlot) (*http.Response, error) {
	body, err := r.bufferBody(req)
	if err != nil {
		return nil, err
	}
	rt, serverName := r.next, ""
	if via := slot.via; via != nil && via.protocol == protoTLS {
		rt, serverName = r.tlsTransport(), via.serverName
	}
	retryAfterSend := pol.RetryNonIdempotent || idempotent(req.Method)
	ctx := req.Context()
	b := r.u.breakers
	st := &be.stats

	var triedBuf [4]string
	tried := triedBuf[:0]
	var bo *backoff.ExponentialBackOff
	br := first
	retries := 0
	// The retry deadline counts from the first attempt, once a buffered
	// body has been read: from then on the client's connection is idle,
	// and an ALB gives up on it after its idle timeout.
	start := time.Now()
	headerBound := pol.ResponseHeaderTimeout
	body.take()
	var (
		resp     *http.Response
		tk       ticket
		admitted bool
		pending  bool // a gRPC answer whose status comes in its trailers
	)
	rec := slot.rec
	for {
		pending = false
		tk, admitted = br.admit()
		if !admitted {
			// Open (it opened since the endpoint was chosen) or a
			// half-open probe is in flight: go to an available endpoint if
			// there is one, otherwise send anyway (breakers steer, they
			// never fail a request on their own).
			if alt := be.next(b, br.endpoint, tried, true); alt != nil && alt.endpoint != br.endpoint && !contains(tried, alt.endpoint) {
				tried = append(tried, br.endpoint)
				br = alt
				if rec != nil {
					rec.BreakerSkips++
				}
				continue
			}
		}
		var ra *record.Attempt
		if rec != nil {
			ra = startRecord(rec, req, br.endpoint, admitted, tk.probe)
		}
		resp, err = r.attempt(req, rt, serverName, br.endpoint, &body, br, pol.ConnectTimeout, headerBound, st)
		if ra != nil {
			endRecord(rec, ra, ctx, resp, err)
		}
		outcome, notReached, afterSend := classify(ctx, resp, err)
		if err == nil && isGRPC(resp.Header) {
			// A trailers-only answer carries its status in its headers;
			// UNAVAILABLE there means the call was refused, not run.
			if code, ok := grpcStatus(resp.Header); ok {
				st.grpcResponse(code)
				if resp.StatusCode == http.StatusOK {
					outcome = grpcOutcome(code)
					notReached = code == grpcUnavailable
				}
			} else if resp.StatusCode == http.StatusOK {
				pending = true
			}
		}
		if pending && admitted && tk.probe {
			// A half-open probe is not held for a whole stream: the pod
			// answered, which closes the breaker.
			tk.done(Success)
			admitted = false
		} else if admitted && !pending {
			tk.done(outcome)
		}
		if outcome == Failure && !pending {
			st.counters().failures.Inc()
			br.counters().failures.Inc()
		}
		if retries >= r.u.cfg.MaxRetries || !body.replayable() || !(notReached || (afterSend && retryAfterSend)) {
			if rec != nil && (notReached || afterSend) {
				rec.Stop = record.StopNotRetryable
				if retries >= r.u.cfg.MaxRetries {
					rec.Stop = record.StopMaxRetries
				}
			}
			break
		}
		next := be.next(b, br.endpoint, tried, false)
		if next == nil {
			stopped(rec, record.StopNoEndpoint)
			break
		}
		if bo == nil {
			bo = &backoff.ExponentialBackOff{
				InitialInterval:     r.u.cfg.InitialBackoff,
				RandomizationFactor: 0.5,
				Multiplier:          2,
				MaxInterval:         r.u.cfg.MaxBackoff,
				Stop:                backoff.Stop,
				Clock:               backoff.SystemClock,
			}
			bo.Reset()
		}
		wait := bo.NextBackOff()
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
			stopped(rec, record.StopDeadline)
			break
		}
		if rd := r.u.cfg.RetryDeadline; rd > 0 {
			// Start a retry only if a whole attempt still fits before the
			// retry deadline: bounded by its response header timeout, or,
			// on routes without one, given its connect timeout and then
			// cut at the deadline.
			left := rd - time.Since(start) - wait
			need := pol.ResponseHeaderTimeout
			if need == 0 {
				need = pol.ConnectTimeout
				headerBound = left
			}
			if left < need {
				stopped(rec, record.StopDeadline)
				break
			}
		}
		if !st.retryBudget(r.u).withdraw() {
			st.counters().exhausted.Inc()
			stopped(rec, record.StopBudget)
			break
		}
		// The next attempt's body is taken now, while the answer in hand
		// can still be returned if it cannot be had.
		if !body.take() {
			stopped(rec, record.StopNotRetryable)
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			stopped(rec, record.StopClientGone)
			return resp, err
		case <-t.C:
		}
		if resp != nil {
			// A retried answer is discarded; only the final one is returned.
			_, _ = io.CopyN(io.Discard, resp.Body, 4<<10) // lets the connection be reused
			resp.Body.Close()
		}
		st.counters().retries.Inc()
		retries++
		tried = append(tried, br.endpoint)
		br = next
	}
	if err != nil {
		return resp, err
	}
	if !pending && resp.StatusCode == http.StatusOK && isGRPC(resp.Header) && len(resp.Header["Grpc-Status"]) > 0 {
		trailersOnly(resp)
	}
	if !(pending || resp.ProtoMajor == 2 || resp.Trailer != nil) {
		return resp, nil
	}
	if len(resp.Trailer) > 0 {
		// Announced trailers: an HTTP/2 pod may also give a length, but an
		// HTTP/1.1 client gets trailers only after a chunked body.
		delete(resp.Header, "Content-Length")
		resp.ContentLength = -1
	}
	// The answer may end in trailers, or in the gRPC status the breaker
	// waits for: follow its body (one allocation, only for HTTP/2 and
	// announced trailers).
	rb := &responseBody{ReadCloser: resp.Body, resp: resp, w: slot.w, req: req}
	if pending {
		rb.grpc, rb.ticket, rb.admitted, rb.br, rb.st = true, tk, admitted, br, st
		// A gRPC call is in flight on its endpoint until its status
		// arrives, not only until its headers: least in-flight then
		// sees the streams each pod is serving.
		br.inflight.Add(1)
	}
	resp.Body = rb
	return resp, nil
}

// attemptBody is a request's body as its attempts send it: nothing,
// a buffer replayed on every attempt, the client's body streamed once
// (large or unknown length: never replayed), or a streamBody (gRPC and
// requests with trailers: streamed at once, replayed within its limits).
type attemptBody struct {
	buf     []byte
	has     bool // buf is the body
	once    bool // the client's body as it comes, one attempt only
	sent    bool // once: the attempt was made
	stream  *streamBody
	current io.ReadCloser // stream: the body of the next attempt
	length  int64
}

// replayable says whether another attempt can send the body again.
func (b *attemptBody) replayable() bool {
	switch {
	case b.stream != nil:
		return b.stream.replayable()
	case b.once:
		return !b.sent
	}
	return true
}

// take readies the body of the next attempt; false when there is none.
func (b *attemptBody) take() bool {
	if b.stream == nil {
		return true
	}
	b.current, b.length = b.stream.next()
	return b.current != nil
}

// bufferBody reads a body of up to MaxBufferedBody so that it can be
// replayed. Larger and unknown-length-but-too-long bodies are streamed
// (the bytes already read are sent first) and never replayed. The buffer
// never exceeds the limit: a known length (which net/http enforces) is
// read into a buffer of exactly that size; an unknown one into a buffer
// that doubles up to the limit, then one more byte is probed for. A gRPC
// body of unknown length, or one followed by trailers, is never waited
// for: a client stream may be waiting for the pod's answer before it
// sends more (see streamBody).
func (r *retrier) bufferBody(req *http.Request) (attemptBody, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return attemptBody{}, nil
	}
	limit := r.u.cfg.MaxBufferedBody
	if req.ContentLength < 0 && (len(req.Trailer) > 0 || isGRPC(req.Header)) {
		return attemptBody{stream: &streamBody{src: req.Body, limit: limit}}, nil
	}
	if req.ContentLength > limit {
		return attemptBody{once: true}, nil
	}
	if req.ContentLength > 0 {
		buf := make([]byte, req.ContentLength)
		if _, err := io.ReadFull(req.Body, buf); err != nil {
			req.Body.Close()
			return attemptBody{}, err
		}
		req.Body.Close()
		return attemptBody{buf: buf, has: true}, nil
	}
	buf := make([]byte, 0, min(512, limit))
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) < limit {
				grown := make([]byte, len(buf), min(2*int64(cap(buf)), limit))
				copy(grown, buf)
				buf = grown
			} else {
				probe := make([]byte, 1)
				n, err := io.ReadFull(req.Body, probe)
				if n == 1 {
					req.Body = &prefixedBody{Reader: io.MultiReader(bytes.NewReader(buf), bytes.NewReader(probe), req.Body), c: req.Body}
					return attemptBody{once: true}, nil
				}
				if err != io.EOF {
					req.Body.Close()
					return attemptBody{}, err
				}
				break
			}
		}
		n, err := req.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			req.Body.Close()
			return attemptBody{}, err
		}
	}
	req.Body.Close()
	return attemptBody{buf: buf, has: true}, nil
}

type prefixedBody struct {
	io.Reader
	c io.Closer
}

func (p *prefixedBody) Close() error { return p.c.Close() }

// newAttempt returns the request for one attempt on host, with its own
// context and a fresh body: a shallow copy of req.
func newAttempt(ctx context.Context, req *http.Request, host string, body *attemptBody) *http.Request {
	a := req.WithContext(ctx)
	if host != req.URL.Host {
		u := *req.URL
		u.Host = host
		a.URL = &u
	}
	switch {
	case body.has:
		buf := body.buf
		a.ContentLength = int64(len(buf))
		a.Body = io.NopCloser(bytes.NewReader(buf))
		// GetBody lets net/http itself replay on a reused connection that
		// died before anything was written (nothingWrittenError).
		a.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
		if len(buf) == 0 {
			a.Body, a.GetBody = http.NoBody, nil
		}
	case body.stream != nil:
		a.Body, a.ContentLength, a.GetBody = body.current, body.length, body.stream.getBody
		if len(req.Trailer) > 0 {
			a.ContentLength = -1 // trailers follow a chunked body
		}
	case body.once:
		body.sent = true
	}
	return a
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete, http.MethodTrace:
		return true
	}
	return false
}

// classify turns an attempt's result into a breaker outcome and its retry
// class: notReached (provably never reached the pod: any method may be
// retried) or afterSend (502/503/504 or a reset/EOF after sending:
// idempotent or opted-in methods only).
func classify(ctx context.Context, resp *http.Response, err error) (o Outcome, notReached, afterSend bool) {
	switch err {
	case errConnectTimeout:
		return Failure, true, false
	case errResponseHeaderTimeout:
		return Failure, false, true
	}
	if err == nil {
		switch resp.StatusCode {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return Failure, false, true
		}
		return Success, false, false
	}
	switch ctx.Err() {
	case context.Canceled:
		return Ignored, false, false
	case context.DeadlineExceeded:
		return Failure, false, false
	}
	if neverSent(err) {
		return Failure, true, false
	}
	return Failure, false, isReset(err)
}

// errServerClosedIdle is net/http's (unexported) error for a reused
// keep-alive connection the server closed while it was idle, i.e. before
// it read our request. net/http retries it itself only for replayable
// requests; we do it for any method.
const errServerClosedIdle = "http: server closed idle connection"

// errGracefulGoAway is net/http's (unexported) error for a request not
// yet sent on an HTTP/2 connection the pod is closing.
const errGracefulGoAway = "received Server's graceful shutdown GOAWAY"

func neverSent(err error) bool {
	// skipper's dialer wraps dial errors in *proxy.proxyError (no Unwrap)
	// exposing DialError().
	var de interface{ DialError() bool }
	if errors.As(err, &de) && de.DialError() {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return true
	}
	var rh tls.RecordHeaderError
	var ae tls.AlertError
	var cv *tls.CertificateVerificationError
	if errors.As(err, &rh) || errors.As(err, &ae) || errors.As(err, &cv) {
		return true
	}
	if oe != nil && oe.Op == "remote error" { // TLS alert from the server
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, errServerClosedIdle) || strings.Contains(msg, "TLS handshake timeout") ||
		// HTTP/2: the pod refused the stream before processing it, or
		// was shutting down (GOAWAY) before the stream began; net/http
		// retries these itself when it can replay the body (GetBody), and
		// returns them when it cannot.
		strings.Contains(msg, "REFUSED_STREAM") || strings.Contains(msg, errGracefulGoAway)
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		strings.Contains(err.Error(), "transport connection broken")
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
