package proxy

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Header names set on every request forwarded to a pod.
const (
	HeaderForwardedFor   = "X-Forwarded-For"
	HeaderForwardedProto = "X-Forwarded-Proto"
	HeaderForwardedHost  = "X-Forwarded-Host"
	HeaderForwardedPort  = "X-Forwarded-Port"
	HeaderForwarded      = "Forwarded" // RFC 7239
	HeaderRequestID      = "X-Request-Id"
)

// ForwardedTrust says whose forwarded headers are believed.
type ForwardedTrust struct {
	// Proxies are the networks of the proxies in front of the router (an
	// ALB's VPC ranges). Empty: no peer is trusted.
	Proxies []netip.Prefix
	// Headers are the forwarded headers kept when a trusted proxy sends
	// them (ParseTrustedHeaders).
	Headers TrustedHeaders
}

// TrustedHeaders is a set of forwarded headers kept from trusted proxies.
// Only the headers the proxy itself sets belong in it: an ALB sets
// X-Forwarded-Proto and X-Forwarded-Port and passes a client's
// X-Forwarded-Host and Forwarded through unchanged, so trusting those
// behind it would trust the client.
type TrustedHeaders uint8

const (
	trustProto TrustedHeaders = 1 << iota
	trustPort
	trustHost
	trustForwarded
)

// DefaultTrustedHeaders are the headers an ALB sets itself.
const DefaultTrustedHeaders = HeaderForwardedProto + "," + HeaderForwardedPort

// ParseTrustedHeaders parses a comma-separated list of X-Forwarded-Proto,
// X-Forwarded-Port, X-Forwarded-Host and Forwarded (any case).
func ParseTrustedHeaders(list string) (TrustedHeaders, error) {
	var t TrustedHeaders
	for h := range strings.SplitSeq(list, ",") {
		switch http.CanonicalHeaderKey(strings.TrimSpace(h)) {
		case "":
		case HeaderForwardedProto:
			t |= trustProto
		case HeaderForwardedPort:
			t |= trustPort
		case HeaderForwardedHost:
			t |= trustHost
		case HeaderForwarded:
			t |= trustForwarded
		default:
			return 0, fmt.Errorf("%q is not a forwarded header that can be trusted (want %s, %s, %s or %s)",
				strings.TrimSpace(h), HeaderForwardedProto, HeaderForwardedPort, HeaderForwardedHost, HeaderForwarded)
		}
	}
	return t, nil
}

// keeps returns the headers kept from the peer ip (a literal address).
func (t *ForwardedTrust) keeps(ip string) TrustedHeaders {
	if len(t.Proxies) == 0 || t.Headers == 0 {
		return 0
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return 0
	}
	a = a.Unmap()
	for _, p := range t.Proxies {
		if p.Contains(a) {
			return t.Headers
		}
	}
	return 0
}

// setForwardedHeaders tells the pod who asked and how, the way load
// balancers in front of bulkhead (an ALB) and pods behind it expect, and
// believes no more of the client than it must:
//
//   - X-Forwarded-For: the peer address is appended to any list already
//     there (an ALB's entries stay first; an application reads the list
//     from the right, up to the first address it does not trust).
//   - X-Forwarded-Proto, X-Forwarded-Port, X-Forwarded-Host and Forwarded:
//     kept when a trusted proxy sends them and the header is one trusted
//     proxies may set; otherwise Proto and Host are set from this hop, Port
//     and Forwarded removed. A client cannot choose the host or scheme an
//     application builds its links from.
//   - X-Request-Id: kept when present, else a new random 128-bit hex id, so
//     one request can be followed across logs.
//
// It runs after removeConnectionListed, so no header a client lists in
// Connection can take these away. It runs on every request, so it avoids
// work it can skip: canonical header keys are used directly, and only the
// id, the appended list and X-Forwarded-Host allocate.
func setForwardedHeaders(r *http.Request, trust *ForwardedTrust) {
	h := r.Header
	var keep TrustedHeaders
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := h[HeaderForwardedFor]; len(prior) > 0 {
			h[HeaderForwardedFor] = []string{joinForwarded(prior, ip)}
		} else {
			h[HeaderForwardedFor] = []string{ip}
		}
		keep = trust.keeps(ip)
	}
	if keep&trustProto == 0 || len(h[HeaderForwardedProto]) == 0 {
		if r.TLS != nil {
			h[HeaderForwardedProto] = httpsValue
		} else {
			h[HeaderForwardedProto] = httpValue
		}
	}
	if keep&trustHost == 0 || len(h[HeaderForwardedHost]) == 0 {
		if r.Host != "" {
			h[HeaderForwardedHost] = []string{r.Host}
		} else {
			delete(h, HeaderForwardedHost)
		}
	}
	if keep&trustPort == 0 {
		delete(h, HeaderForwardedPort)
	}
	if keep&trustForwarded == 0 {
		delete(h, HeaderForwarded)
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
