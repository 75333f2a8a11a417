package proxy

import (
	"bufio"
	"net"
	"net/http"
	"net/textproto"
	"strings"
)

// clientWriter is the ResponseWriter skipper writes to. It does three
// things on the way to the client:
//
//   - It holds back skipper's flush of the response headers when the
//     answer has a Content-Length, so that the headers leave together with
//     the first body bytes: one write to the client instead of two. A
//     response of known length is not a stream (a streamed answer has no
//     Content-Length, and is flushed as skipper does); on a 2-core node the
//     saved system call is about a tenth of the proxy's CPU per request.
//   - It puts the request id on every response and replaces the router's
//     own error answers with the generic ones of errors.go.
//   - It turns a failure caused by the request body (malformed chunked
//     framing, a body slower than the body timeout, a body over
//     MaxBodyBytes) into 400, 408 or 413 with the connection closed
//     (HTTP/1; over HTTP/2 the stream ends alone), instead of the 5xx a
//     backend failure gets.
//   - It removes the pod's connection-specific headers (removeHopHeaders):
//     they were about the pod's connection to the router, and over HTTP/2
//     they are malformed.
type clientWriter struct {
	http.ResponseWriter
	requestID  []string  // shared with the request header, never modified
	body       bodyWatch // used when the request has a body worth watching
	watching   bool
	http1      bool // the client speaks HTTP/1.x: Connection: close is ours to send
	closeAfter bool // answer with Connection: close (HTTP/1 only)
	wrote      bool // WriteHeader done
	deferring  bool // headers written with a Content-Length, no body yet
	held       int  // status of a router error held until its body shows it is one
	replaced   bool // the answer was replaced: skipper's body is dropped
}

func (w *clientWriter) WriteHeader(code int) {
	if code < 200 { // informational (100 Continue, 103 Early Hints, 101): the final answer follows
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if w.wrote {
		return
	}
	w.wrote = true
	h := w.Header()
	if w.watching && code >= 400 {
		switch w.body.state.Load() {
		case bodyMalformed:
			w.replace(http.StatusBadRequest)
			return
		case bodyTimedOut:
			w.replace(http.StatusRequestTimeout)
			return
		case bodyTooLarge:
			w.replace(http.StatusRequestEntityTooLarge)
			return
		}
	}
	if _, ok := h[HeaderRequestID]; !ok && w.requestID != nil {
		h[HeaderRequestID] = w.requestID
	}
	removeHopHeaders(h)
	if w.closeAfter {
		h["Connection"] = closeValue
	}
	if isRouterError(code, h) {
		w.held = code // Write sees the body and decides
		return
	}
	w.deferring = code >= 200 && len(h["Content-Length"]) > 0
	w.ResponseWriter.WriteHeader(code)
}

var closeValue = []string{"close"}

// removeHopHeaders removes from a response the headers that described the
// pod's connection to the router (RFC 9110 §7.6.1: a proxy removes them,
// and those Connection lists). skipper copies every header of the pod's
// answer, and Node.js, for one, answers every HTTP/1.1 request with
// "Connection: keep-alive" and "Keep-Alive: timeout=5". Keep-Alive,
// Proxy-Connection and Upgrade (Apache advertises h2c with it) are
// connection-specific in HTTP/2 (RFC 9113 §8.2.2): clients such as
// browsers treat a response carrying them as malformed, and net/http's
// HTTP/2 server removes only Connection. Go's transport already takes a
// "Connection: close" out (a Connection: close in an HTTP/2 answer would
// make net/http send a GOAWAY for the client's whole connection, shared
// behind an ALB by many clients), and Transfer-Encoding. A 101 is not
// passed here: its Connection: upgrade is the point.
func removeHopHeaders(h http.Header) {
	if c, ok := h["Connection"]; ok {
		for _, v := range c {
			for v != "" {
				var name string
				name, v, _ = strings.Cut(v, ",")
				if name = textproto.TrimString(name); name != "" {
					h.Del(name)
				}
			}
		}
		delete(h, "Connection")
	}
	delete(h, "Keep-Alive")
	delete(h, "Proxy-Connection")
	delete(h, "Upgrade")
}

// replace answers with the generic body of code instead of what skipper
// is about to write.
func (w *clientWriter) replace(code int) {
	w.replaced, w.held, w.deferring = true, 0, false
	// Over HTTP/1 the rest of the body cannot be told from the next
	// request: the connection is closed. Over HTTP/2 net/http resets the
	// stream whose body was not read, and the connection (shared with
	// other clients behind an ALB) stays.
	if w.http1 && (code == http.StatusBadRequest || code == http.StatusRequestTimeout || code == http.StatusRequestEntityTooLarge) {
		w.closeAfter = true
	}
	writeError(w.ResponseWriter, code, w.requestID, w.closeAfter)
}

func (w *clientWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.replaced {
		return len(b), nil
	}
	if w.held != 0 {
		code := w.held
		w.held = 0
		if string(b) == routerErrorBody(code) {
			w.replace(code)
			return len(b), nil
		}
		w.ResponseWriter.WriteHeader(code)
	}
	w.deferring = false
	return w.ResponseWriter.Write(b)
}

// finish sends a held status that no body followed.
func (w *clientWriter) finish() {
	if w.held != 0 {
		code := w.held
		w.held = 0
		w.ResponseWriter.WriteHeader(code)
	}
}

// Flush implements http.Flusher: a no-op while the headers wait for the
// body (net/http sends them with it, or at the end of the handler).
func (w *clientWriter) Flush() {
	if w.deferring || w.held != 0 || w.replaced {
		return
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack implements http.Hijacker for protocol upgrades (WebSocket).
func (w *clientWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach the connection (deadlines).
func (w *clientWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
