package routing

import (
	"net"
	"net/http"
	"strings"

	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/filters"
)

// headerForwardedProto is the header the proxy sets on every request
// before the route lookup (package proxy, forwarded.go): "https" or "http"
// from this hop's connection, or the value a trusted proxy (the ALB) sent.
// A client that is not a trusted proxy cannot choose it.
const headerForwardedProto = "X-Forwarded-Proto"

// addSSLRedirect puts bulkheadSSLRedirect() right after
// bulkheadRestorePath, so that it sees the path as the client sent it and
// answers before anything else runs.
func addSSLRedirect(def *eskip.Route) {
	f := &eskip.Filter{Name: SSLRedirectName}
	at := 0
	if len(def.Filters) > 0 && def.Filters[0].Name == RestorePathName {
		at = 1
	}
	def.Filters = append(def.Filters[:at:at], append([]*eskip.Filter{f}, def.Filters[at:]...)...)
}

// NewSSLRedirectSpec returns the spec of the bulkheadSSLRedirect filter,
// for skipper's filter registry: every route of an Ingress with
// AnnotationSSLRedirect whose host its spec.tls serves carries it.
//
// A request is secure when its X-Forwarded-Proto is "https" (the first
// value, any case). That is the contract with the proxy: it sets the
// header on every request before the lookup, from the connection (TLS on
// our listener or not) unless the peer is a trusted proxy that sent one
// (then the client's hop to that proxy is what counts: an ALB that took
// plain HTTP and speaks HTTPS to us says "http"). An untrusted client's
// header is replaced, so it can neither cause nor suppress the redirect.
// Without the header (a caller that is not bulkhead's proxy), the
// connection decides. An insecure request is answered 308 Permanent
// Redirect to https://<host without port><path and query as sent>; 308
// keeps the method and body.
func NewSSLRedirectSpec() filters.Spec { return sslRedirectSpec{} }

type sslRedirectSpec struct{}

func (sslRedirectSpec) Name() string { return SSLRedirectName }

func (sslRedirectSpec) CreateFilter(args []any) (filters.Filter, error) {
	if len(args) != 0 {
		return nil, filters.ErrInvalidFilterParameters
	}
	return sslRedirectFilter{}, nil
}

type sslRedirectFilter struct{}

func (sslRedirectFilter) Request(ctx filters.FilterContext) {
	r := ctx.Request()
	if requestSecure(r) {
		return
	}
	ctx.Serve(&http.Response{StatusCode: http.StatusPermanentRedirect,
		Header: http.Header{"Location": []string{httpsURL(r)}, "Content-Length": []string{"0"}}})
}

func (sslRedirectFilter) Response(filters.FilterContext) {}

// requestSecure reports whether r came over TLS, as the proxy decided it
// in X-Forwarded-Proto.
func requestSecure(r *http.Request) bool {
	v := r.Header[headerForwardedProto]
	if len(v) == 0 {
		return r.TLS != nil
	}
	first, _, _ := strings.Cut(v[0], ",")
	return strings.EqualFold(strings.TrimSpace(first), "https")
}

// httpsURL is r's URL with https and the host without its port (the
// default port 443 is the TLS one).
func httpsURL(r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	return "https://" + host + r.URL.RequestURI()
}
