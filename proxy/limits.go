package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync/atomic"
	"time"
)

// What net/http already refuses before a handler runs (Go 1.26, measured
// by the hostile-input tests): Content-Length headers that differ or are
// not plain digits (400), a Transfer-Encoding other than a lone "chunked"
// (501, then the connection is closed), invalid header names and values,
// a missing, repeated or malformed Host (400), HTTP versions other than
// 1.0/1.1 (505), headers over Server.MaxHeaderBytes plus 4 KiB (431), and
// header reads slower than Server.ReadHeaderTimeout (connection closed).
// What it lets through, and this file handles: a request with both
// Content-Length and Transfer-Encoding: chunked (framed by chunked, the
// Content-Length header dropped without a trace), malformed chunked bodies
// (an error in the middle of the handler), single headers and request
// targets of any size within the total, any number of headers, and bodies
// sent as slowly as the client likes.

// Defaults of the limits, in line with an AWS ALB's: a request line or a
// single header over 16 KiB is refused, the whole header over 64 KiB.
const (
	DefaultMaxHeaderFieldBytes = 16 << 10
	DefaultMaxHeaderCount      = 100
)

// checkHeaderLimits returns the status refusing r, or 0. (A declared
// Content-Length over MaxBodyBytes is refused here too; a chunked body is
// counted as it is read.)
func (p *Proxy) checkHeaderLimits(r *http.Request) int {
	if p.maxBody > 0 && r.ContentLength > p.maxBody {
		return http.StatusRequestEntityTooLarge
	}
	if len(r.RequestURI) > p.maxFieldBytes {
		return http.StatusRequestURITooLong
	}
	if len(r.Host) > p.maxFieldBytes {
		return http.StatusRequestHeaderFieldsTooLarge
	}
	n := 0
	for k, vs := range r.Header {
		n += len(vs)
		for _, v := range vs {
			if len(k)+len(v) > p.maxFieldBytes {
				return http.StatusRequestHeaderFieldsTooLarge
			}
		}
	}
	if n > p.maxHeaderCount {
		return http.StatusRequestHeaderFieldsTooLarge
	}
	return 0
}

// removeConnectionListed removes the headers a client names in Connection:
// they were meant for this hop only (RFC 9110 §7.6.1). skipper removes the
// fixed hop-by-hop headers, not these. "Upgrade" stays, for skipper's
// upgrade path to see; the headers bulkhead sets itself are set after
// this, so a Connection header cannot take them away.
func removeConnectionListed(h http.Header) {
	for _, v := range h["Connection"] {
		for v != "" {
			var name string
			name, v, _ = strings.Cut(v, ",")
			name = textproto.TrimString(name)
			if name == "" || strings.EqualFold(name, "close") || strings.EqualFold(name, "keep-alive") || strings.EqualFold(name, "upgrade") {
				continue
			}
			if _, ok := h[name]; ok {
				delete(h, name)
			} else {
				delete(h, http.CanonicalHeaderKey(name))
			}
		}
	}
}

// isH2CUpgrade reports whether an Upgrade header offers h2c alone, as
// HTTP/1.1 clients that would like HTTP/2 without TLS do (RFC 7540 §3.2,
// dropped by RFC 9113).
func isH2CUpgrade(values []string) bool {
	return len(values) == 1 && strings.EqualFold(textproto.TrimString(values[0]), "h2c")
}

// Body states seen by bodyWatch.
const (
	bodyFine      uint32 = iota
	bodyMalformed        // chunked framing broken: 400
	bodyTimedOut         // not received within the body timeout: 408
	bodyTooLarge         // over MaxBodyBytes: 413
)

// errBodyTooLarge ends the reading of a chunked body over the limit.
var errBodyTooLarge = errors.New("request body over the limit")

// bodyWatch wraps a request body to bound how long it may take and to
// tell a malformed body (400) or a slow one (408) from a backend failure.
// A body small enough to be buffered for replay (or of unknown length,
// until it grows past that size) must arrive within the body timeout: the
// upstream layer reads it completely before the first attempt, and a
// client trickling it would hold a goroutine and a buffer indefinitely.
// Larger bodies are streamed to the pod as they come; their pace is the
// pod's business, so the deadline is lifted.
type bodyWatch struct {
	rc       io.ReadCloser
	deadline interface{ SetReadDeadline(time.Time) error } // nil: none set
	limit    int64
	max      int64 // MaxBodyBytes; 0: none
	read     int64
	chunked  bool          // HTTP/1 chunked coding: a read error that is not the network's is bad framing
	state    atomic.Uint32 // read by the handler, written by the transport's writer
}

func (b *bodyWatch) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.read += int64(n)
	if b.max > 0 && b.read > b.max {
		b.state.Store(bodyTooLarge)
		return 0, errBodyTooLarge
	}
	// Lifted at the end of the body or once it is too large to be
	// buffered; after an error it stays, so that net/http's draining of
	// the rest of the body on Close does not wait for a stalled client.
	if b.deadline != nil && (err == io.EOF || err == nil && b.read > b.limit) {
		_ = b.deadline.SetReadDeadline(time.Time{})
		b.deadline = nil
	}
	if err != nil && err != io.EOF {
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			b.state.Store(bodyTimedOut)
		case b.chunked && !errors.As(err, &ne) && !errors.Is(err, io.ErrUnexpectedEOF):
			// net/http's chunked reader reports bad framing (a bare LF,
			// a bad chunk size) as plain errors; a client that went
			// away is a net.Error or an unexpected EOF.
			b.state.Store(bodyMalformed)
		}
	}
	return n, err
}

func (b *bodyWatch) Close() error { return b.rc.Close() }

// watchBody installs the body watch on r when it has a body that may be
// buffered or is of unknown length (HTTP/1 chunked, or HTTP/2 without a
// content-length). The read deadline is set through the server's
// ResponseWriter: over HTTP/1 it is the connection's, reset by net/http
// before the next request on it; over HTTP/2 the stream's alone (net/http
// ends the body with os.ErrDeadlineExceeded, a timeout), so one slow
// upload never holds up the other streams of the connection.
func (p *Proxy) watchBody(w http.ResponseWriter, r *http.Request, b *bodyWatch) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return false
	}
	chunked := r.ContentLength < 0
	small := r.ContentLength >= 0 && r.ContentLength <= p.bodyLimit
	if !chunked && !small {
		return false
	}
	// Only HTTP/1's chunked coding can be malformed in ways the handler
	// sees; an HTTP/2 body of unknown length is framed by DATA frames, and
	// its read errors are a stream reset by the client.
	b.rc, b.limit, b.chunked, b.max = r.Body, p.bodyLimit, chunked && r.ProtoMajor == 1, p.maxBody
	if p.bodyTimeout > 0 {
		if d := readDeadliner(w); d != nil && d.SetReadDeadline(time.Now().Add(p.bodyTimeout)) == nil {
			b.deadline = d
		}
	}
	r.Body = b
	return true
}

// readDeadliner finds the server's connection deadline through any
// wrappers (as http.ResponseController does, without allocating one).
func readDeadliner(w http.ResponseWriter) interface{ SetReadDeadline(time.Time) error } {
	for {
		if d, ok := w.(interface{ SetReadDeadline(time.Time) error }); ok {
			return d
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil
		}
		w = u.Unwrap()
	}
}
