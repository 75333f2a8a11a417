package proxy

import (
	"encoding/hex"
	"math/rand/v2"
	"net"
	"net/http"
)

// Header names set on every request forwarded to a pod.
const (
	HeaderForwardedFor   = "X-Forwarded-For"
	HeaderForwardedProto = "X-Forwarded-Proto"
	HeaderForwardedHost  = "X-Forwarded-Host"
	HeaderRequestID      = "X-Request-Id"
)

// setForwardedHeaders tells the pod who asked and how, the way load
// balancers in front of bulkhead (an ALB) and pods behind it expect:
//
//   - X-Forwarded-For: the client address is appended to any list already
//     there (the ALB's entries stay first).
//   - X-Forwarded-Proto and X-Forwarded-Host: kept when the request already
//     carries them (an ALB terminating TLS sets Proto to https), else set
//     from this hop.
//   - X-Request-Id: kept when present, else a new random 128-bit hex id, so
//     one request can be followed across logs.
//
// It runs on every request, so it avoids work it can skip: canonical header
// keys are used directly, and only the id and the appended list allocate.
func setForwardedHeaders(r *http.Request) {
	h := r.Header
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := h[HeaderForwardedFor]; len(prior) > 0 {
			h[HeaderForwardedFor] = []string{joinForwarded(prior, ip)}
		} else {
			h[HeaderForwardedFor] = []string{ip}
		}
	}
	if len(h[HeaderForwardedProto]) == 0 {
		if r.TLS != nil {
			h[HeaderForwardedProto] = httpsValue
		} else {
			h[HeaderForwardedProto] = httpValue
		}
	}
	if len(h[HeaderForwardedHost]) == 0 && r.Host != "" {
		h[HeaderForwardedHost] = []string{r.Host}
	}
	if len(h[HeaderRequestID]) == 0 {
		h[HeaderRequestID] = []string{newRequestID()}
	}
}

// Shared, never modified: net/http's transport only reads header values.
var (
	httpValue  = []string{"http"}
	httpsValue = []string{"https"}
)

func joinForwarded(prior []string, ip string) string {
	n := len(ip)
	for _, p := range prior {
		n += len(p) + 2
	}
	b := make([]byte, 0, n)
	for _, p := range prior {
		b = append(b, p...)
		b = append(b, ", "...)
	}
	return string(append(b, ip...))
}

// newRequestID returns 32 hex digits. math/rand/v2's global source is
// safe for concurrent use without a lock; ids need uniqueness, not secrecy.
func newRequestID() string {
	var raw [16]byte
	a, b := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		raw[i] = byte(a >> (8 * i))
		raw[8+i] = byte(b >> (8 * i))
	}
	var out [32]byte
	hex.Encode(out[:], raw[:])
	return string(out[:])
}
