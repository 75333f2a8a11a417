package accesslog

import (
	"bufio"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bulkhead-router/bulkhead/record"
)

// Header keys read per request, canonical so that no lookup allocates.
const (
	headerForwardedFor = "X-Forwarded-For"
	headerRequestID    = "X-Request-Id" // proxy.HeaderRequestID
	headerTraceparent  = "Traceparent"
	headerGRPCStatus   = "Grpc-Status"
	trailerGRPCStatus  = http.TrailerPrefix + "Grpc-Status"
)

// entry is one request's state, pooled: the record the serving path
// fills in and the ResponseWriter that counts the answer. Nothing holds
// either once the handler below next has returned: the upstream layer
// records only in the request's goroutine (its round trips return before
// skipper's ServeHTTP does), and net/http forbids using a ResponseWriter
// after ServeHTTP. The request body counter is not pooled: a transport
// may read and close a request body from a goroutine of its own, even
// after its round trip returned.
type entry struct {
	rec record.Request
	w   responseWriter
}

// Handler wraps next, the proxy's handler, as the outermost handler of
// the proxy listeners: it puts a record into each request's context, and
// logs the request once next has returned.
func (l *Logger) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		e := l.entries.Get().(*entry)
		e.rec.Start = start
		e.w.ResponseWriter = w
		// What the client sent, before the proxy rewrites it (it
		// replaces the X-Forwarded-For value with one that has the peer
		// appended, never the slice it was given).
		xff := r.Header[headerForwardedFor]
		in := r.WithContext(record.NewContext(r.Context(), &e.rec))
		var body *countingBody
		if r.Body != nil && r.Body != http.NoBody {
			body = &countingBody{ReadCloser: r.Body}
			in.Body = body
		}
		next.ServeHTTP(&e.w, in)
		l.finish(e, r, xff, body, time.Since(start))
		e.rec.Reset()
		e.w = responseWriter{}
		l.entries.Put(e)
	})
}

// failed reports whether a request must be logged whatever the sampling.
func failed(status int, rec *record.Request) bool {
	if status >= 500 || len(rec.Attempts) > 1 || rec.BreakerSkips > 0 || rec.Stop != "" {
		return true
	}
	for i := range rec.Attempts {
		if a := &rec.Attempts[i]; a.Error != "" || a.Status >= 500 {
			return true
		}
	}
	return false
}

func (l *Logger) finish(e *entry, r *http.Request, xff []string, body *countingBody, d time.Duration) {
	status := e.w.status
	if status == 0 {
		status = http.StatusOK // nothing written: net/http answers 200
	}
	rec := &e.rec
	if !l.sampleAll && !failed(status, rec) && rand.Uint64() >= l.sampleBelow {
		return
	}
	ln := line{
		start:        rec.Start,
		client:       r.RemoteAddr,
		forwardedFor: xff,
		method:       r.Method,
		host:         r.Host,
		target:       r.RequestURI,
		proto:        r.Proto,
		tls:          r.TLS != nil,
		status:       status,
		bytesOut:     e.w.bytes,
		duration:     d,
		rec:          rec,
	}
	if body != nil {
		ln.bytesIn = body.n.Load()
	}
	if rec.RouteID != "" {
		l.origin(&ln, rec.RouteID)
	}
	if id := r.Header[headerRequestID]; len(id) > 0 {
		ln.requestID = id[0]
	} else if id := e.w.ResponseWriter.Header()[headerRequestID]; len(id) > 0 {
		ln.requestID = id[0] // answered before the proxy passed it on (431)
	}
	ln.traceID = rec.TraceID
	if ln.traceID == "" {
		if tp := r.Header[headerTraceparent]; len(tp) == 1 {
			ln.traceID = traceIDOf(tp[0])
		}
	}
	h := e.w.ResponseWriter.Header()
	if v := h[trailerGRPCStatus]; len(v) > 0 {
		ln.grpcStatus = v[0]
	} else if v := h[headerGRPCStatus]; len(v) > 0 {
		ln.grpcStatus = v[0] // a trailers-only answer
	}
	buf := l.bufs.Get().(*[]byte)
	if l.format == Text {
		*buf = appendText((*buf)[:0], &ln, l.fields)
	} else {
		*buf = appendJSON((*buf)[:0], &ln, l.fields)
	}
	l.enqueue(buf)
}

// origin finds the object route id came from in the live table (its
// routes are sorted by id): a binary search, no lock.
func (l *Logger) origin(ln *line, id string) {
	p := l.routes.Load()
	if p == nil {
		return
	}
	rs := *p
	lo, hi := 0, len(rs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if rs[m].Eskip.Id < id {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(rs) || rs[lo].Eskip.Id != id {
		return
	}
	rt := rs[lo]
	switch g := rt.Gateway; {
	case g != nil && g.Kind == "GRPCRoute":
		ln.objectKind, ln.objectNS, ln.objectName = "grpcroute", g.HTTPRoute.Namespace, g.HTTPRoute.Name
	case g != nil:
		ln.objectKind, ln.objectNS, ln.objectName = "httproute", g.HTTPRoute.Namespace, g.HTTPRoute.Name
	case rt.Ingress.Name != "":
		ln.objectKind, ln.objectNS, ln.objectName = "ingress", rt.Ingress.Namespace, rt.Ingress.Name
	}
}

// traceIDOf returns the trace id of a well-formed W3C traceparent
// (version 00: 00-<32 hex>-<16 hex>-<2 hex>, ids not all zero), else "".
// Only informative: the client chose it.
func traceIDOf(tp string) string {
	if len(tp) != 55 || tp[0] != '0' || tp[1] != '0' || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return ""
	}
	if !lowerHex(tp[3:35]) || !lowerHex(tp[36:52]) || !lowerHex(tp[53:55]) {
		return ""
	}
	if strings.Trim(tp[3:35], "0") == "" || strings.Trim(tp[36:52], "0") == "" {
		return ""
	}
	return tp[3:35]
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// countingBody counts the request body bytes read. Atomic: the transport
// may read the body in a goroutine of its own.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// responseWriter counts the answer: its status and body bytes. It keeps
// what the serving path needs of the server's ResponseWriter: Flush
// (streams, gRPC), Hijack (WebSocket upgrades; skipper asserts
// http.Hijacker directly) and Unwrap (http.ResponseController: deadlines,
// full duplex). Trailers pass through Header, which is the server's.
type responseWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *responseWriter) WriteHeader(code int) {
	// 1xx are interim (100 Continue, 103 Early Hints) except 101, the
	// last answer on an upgraded connection.
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush implements http.Flusher.
func (w *responseWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	for rw := w.ResponseWriter; ; {
		switch t := rw.(type) {
		case http.Flusher:
			t.Flush()
			return
		case interface{ Unwrap() http.ResponseWriter }:
			rw = t.Unwrap()
		default:
			return
		}
	}
}

// Hijack implements http.Hijacker: skipper hands an upgraded connection
// to its tunnel. Bytes through the tunnel are not counted.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	for rw := w.ResponseWriter; ; {
		switch t := rw.(type) {
		case http.Hijacker:
			c, brw, err := t.Hijack()
			if err == nil && w.status == 0 {
				w.status = http.StatusSwitchingProtocols // skipper writes the pod's 101 on the connection itself
			}
			return c, brw, err
		case interface{ Unwrap() http.ResponseWriter }:
			rw = t.Unwrap()
		default:
			return nil, nil, errNoHijack
		}
	}
}

var errNoHijack = errors.New("accesslog: the connection cannot be hijacked (HTTP/2)")

// Unwrap lets http.ResponseController reach the server's writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
