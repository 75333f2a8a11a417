package routing

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dimfeld/httppath"
	"github.com/zalando/skipper/filters"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// The header filters of Gateway API routes. Skipper's own setRequestHeader
// and friends expand "${...}" templates in their values, and a user's
// header value must reach the pod as written: these filters take values
// literally. Arguments are triples (operation, name, value), operation
// "set" (replace), "add" (another value) or "remove" (value "").
const (
	RequestHeadersName  = "bulkheadRequestHeaders"
	ResponseHeadersName = "bulkheadResponseHeaders"
)

// NewRequestHeadersSpec and NewResponseHeadersSpec return the filter specs
// for skipper's filter registry.
func NewRequestHeadersSpec() filters.Spec { return headersSpec{name: RequestHeadersName} }
func NewResponseHeadersSpec() filters.Spec {
	return headersSpec{name: ResponseHeadersName, response: true}
}

type headersSpec struct {
	name     string
	response bool
}

func (s headersSpec) Name() string { return s.name }

type headerOp struct {
	op, name, value string
}

func (s headersSpec) CreateFilter(args []any) (filters.Filter, error) {
	if len(args) == 0 || len(args)%3 != 0 {
		return nil, filters.ErrInvalidFilterParameters
	}
	f := headersFilter{response: s.response}
	for i := 0; i < len(args); i += 3 {
		op, ok1 := args[i].(string)
		name, ok2 := args[i+1].(string)
		value, ok3 := args[i+2].(string)
		if !ok1 || !ok2 || !ok3 || name == "" || op != "set" && op != "add" && op != "remove" {
			return nil, filters.ErrInvalidFilterParameters
		}
		f.ops = append(f.ops, headerOp{op, http.CanonicalHeaderKey(name), value})
	}
	return f, nil
}

type headersFilter struct {
	response bool
	ops      []headerOp
}

func (f headersFilter) apply(h http.Header) {
	for _, o := range f.ops {
		switch o.op {
		case "set":
			h[o.name] = []string{o.value}
		case "add":
			h[o.name] = append(h[o.name], o.value)
		case "remove":
			delete(h, o.name)
		}
	}
}

func (f headersFilter) Request(ctx filters.FilterContext) {
	if !f.response {
		f.apply(ctx.Request().Header)
	}
}

func (f headersFilter) Response(ctx filters.FilterContext) {
	if f.response {
		f.apply(ctx.Response().Header)
	}
}

// headerFilterArgs turns an HTTPHeaderFilter into the arguments of a
// headers filter, in the spec's order (set, add, remove); nil when empty.
// A name that is not an HTTP header name (the CRD's validation refuses
// them, but a snapshot may hold anything) is refused: the filter would
// refuse it, and skipper the route.
func headerFilterArgs(m *gatewayv1.HTTPHeaderFilter) ([]any, string) {
	if m == nil {
		return nil, ""
	}
	var args []any
	for _, h := range m.Set {
		args = append(args, "set", string(h.Name), h.Value)
	}
	for _, h := range m.Add {
		args = append(args, "add", string(h.Name), h.Value)
	}
	for _, n := range m.Remove {
		args = append(args, "remove", n, "")
	}
	for i := 1; i < len(args); i += 3 {
		if n := args[i].(string); !validHeaderName(n) {
			return nil, fmt.Sprintf("header name %q is not valid", n)
		}
	}
	return args, ""
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// RequestRedirect and URLRewrite. Both take "key=value" string arguments,
// like bulkheadUpstream's, so that a route reads as what it does:
//
//	bulkheadRedirect("status=301", "listener-port=80", "scheme=https", "hostname=example.org")
//	bulkheadRewrite("hostname=internal.example", "prefix=/api", "replace-prefix=/")
//
// Keys: status (301, 302, 303, 307 or 308; redirect only, required),
// listener-port (the Gateway listener port of the route; redirect only,
// required), scheme (http or https; redirect only), port (redirect only),
// hostname, and the path modifier: full-path, or prefix (the match's path
// prefix, as the route matched it) with replace-prefix (may be empty).
// Both come after bulkheadRestorePath, so they see the path the client
// sent, never the host key PrepareRequest puts in front of it.
const (
	RedirectName = "bulkheadRedirect"
	RewriteName  = "bulkheadRewrite"
)

const (
	argStatus        = "status"
	argListenerPort  = "listener-port"
	argScheme        = "scheme"
	argPort          = "port"
	argHostname      = "hostname"
	argFullPath      = "full-path"
	argPrefix        = "prefix"
	argReplacePrefix = "replace-prefix"
)

// NewRedirectSpec returns the spec of bulkheadRedirect, for skipper's
// filter registry. The filter answers the request itself (the route's
// backend is <shunt>) with the status and a Location computed as the
// Gateway API's HTTPRequestRedirectFilter says:
//
//   - scheme: the filter's, else the request's (https when it came over
//     TLS, else http; X-Forwarded-Proto is not trusted, a client sets it);
//   - hostname: the filter's, else the request's Host without its port;
//   - port: the filter's; else, when the filter sets a scheme, that
//     scheme's well-known port (80, 443); else the Gateway listener port.
//     Port 80 with http and 443 with https are left out of the Location;
//   - path: the request path as sent, or with its full path or its
//     matched prefix replaced (see rewritePath); the query is kept.
//
// Other response filters of the route (ResponseHeaderModifier) still run
// on the redirect: skipper runs the response side of every filter that
// ran before the one that served.
func NewRedirectSpec() filters.Spec { return redirectSpec{} }

// NewRewriteSpec returns the spec of bulkheadRewrite, for skipper's filter
// registry. It gives the request sent to the pod another Host header
// (skipper's outgoing host, which is what the pod sees) and/or another
// path (see rewritePath); the query is kept.
func NewRewriteSpec() filters.Spec { return rewriteSpec{} }

// pathModifier is an HTTPPathModifier: full replaces the whole path;
// else, when hasPrefix, the matched prefix is replaced by replace.
type pathModifier struct {
	full               string
	hasFull, hasPrefix bool
	prefix, replace    string
	hasReplace         bool
}

func (m pathModifier) set() bool { return m.hasFull || m.hasPrefix }

// parseKeyArgs reads "key=value" arguments into a map; a key twice, or a
// key not in allowed, is an error.
func parseKeyArgs(args []any, allowed ...string) (map[string]string, error) {
	out := make(map[string]string, len(args))
	for _, a := range args {
		s, ok := a.(string)
		if !ok {
			return nil, filters.ErrInvalidFilterParameters
		}
		k, v, ok := strings.Cut(s, "=")
		if _, dup := out[k]; !ok || dup || !slices.Contains(allowed, k) {
			return nil, filters.ErrInvalidFilterParameters
		}
		out[k] = v
	}
	return out, nil
}

// parsePathModifier reads full-path, or prefix with replace-prefix.
func parsePathModifier(kv map[string]string) (pathModifier, error) {
	var m pathModifier
	m.full, m.hasFull = kv[argFullPath]
	m.prefix, m.hasPrefix = kv[argPrefix]
	m.replace, m.hasReplace = kv[argReplacePrefix]
	switch {
	case m.hasFull && (m.hasPrefix || m.hasReplace),
		m.hasPrefix != m.hasReplace,
		m.hasFull && !strings.HasPrefix(m.full, "/"),
		m.hasPrefix && !strings.HasPrefix(m.prefix, "/"),
		m.hasReplace && m.replace != "" && !strings.HasPrefix(m.replace, "/"):
		return m, filters.ErrInvalidFilterParameters
	}
	return m, nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, filters.ErrInvalidFilterParameters
	}
	return p, nil
}

type redirectSpec struct{}

func (redirectSpec) Name() string { return RedirectName }

func (redirectSpec) CreateFilter(args []any) (filters.Filter, error) {
	kv, err := parseKeyArgs(args, argStatus, argListenerPort, argScheme, argPort, argHostname, argFullPath, argPrefix, argReplacePrefix)
	if err != nil {
		return nil, err
	}
	var f redirectFilter
	switch kv[argStatus] {
	case "301", "302", "303", "307", "308":
		f.status, _ = strconv.Atoi(kv[argStatus])
	default:
		return nil, filters.ErrInvalidFilterParameters
	}
	if f.listenerPort, err = parsePort(kv[argListenerPort]); err != nil {
		return nil, err
	}
	if s, ok := kv[argScheme]; ok {
		if s != "http" && s != "https" {
			return nil, filters.ErrInvalidFilterParameters
		}
		f.scheme = s
	}
	if p, ok := kv[argPort]; ok {
		if f.port, err = parsePort(p); err != nil {
			return nil, err
		}
	}
	if h, ok := kv[argHostname]; ok {
		if h == "" {
			return nil, filters.ErrInvalidFilterParameters
		}
		f.hostname = h
	}
	if f.path, err = parsePathModifier(kv); err != nil {
		return nil, err
	}
	return f, nil
}

type redirectFilter struct {
	status       int
	listenerPort int
	scheme       string
	port         int
	hostname     string
	path         pathModifier
}

func (f redirectFilter) Request(ctx filters.FilterContext) {
	ctx.Serve(&http.Response{
		StatusCode: f.status,
		Header:     http.Header{"Location": {f.location(ctx.Request())}},
	})
}

func (redirectFilter) Response(filters.FilterContext) {}

// location is the redirect's target for r (see NewRedirectSpec).
func (f redirectFilter) location(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	port := f.listenerPort
	if f.scheme != "" {
		scheme = f.scheme
		port = wellKnownPort(scheme)
	}
	if f.port != 0 {
		port = f.port
	}
	host := f.hostname
	if host == "" {
		host = hostWithoutPort(r.Host)
	}
	if strings.IndexByte(host, ':') >= 0 && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]" // a bare IPv6 literal
	}
	var b strings.Builder
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	if port != wellKnownPort(scheme) {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(port))
	}
	u := r.URL
	if u == nil {
		u = &url.URL{}
	}
	path := u.EscapedPath()
	if f.path.set() {
		p, raw := rewritePath(u, f.path)
		path = (&url.URL{Path: p, RawPath: raw}).EscapedPath()
	}
	if path == "" {
		path = "/"
	}
	b.WriteString(path)
	if u.RawQuery != "" {
		b.WriteByte('?')
		b.WriteString(u.RawQuery)
	}
	return b.String()
}

func wellKnownPort(scheme string) int {
	if scheme == "https" {
		return 443
	}
	return 80
}

// hostWithoutPort is a Host header without its port: "[::1]:80" is
// "[::1]", "foo.com:8080" is "foo.com"; a bare IPv6 address is left whole.
func hostWithoutPort(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			return host[:i+1]
		}
		return host
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host[:i], ':') < 0 {
		return host[:i]
	}
	return host
}

type rewriteSpec struct{}

func (rewriteSpec) Name() string { return RewriteName }

func (rewriteSpec) CreateFilter(args []any) (filters.Filter, error) {
	kv, err := parseKeyArgs(args, argHostname, argFullPath, argPrefix, argReplacePrefix)
	if err != nil {
		return nil, err
	}
	var f rewriteFilter
	if h, ok := kv[argHostname]; ok {
		if h == "" {
			return nil, filters.ErrInvalidFilterParameters
		}
		f.hostname = h
	}
	if f.path, err = parsePathModifier(kv); err != nil {
		return nil, err
	}
	if f.hostname == "" && !f.path.set() {
		return nil, filters.ErrInvalidFilterParameters
	}
	return f, nil
}

type rewriteFilter struct {
	hostname string
	path     pathModifier
}

func (f rewriteFilter) Request(ctx filters.FilterContext) {
	if f.hostname != "" {
		ctx.SetOutgoingHost(f.hostname)
	}
	if u := ctx.Request().URL; u != nil && f.path.set() {
		u.Path, u.RawPath = rewritePath(u, f.path)
	}
}

func (rewriteFilter) Response(filters.FilterContext) {}

// rewritePath is u's path (decoded, and its escaped form when that is not
// the default one) after the modifier m:
//
//   - full-path replaces the path;
//   - prefix / replace-prefix replaces the matched prefix element by
//     element, as the PathPrefix match compared it (trailing '/' of either
//     ignored), keeping the rest: "/foo/bar" with prefix "/foo" and
//     replacement "/xyz" is "/xyz/bar", with "" or "/" it is "/bar";
//     "/foo/" with "/xyz" is "/xyz/"; an empty result is "/". The prefix
//     "/" covers the path "/" whole: "/" becomes "/xyz".
//
// The prefix is compared on the cleaned path, as the route matched it, so
// a path that was not clean is sent clean after a prefix replacement.
// Escapes the client sent in the rest of the path ("%2F") are kept; when
// the prefix itself was escaped across segments, the decoded path is used.
// Replacement values are read as escaped paths.
func rewritePath(u *url.URL, m pathModifier) (path, raw string) {
	if m.hasFull {
		return unescapedPath(m.full), m.full
	}
	prefix := strings.TrimSuffix(m.prefix, "/")
	repl := strings.TrimSuffix(m.replace, "/")
	esc := u.EscapedPath()
	if esc == "" {
		esc = "/"
	}
	if rest, ok := cutPrefixSegments(httppath.Clean(esc), prefix); ok {
		raw := absolute(repl + rootRest(prefix, rest))
		if p, err := url.PathUnescape(raw); err == nil {
			return p, raw
		}
	}
	clean := u.Path
	if clean == "" {
		clean = "/"
	}
	clean = httppath.Clean(clean)
	rest, ok := strings.CutPrefix(clean, prefix)
	if !ok || rest != "" && rest[0] != '/' {
		return u.Path, u.RawPath // not the matched prefix: the route did not match this path
	}
	return absolute(unescapedPath(repl) + rootRest(prefix, rest)), ""
}

// rootRest is the rest of the path after the prefix, except that the
// prefix "/" (here "") covers the whole path "/": "/" with "/" replaced
// by "/xyz" is "/xyz", not "/xyz/".
func rootRest(prefix, rest string) string {
	if prefix == "" && rest == "/" {
		return ""
	}
	return rest
}

// cutPrefixSegments cuts the decoded path prefix (no trailing '/'; ""
// for "/") from the escaped path esc, element by element, and returns the
// escaped rest ("" or starting with '/').
func cutPrefixSegments(esc, prefix string) (string, bool) {
	if prefix == "" {
		return esc, true
	}
	pos := 0
	for seg := range strings.SplitSeq(prefix[1:], "/") {
		if pos >= len(esc) || esc[pos] != '/' {
			return "", false
		}
		end := strings.IndexByte(esc[pos+1:], '/')
		if end < 0 {
			end = len(esc)
		} else {
			end += pos + 1
		}
		dec, err := url.PathUnescape(esc[pos+1 : end])
		if err != nil || dec != seg {
			return "", false
		}
		pos = end
	}
	return esc[pos:], true
}

func absolute(p string) string {
	if p == "" || p[0] != '/' {
		return "/" + p
	}
	return p
}

func unescapedPath(p string) string {
	if s, err := url.PathUnescape(p); err == nil {
		return s
	}
	return p
}

// redirectFilterArgs translates a RequestRedirect; a non-empty string
// says which value is not supported (the route is then not Accepted, as
// the spec asks for unknown schemes, status codes and path types). The
// listener port and, for ReplacePrefixMatch, the match's prefix are added
// per emitted route (gwFilter.eskip).
func redirectFilterArgs(r *gatewayv1.HTTPRequestRedirectFilter) (gwFilter, string) {
	if r == nil {
		return gwFilter{}, "requestRedirect is missing"
	}
	status := 302
	if r.StatusCode != nil {
		status = *r.StatusCode
	}
	switch status {
	case 301, 302, 303, 307, 308:
	default:
		return gwFilter{}, fmt.Sprintf("statusCode %d is not supported", status)
	}
	f := gwFilter{name: RedirectName, args: []any{argStatus + "=" + strconv.Itoa(status)}}
	if r.Scheme != nil {
		if *r.Scheme != "http" && *r.Scheme != "https" {
			return gwFilter{}, fmt.Sprintf("scheme %q is not supported", *r.Scheme)
		}
		f.args = append(f.args, argScheme+"="+*r.Scheme)
	}
	if r.Hostname != nil {
		h, err := preciseHostname(string(*r.Hostname))
		if err != "" {
			return gwFilter{}, err
		}
		f.args = append(f.args, argHostname+"="+h)
	}
	if r.Port != nil {
		if *r.Port < 1 || *r.Port > 65535 {
			return gwFilter{}, fmt.Sprintf("port %d is not a port", *r.Port)
		}
		f.args = append(f.args, argPort+"="+strconv.Itoa(int(*r.Port)))
	}
	return withPathModifier(f, r.Path)
}

// rewriteFilterArgs translates a URLRewrite (see redirectFilterArgs); one
// that changes nothing has no arguments and is left out.
func rewriteFilterArgs(r *gatewayv1.HTTPURLRewriteFilter) (gwFilter, string) {
	if r == nil {
		return gwFilter{}, "urlRewrite is missing"
	}
	f := gwFilter{name: RewriteName}
	if r.Hostname != nil {
		h, err := preciseHostname(string(*r.Hostname))
		if err != "" {
			return gwFilter{}, err
		}
		f.args = append(f.args, argHostname+"="+h)
	}
	return withPathModifier(f, r.Path)
}

func withPathModifier(f gwFilter, p *gatewayv1.HTTPPathModifier) (gwFilter, string) {
	if p == nil {
		return f, ""
	}
	switch p.Type {
	case gatewayv1.FullPathHTTPPathModifier:
		if p.ReplaceFullPath == nil || !strings.HasPrefix(*p.ReplaceFullPath, "/") {
			return gwFilter{}, "replaceFullPath must be an absolute path"
		}
		f.args = append(f.args, argFullPath+"="+*p.ReplaceFullPath)
	case gatewayv1.PrefixMatchHTTPPathModifier:
		if p.ReplacePrefixMatch == nil || *p.ReplacePrefixMatch != "" && !strings.HasPrefix(*p.ReplacePrefixMatch, "/") {
			return gwFilter{}, "replacePrefixMatch must be empty or an absolute path"
		}
		f.args = append(f.args, argReplacePrefix+"="+*p.ReplacePrefixMatch)
		f.prefix = true
	default:
		return gwFilter{}, fmt.Sprintf("path modifier type %q is not supported", p.Type)
	}
	return f, ""
}

// preciseHostname checks a redirect or rewrite hostname: a DNS name, no
// wildcard; lowercased.
func preciseHostname(h string) (string, string) {
	vh, err := ruleVHost(h)
	if err != nil || vh == anyHostVHostKey || strings.HasPrefix(vh, wildcardPrefix) {
		return "", fmt.Sprintf("hostname %q is not a DNS name", h)
	}
	return vh, ""
}

// Keys of the upstream layer's policy filter (bulkheadUpstream) that
// Gateway timeouts set, as the Ingress annotations of the same names do.
const (
	policyRequestTimeout        = "request-timeout"
	policyResponseHeaderTimeout = "response-header-timeout"
	maxPolicyTimeout            = 24 * time.Hour
)

// gatewayDuration is GEP-2257's Duration syntax.
var gatewayDuration = regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`)

// timeoutPolicy turns a rule's timeouts into bulkheadUpstream arguments:
// request bounds the whole request, retries and response body included
// (request-timeout); backendRequest bounds each attempt to a pod, until
// its response headers (response-header-timeout: the upstream layer has
// no per-attempt bound on the body, which request covers). "0s" disables
// either. A value that does not parse, above 24h (the upstream layer's
// limit), or a backendRequest above a non-zero request is refused.
func timeoutPolicy(to *gatewayv1.HTTPRouteTimeouts) ([]any, string) {
	if to == nil {
		return nil, ""
	}
	parse := func(field string, d *gatewayv1.Duration) (time.Duration, bool, string) {
		if d == nil {
			return 0, false, ""
		}
		v, err := time.ParseDuration(string(*d))
		if !gatewayDuration.MatchString(string(*d)) || err != nil {
			return 0, false, fmt.Sprintf("%s %q is not a Gateway API duration", field, *d)
		}
		if v > maxPolicyTimeout {
			return 0, false, fmt.Sprintf("%s %s is above the supported %s", field, *d, maxPolicyTimeout)
		}
		return v, true, ""
	}
	req, reqSet, err := parse("request", to.Request)
	if err != "" {
		return nil, err
	}
	be, beSet, err := parse("backendRequest", to.BackendRequest)
	if err != "" {
		return nil, err
	}
	if reqSet && beSet && req != 0 && be > req {
		return nil, fmt.Sprintf("backendRequest %s must not be longer than request %s", *to.BackendRequest, *to.Request)
	}
	var args []any
	if reqSet {
		args = append(args, policyRequestTimeout+"="+req.String())
	}
	if beSet {
		args = append(args, policyResponseHeaderTimeout+"="+be.String())
	}
	return args, ""
}

// gwMirror is a RequestMirror: the mirror backend's key and the fraction
// of requests copied to it.
type gwMirror struct {
	key      BackendKey
	fraction float64
}

// requestMirror translates a RequestMirror. err says which value makes the
// route not Accepted (both percent and fraction, or one out of range);
// reason and msg why the mirror's backendRef does not resolve (the same
// reasons as a backendRef's): the rule is then served without the mirror.
func (t *gatewayTranslation) requestMirror(hr *gatewayv1.HTTPRoute, f *gatewayv1.HTTPRequestMirrorFilter) (m gwMirror, err, reason, msg string) {
	if f == nil {
		return m, "requestMirror is missing", "", ""
	}
	m.fraction = 1
	switch {
	case f.Percent != nil && f.Fraction != nil:
		return m, "only one of percent and fraction may be set", "", ""
	case f.Percent != nil:
		if *f.Percent < 0 || *f.Percent > 100 {
			return m, fmt.Sprintf("percent %d is not from 0 to 100", *f.Percent), "", ""
		}
		m.fraction = float64(*f.Percent) / 100
	case f.Fraction != nil:
		den := int32(100)
		if f.Fraction.Denominator != nil {
			den = *f.Fraction.Denominator
		}
		if den < 1 || f.Fraction.Numerator < 0 || f.Fraction.Numerator > den {
			return m, fmt.Sprintf("fraction %d/%d is not from 0 to 1", f.Fraction.Numerator, den), "", ""
		}
		m.fraction = float64(f.Fraction.Numerator) / float64(den)
	}
	b, reason, msg := t.backendRef(hr, &gatewayv1.BackendRef{BackendObjectReference: f.BackendRef})
	if reason != "" {
		return m, "", reason, msg
	}
	m.key = b.key
	return m, "", "", ""
}
