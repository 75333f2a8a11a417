package upstream

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// gRPC status codes by number, as MetricGRPCResponses' "code" label
// spells them, then the two outcomes that carry none.
var grpcCodeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
	grpcMissing: "MISSING", // the stream ended without a grpc-status
	grpcInvalid: "INVALID", // a grpc-status that is no code
}

const (
	grpcOK               = 0
	grpcCancelled        = 1
	grpcDeadlineExceeded = 4
	grpcUnavailable      = 14
	grpcMissing          = 17
	grpcInvalid          = 18
)

// isGRPC: a gRPC call or answer (application/grpc, +proto, +json,
// grpc-web...).
func isGRPC(h http.Header) bool {
	ct := h["Content-Type"]
	return len(ct) > 0 && strings.HasPrefix(ct[0], "application/grpc")
}

// grpcStatus reads a grpc-status header or trailer; ok is false when there
// is none.
func grpcStatus(h http.Header) (code int, ok bool) {
	v := h["Grpc-Status"]
	if len(v) == 0 {
		return grpcMissing, false
	}
	s := v[0]
	if len(s) == 0 || len(s) > 2 {
		return grpcInvalid, true
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return grpcInvalid, true
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > 16 {
		return grpcInvalid, true
	}
	return n, true
}

// grpcOutcome is what a call's gRPC status says of the endpoint:
//
//   - UNAVAILABLE is a failure: the server (or a proxy in the pod) is
//     shutting down, overloaded or cannot reach what it needs; it is the
//     code gRPC servers answer when they refuse work, and the one gRPC
//     clients themselves retry.
//   - CANCELLED and DEADLINE_EXCEEDED say nothing of the endpoint: they
//     are mostly the client's own cancellation or deadline (propagated in
//     grpc-timeout); a pod that hangs is caught by the router's own
//     timeouts, which are failures.
//   - Every other code is a success, as any HTTP answer other than
//     502/503/504 is: the pod is alive and answering, and INTERNAL,
//     UNKNOWN or RESOURCE_EXHAUSTED (mostly a per-caller quota) are the
//     application's answers to the call, not the endpoint's health.
//   - A stream that ends without a status (MISSING) is a failure: the pod
//     broke the call.
func grpcOutcome(code int) Outcome {
	switch code {
	case grpcUnavailable, grpcMissing:
		return Failure
	case grpcCancelled, grpcDeadlineExceeded:
		return Ignored
	}
	return Success
}

// grpcSeries are a backend's MetricGRPCResponses series, each made on
// its first use.
type grpcSeries [len(grpcCodeNames)]atomic.Pointer[prometheus.Counter]

func (s *stats) grpcResponse(code int) {
	g := s.grpc.Load()
	if g == nil {
		g = new(grpcSeries)
		if !s.grpc.CompareAndSwap(nil, g) {
			g = s.grpc.Load()
		}
	}
	c := g[code].Load()
	if c == nil {
		m := s.metrics.grpcResponses.WithLabelValues(s.label, grpcCodeNames[code])
		g[code].CompareAndSwap(nil, &m)
		c = g[code].Load()
	}
	(*c).Inc()
}

// responseBody follows the body of an answer that may end in trailers:
// any HTTP/2 answer (the pod may send trailers it did not announce) and
// an HTTP/1.1 one announcing them. At the end of the body it
//
//   - copies the pod's trailers to the client as http.TrailerPrefix
//     headers of the client's ResponseWriter (skipper v0.27.57 copies
//     headers and body only; net/http sends such headers as HTTP/2
//     trailers, or as the trailer of a chunked HTTP/1.1 answer);
//   - for a gRPC answer whose status comes in the trailers, records the
//     attempt's breaker outcome (held until then, see grpcOutcome) and
//     counts the status in MetricGRPCResponses.
//
// Everything runs in skipper's serving goroutine, which reads the body and
// owns the ResponseWriter.
type responseBody struct {
	io.ReadCloser
	resp *http.Response
	w    http.ResponseWriter // nil: trailers cannot be passed on (no Handler)
	// The gRPC call's pending outcome, when grpc is set.
	grpc     bool
	ticket   ticket
	admitted bool
	br       *breaker
	st       *stats
	req      *http.Request
	done     bool
}

func (b *responseBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.done {
		b.finish(err)
	}
	return n, err
}

func (b *responseBody) Close() error {
	if !b.done {
		b.finish(errClosedEarly)
	}
	return b.ReadCloser.Close()
}

var errClosedEarly = errors.New("response body closed before its end")

// The trailers of a gRPC stream the pod's side broke (see finish); shared,
// never modified.
var (
	grpcUnavailableStatus = []string{"14"}
	grpcBrokenMessage     = []string{"bulkhead: the stream to the pod broke"}
)

// trailerKey is the ResponseWriter header that net/http sends as trailer
// k; gRPC's own, in every call, without allocating.
func trailerKey(k string) string {
	switch k {
	case "Grpc-Status":
		return http.TrailerPrefix + "Grpc-Status"
	case "Grpc-Message":
		return http.TrailerPrefix + "Grpc-Message"
	case "Grpc-Status-Details-Bin":
		return http.TrailerPrefix + "Grpc-Status-Details-Bin"
	}
	return http.TrailerPrefix + k
}

func (b *responseBody) finish(err error) {
	b.done = true
	if b.grpc {
		b.br.inflight.Add(-1)
	}
	if err == io.EOF {
		if b.w != nil && len(b.resp.Trailer) > 0 {
			h := b.w.Header()
			for k, vv := range b.resp.Trailer {
				h[trailerKey(k)] = vv
			}
		}
		if b.grpc {
			code, _ := grpcStatus(b.resp.Trailer)
			b.st.grpcResponse(code)
			b.record(grpcOutcome(code))
		}
		return
	}
	if !b.grpc {
		return
	}
	switch {
	case err == errClosedEarly || b.req.Context().Err() != nil:
		// The client went away (or skipper stopped reading for it):
		// nothing learnt about the pod.
		b.record(Ignored)
	default:
		// The pod, or the connection to it, broke the stream. The client's
		// stream ends with a status of the router's own: UNAVAILABLE, what
		// gRPC gives a transport that failed, which client retry policies
		// know; without it the client saw the stream end without trailers
		// and reported INTERNAL ("server closed the stream without sending
		// trailers"), a server bug, which nothing retries.
		if b.w != nil {
			h := b.w.Header()
			h[trailerKey("Grpc-Status")] = grpcUnavailableStatus
			h[trailerKey("Grpc-Message")] = grpcBrokenMessage
		}
		b.st.grpcResponse(grpcMissing)
		b.record(Failure)
	}
}

func (b *responseBody) record(o Outcome) {
	if b.admitted {
		b.ticket.done(o)
	}
	if o == Failure {
		b.st.counters().failures.Inc()
		b.br.counters().failures.Inc()
	}
}

// streamBody forwards a request body of unknown length as it comes (a
// gRPC client stream must never wait for its own end before the pod sees
// it) and keeps a copy of up to limit bytes on the side. An attempt may
// be replayed on another endpoint when no byte was read yet (a connect
// error, a refused stream: the same body goes on), or when the whole body
// was read within the limit (a small unary call: the copy is sent). Each
// attempt reads through a view of its own; a view of an abandoned attempt
// reads nothing more.
type streamBody struct {
	src   io.ReadCloser
	limit int64

	mu      sync.Mutex
	gen     int
	started bool // a read began: the source is no longer at its start
	eof     bool
	over    bool // more than limit bytes: buf dropped
	buf     []byte
}

type streamView struct {
	s   *streamBody
	gen int
}

var errBodyReplayed = errors.New("request body: attempt abandoned, the body went to another attempt")

func (v *streamView) Read(p []byte) (int, error) {
	s := v.s
	s.mu.Lock()
	if v.gen != s.gen {
		s.mu.Unlock()
		return 0, errBodyReplayed
	}
	s.started = true
	s.mu.Unlock()
	n, err := s.src.Read(p)
	s.mu.Lock()
	if !s.over && n > 0 {
		if int64(len(s.buf)+n) > s.limit {
			s.over, s.buf = true, nil
		} else {
			s.buf = append(s.buf, p[:n]...)
		}
	}
	if err == io.EOF {
		s.eof = true
	}
	s.mu.Unlock()
	return n, err
}

// Close does not close the client's body: a later attempt may still need
// it, and net/http closes it when the handler returns.
func (v *streamView) Close() error { return nil }

func (s *streamBody) replayable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.started || s.eof && !s.over
}

// next returns the body of a new attempt and its length (-1: unknown),
// abandoning earlier attempts' views; nil when it cannot be replayed.
func (s *streamBody) next() (io.ReadCloser, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.started:
		s.gen++
		return &streamView{s: s, gen: s.gen}, -1
	case s.eof && !s.over:
		s.gen++
		return io.NopCloser(bytes.NewReader(s.buf)), int64(len(s.buf))
	}
	return nil, 0
}

// getBody is the attempt's GetBody, with which net/http replays a request
// itself (a reused connection that died, a refused HTTP/2 stream).
func (s *streamBody) getBody() (io.ReadCloser, error) {
	if b, _ := s.next(); b != nil {
		return b, nil
	}
	return nil, errors.New("request body already sent in part and not kept")
}
