package proxy

import (
	"net/http"
	"strconv"
)

// The answers the router gives of its own (no route: 404; a backend
// without endpoints: 503; a backend that failed: 502, 504; and the
// refusals of limits.go) are short, generic and carry the request id, in
// the body and in X-Request-Id: a client can quote it, an operator finds
// the request by it. Why it failed (which Service has no endpoints, which
// pod reset the connection) is on the admin endpoint's /problems, in the
// log and in the metrics, never in a body an internet client reads.
//
// skipper writes its own errors (and a route's status() with
// inlineContent()) as text/plain with the status text as the whole body;
// clientWriter recognises exactly that shape and replaces it. A pod's
// answer is passed on untouched, unless it has that very shape, in which
// case replacing it says nothing more.

// routerErrors are the codes whose skipper-shaped answers are replaced.
var routerErrors = map[int]struct{ body, length string }{}

func init() {
	for _, code := range []int{http.StatusBadRequest, http.StatusNotFound, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout} {
		body := http.StatusText(code) + "\n"
		routerErrors[code] = struct{ body, length string }{body, strconv.Itoa(len(body))}
	}
}

// isRouterError tells whether the headers of a code answer have the shape
// of skipper's own error answers (the body decides).
func isRouterError(code int, h http.Header) bool {
	if code < 400 || code > 504 {
		return false
	}
	e, ok := routerErrors[code]
	if !ok {
		return false
	}
	cl := h["Content-Length"]
	return len(cl) == 1 && cl[0] == e.length
}

func routerErrorBody(code int) string { return routerErrors[code].body }

// writeError answers code with the generic body, e.g.
//
//	503 Service Unavailable
//	request id: 5f0c...
func writeError(w http.ResponseWriter, code int, requestID []string, closeConn bool) {
	id := ""
	if len(requestID) > 0 {
		id = requestID[0]
	}
	body := make([]byte, 0, 64+len(id))
	body = strconv.AppendInt(body, int64(code), 10)
	body = append(body, ' ')
	body = append(body, http.StatusText(code)...)
	body = append(body, "\nrequest id: "...)
	body = append(body, id...)
	body = append(body, '\n')
	h := w.Header()
	for k := range h {
		delete(h, k) // whatever skipper prepared for its own answer
	}
	h["Content-Type"] = textPlain
	h["X-Content-Type-Options"] = nosniff
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	if id != "" {
		h[HeaderRequestID] = requestID[:1]
	}
	if closeConn {
		h["Connection"] = closeValue
	}
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

var (
	textPlain = []string{"text/plain; charset=utf-8"}
	nosniff   = []string{"nosniff"}
)
