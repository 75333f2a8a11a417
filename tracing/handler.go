package tracing

import (
	"bufio"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/bulkhead-router/bulkhead/record"
)

// Attribute keys: OpenTelemetry's HTTP semantic conventions, and ours.
const (
	keyMethod       = attribute.Key("http.request.method")
	keyStatus       = attribute.Key("http.response.status_code")
	keyPath         = attribute.Key("url.path")
	keyScheme       = attribute.Key("url.scheme")
	keyServerAddr   = attribute.Key("server.address")
	keyServerPort   = attribute.Key("server.port")
	keyClientAddr   = attribute.Key("client.address")
	keyProtocol     = attribute.Key("network.protocol.version")
	keyErrorType    = attribute.Key("error.type")
	keyRoute        = attribute.Key("bulkhead.route")
	keyBackend      = attribute.Key("bulkhead.backend")
	keyRetries      = attribute.Key("bulkhead.retries")
	keyBreakerSkips = attribute.Key("bulkhead.breaker_skips")
	keyRetryStop    = attribute.Key("bulkhead.retry_stop")
	keyAttempt      = attribute.Key("bulkhead.attempt")
	keyBreaker      = attribute.Key("bulkhead.breaker")
	keyGRPCStatus   = attribute.Key("rpc.grpc.status_code")
)

// A gRPC answer's status, in its trailers (as the upstream layer passes
// them on) or, trailers-only, in its headers.
const (
	headerGRPCStatus  = "Grpc-Status"
	trailerGRPCStatus = http.TrailerPrefix + "Grpc-Status"
)

// attemptSpanName names the span of each attempt toward a pod.
const attemptSpanName = "attempt"

// request is one request's tracing state, pooled. It is the record's
// AttemptTracer: the upstream layer calls it in the request's goroutine
// while next serves it, so nothing holds it once next has returned.
type request struct {
	t       *Tracer
	rec     record.Request // the record, when no access log made one
	traceID trace.TraceID
	sampled bool
	keepTS  bool // the client's tracestate goes on to the pods

	ctx     context.Context // the server span's, parent of the attempts; sampled only
	server  trace.Span
	attempt trace.Span
	n       int
	w       statusWriter
	tp      [traceparentLen]byte
}

// Handler wraps next (the upstream layer's handler around the proxy)
// with a server span per sampled request and a traceparent on every
// attempt toward a pod, sampled or not. An access log outside it shares
// the request's record.
func (t *Tracer) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rq := t.pool.Get().(*request)
		// A client's traceparent counts only from a trusted proxy (and
		// only with TrustParent): from anyone else it is as if absent, so
		// a client can neither force sampling (and export) nor choose the
		// trace id our spans and the pod's are filed under.
		in := parseTraceparent(r.Header[headerTraceparent])
		trusted := in.ok && t.trustParent && t.trustedPeer(r.RemoteAddr)
		if trusted {
			rq.sampled = in.sampled
		} else {
			rq.sampled = t.sampleAll || rand.Uint64() < t.sampleBelow
		}
		rq.keepTS = trusted
		rec := record.FromContext(r.Context())
		logged := rec != nil
		if !logged {
			rec = &rq.rec
			rec.Start = start
			r = r.WithContext(record.NewContext(r.Context(), rec))
		}
		rec.Tracer = rq
		if rq.sampled {
			t.requests[1].Inc()
			ctx := r.Context()
			if trusted {
				ctx = trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
					TraceID: in.traceID, SpanID: in.spanID, TraceFlags: trace.FlagsSampled, Remote: true}))
			}
			rq.ctx, rq.server = t.tracer.Start(ctx, spanName(r.Method), trace.WithSpanKind(trace.SpanKindServer),
				trace.WithTimestamp(start), trace.WithAttributes(requestAttributes(r)...))
			rq.traceID = rq.server.SpanContext().TraceID()
			rq.w.ResponseWriter = w
			w = &rq.w
		} else {
			t.requests[0].Inc()
			if trusted {
				rq.traceID = in.traceID
			} else {
				binary.BigEndian.PutUint64(rq.traceID[:8], rand.Uint64())
				binary.BigEndian.PutUint64(rq.traceID[8:], rand.Uint64()|1) // never all zero
			}
		}
		if !trusted && (len(r.Header[headerTraceparent]) > 0 || len(r.Header[headerTracestate]) > 0) {
			// The layers below see ours, not the client's: the attempts
			// get theirs in StartAttempt, but a mirrored copy is sent
			// with the request's headers as they are (under the server
			// span, then).
			var sid trace.SpanID
			if rq.sampled {
				sid = rq.server.SpanContext().SpanID()
			} else {
				binary.BigEndian.PutUint64(sid[:], rand.Uint64()|1)
			}
			formatTraceparent(&rq.tp, rq.traceID, sid, rq.sampled)
			r.Header[headerTraceparent] = []string{string(rq.tp[:])}
			delete(r.Header, headerTracestate)
		}
		if logged {
			var id [32]byte
			rec.TraceID = string(appendHex(id[:0], rq.traceID[:]))
		}
		// Deferred: the proxy aborts a response it cannot finish with a
		// panic (http.ErrAbortHandler); its spans end all the same.
		defer rq.finish(rec)
		next.ServeHTTP(w, r)
	})
}

// finish ends what the request left open and returns rq to the pool.
func (rq *request) finish(rec *record.Request) {
	if rq.attempt != nil { // an attempt never ended: a panic below
		rq.attempt.End()
	}
	if rq.sampled {
		rq.endServer(rec)
	}
	rec.Tracer = nil
	t := rq.t
	rq.reset()
	t.pool.Put(rq)
}

func (rq *request) reset() {
	rq.rec.Reset()
	rq.traceID, rq.sampled, rq.keepTS = trace.TraceID{}, false, false
	rq.ctx, rq.server, rq.attempt, rq.n = nil, nil, nil, 0
	rq.w = statusWriter{}
}

// requestAttributes are the server span's attributes known at its start.
func requestAttributes(r *http.Request) []attribute.KeyValue {
	host, port := splitHostPort(r.Host)
	attrs := make([]attribute.KeyValue, 0, 7)
	attrs = append(attrs, keyMethod.String(method(r.Method)), keyPath.String(r.URL.Path), keyScheme.String(scheme(r)),
		keyServerAddr.String(host), keyProtocol.String(protocol(r)))
	if port > 0 {
		attrs = append(attrs, keyServerPort.Int(port))
	}
	if ip, _ := splitHostPort(r.RemoteAddr); ip != "" {
		attrs = append(attrs, keyClientAddr.String(ip))
	}
	return attrs
}

// endServer ends the server span with what the request came to.
func (rq *request) endServer(rec *record.Request) {
	s := rq.server
	status := rq.w.status
	if status == 0 {
		status = http.StatusOK // nothing written: net/http answers 200
	}
	s.SetAttributes(keyStatus.Int(status), keyRetries.Int(rec.Retries()), keyBreakerSkips.Int(rec.BreakerSkips))
	if rec.RouteID != "" {
		s.SetAttributes(keyRoute.String(rec.RouteID))
	}
	if rec.Backend != "" {
		s.SetAttributes(keyBackend.String(rec.Backend))
	}
	if rec.Stop != "" {
		s.SetAttributes(keyRetryStop.String(string(rec.Stop)))
	}
	if status >= 500 {
		// The semantic conventions: a server span fails on 5xx only (a
		// 4xx is the client's).
		s.SetAttributes(keyErrorType.String(strconv.Itoa(status)))
		s.SetStatus(codes.Error, "")
	}
	if code, ok := grpcStatus(rq.w.ResponseWriter.Header()); ok {
		s.SetAttributes(keyGRPCStatus.Int(code))
		if grpcServerError(code) && status < 500 {
			s.SetAttributes(keyErrorType.String(strconv.Itoa(code)))
			s.SetStatus(codes.Error, "")
		}
	}
	s.End()
}

// grpcStatus is the grpc-status of a gRPC answer, if it has one.
func grpcStatus(h http.Header) (int, bool) {
	v := h[trailerGRPCStatus]
	if len(v) == 0 {
		v = h[headerGRPCStatus]
	}
	if len(v) == 0 {
		return 0, false
	}
	code, err := strconv.Atoi(v[0])
	if err != nil || code < 0 || code > 16 {
		return 0, false
	}
	return code, true
}

// grpcServerError reports the codes the semantic conventions call a
// server's error: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL,
// UNAVAILABLE, DATA_LOSS (the others are the client's).
func grpcServerError(code int) bool {
	switch code {
	case 2, 4, 12, 13, 14, 15:
		return true
	}
	return false
}

// StartAttempt gives the attempt its span id and its traceparent.
func (rq *request) StartAttempt(out *http.Request, a *record.Attempt) {
	rq.n++
	var sid trace.SpanID
	if rq.sampled {
		host, port := splitHostPort(a.Endpoint)
		attrs := make([]attribute.KeyValue, 0, 5)
		attrs = append(attrs, keyMethod.String(method(out.Method)), keyServerAddr.String(host), keyAttempt.Int(rq.n), keyBreaker.String(a.Breaker))
		if port > 0 {
			attrs = append(attrs, keyServerPort.Int(port))
		}
		_, rq.attempt = rq.t.tracer.Start(rq.ctx, attemptSpanName, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithTimestamp(a.Start), trace.WithAttributes(attrs...))
		sid = rq.attempt.SpanContext().SpanID()
	} else {
		// No span: an id of its own all the same, so the pod's spans
		// (if it samples regardless) hang under one parent per attempt.
		binary.BigEndian.PutUint64(sid[:], rand.Uint64()|1)
	}
	formatTraceparent(&rq.tp, rq.traceID, sid, rq.sampled)
	out.Header[headerTraceparent] = []string{string(rq.tp[:])}
	if !rq.keepTS {
		delete(out.Header, headerTracestate)
	}
}

// EndAttempt ends the attempt's span with its outcome.
func (rq *request) EndAttempt(a *record.Attempt) {
	s := rq.attempt
	if s == nil {
		return
	}
	rq.attempt = nil
	if a.Status != 0 {
		s.SetAttributes(keyStatus.Int(a.Status))
		if a.Status >= 500 {
			s.SetAttributes(keyErrorType.String(strconv.Itoa(a.Status)))
			s.SetStatus(codes.Error, "")
		}
	} else {
		s.SetAttributes(keyErrorType.String(string(a.Error)))
		s.SetStatus(codes.Error, string(a.Error))
	}
	s.End(trace.WithTimestamp(a.Start.Add(a.Duration)))
}

var _ record.AttemptTracer = (*request)(nil)

// spanName is the server span's name: the method (the semantic
// conventions' choice when there is no route template), "HTTP" for
// methods outside the standard set, whose names a client chooses.
func spanName(m string) string {
	if method(m) == "_OTHER" {
		return "HTTP"
	}
	return m
}

// method is the http.request.method attribute: the standard methods as
// they are, any other as "_OTHER" (a client must not fill the tracing
// backend with names of its choosing).
func method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

func protocol(r *http.Request) string {
	switch {
	case r.ProtoMajor == 2:
		return "2"
	case r.ProtoMajor == 1 && r.ProtoMinor == 1:
		return "1.1"
	case r.ProtoMajor == 1 && r.ProtoMinor == 0:
		return "1.0"
	}
	return r.Proto
}

// splitHostPort splits host[:port] or [v6]:port without allocating; port
// 0 when there is none.
func splitHostPort(s string) (string, int) {
	i := len(s) - 1
	for i >= 0 && s[i] >= '0' && s[i] <= '9' {
		i--
	}
	if i < 0 || s[i] != ':' || i == len(s)-1 {
		return trimBrackets(s), 0
	}
	host := s[:i]
	if len(host) > 0 && host[0] != '[' && containsColon(host) {
		return s, 0 // a bare IPv6 address
	}
	port, err := strconv.Atoi(s[i+1:])
	if err != nil || port > 65535 {
		return trimBrackets(host), 0
	}
	return trimBrackets(host), port
}

func containsColon(s string) bool {
	for i := range len(s) {
		if s[i] == ':' {
			return true
		}
	}
	return false
}

func trimBrackets(s string) string {
	if len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']' {
		return s[1 : len(s)-1]
	}
	return s
}

// statusWriter notes the status of a sampled request's answer. It passes
// on what the proxy below uses: Flush, Hijack (WebSocket) and Unwrap (for
// http.ResponseController and the connection's deadlines).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 || w.status < 200 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.status = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
