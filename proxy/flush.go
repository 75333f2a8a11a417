package proxy

import (
	"bufio"
	"net"
	"net/http"
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
//     MaxBodyBytes) into 400, 408 or 413 with the connection closed,
//     instead of the 5xx a backend failure gets.
type clientWriter struct {
	http.ResponseWriter
	requestID  []string  // shared with the request header, never modified
	body       bodyWatch // used when the request has a body worth watching
	watching   bool
	closeAfter bool // answer with Connection: close
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

// replace answers with the generic body of code instead of what skipper
// is about to write.
func (w *clientWriter) replace(code int) {
	w.replaced, w.held, w.deferring = true, 0, false
	if code == http.StatusBadRequest || code == http.StatusRequestTimeout || code == http.StatusRequestEntityTooLarge {
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
