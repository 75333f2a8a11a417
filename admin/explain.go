package admin

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dimfeld/httppath"
	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/predicates"
	skrouting "github.com/zalando/skipper/routing"

	"github.com/bulkhead-router/bulkhead/routing"
	"github.com/bulkhead-router/bulkhead/upstream"
)

// Matcher is the serving path's route lookup: proxy.(*Proxy).Match. It
// prepares r in place as the proxy does before skipper's lookup and
// returns the route skipper's live matcher chose (nil: none, the proxy
// answers 404), or the status the proxy refuses r with before any lookup.
type Matcher interface {
	Match(r *http.Request) (route *skrouting.Route, refused int)
}

// ExplainOptions are what GET /explain needs besides the table and the
// endpoints.
type ExplainOptions struct {
	// Matcher finds the route that wins: the proxy's own lookup, never a
	// second implementation of it.
	Matcher Matcher
	// Predicates are the custom predicate specifications the proxy's
	// skipper routing registers. The other candidates' predicates are made
	// from them, to say which of them fails for the request.
	Predicates []skrouting.PredicateSpec
	// GatewayPort is the Gateway listener port of the proxy listener
	// (0: none), the port a request is explained as arriving on unless
	// ?port= names another.
	GatewayPort int32
	// Defaults is the policy of routes without their own
	// (upstream.(*Upstream).DefaultPolicy).
	Defaults upstream.Policy
	// Retries describes the upstream layer's retry settings.
	Retries RetrySettings
}

// RetrySettings are the upstream layer's retry settings, the same for
// every route (a route's policy adds only retry-non-idempotent).
type RetrySettings struct {
	// MaxRetries per request, on another endpoint.
	MaxRetries int `json:"maxRetries"`
	// Budget per backend: retries at most BudgetRatio of the requests plus
	// BudgetPerSecond per second, over BudgetWindow.
	BudgetRatio     float64  `json:"budgetRatio"`
	BudgetPerSecond float64  `json:"budgetPerSecond"`
	BudgetWindow    Duration `json:"budgetWindow"`
	// Deadline: no retry starts unless a whole attempt fits this long
	// after the first attempt began (0: none).
	Deadline Duration `json:"deadline"`
}

// Duration is a time.Duration shown in Go's syntax ("30s") in JSON.
type Duration time.Duration

// MarshalJSON writes d as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, time.Duration(d).String()), nil
}

// UnmarshalJSON reads "1m30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// Explanation is GET /explain's answer in JSON (Accept: application/json).
// Fields are only added, never renamed.
type Explanation struct {
	Request ExplainedRequest `json:"request"`
	// Refused is the status the proxy answers before any route lookup
	// (header limits: 414, 431), else 0.
	Refused int `json:"refused,omitempty"`
	// Route is the route that wins, absent when none matches.
	Route *ExplainedRoute `json:"route,omitempty"`
	// Answer says what the router does with the request: the backend it
	// forwards to, or the status it answers itself (404 without a route).
	Answer string `json:"answer"`
	// Backend is the winning route's backend with its endpoints; absent
	// when the route has none (the router answers itself).
	Backend *ExplainedBackend `json:"backend,omitempty"`
	// Policy applies to the requests of the winning route's backend.
	Policy *ExplainedPolicy `json:"policy,omitempty"`
	// Candidates are the other routes for the request's host (exact,
	// wildcard, any host, the default backend; without a route, also
	// those of neighbouring hosts), each with why it did not win.
	Candidates []Candidate `json:"candidates"`
	// More counts the candidates left out of the list (it is capped).
	More int `json:"more,omitempty"`
	// Notes are caveats: what the explanation cannot know or left out.
	Notes []string `json:"notes,omitempty"`
}

// ExplainedRequest is the request as it was explained.
type ExplainedRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
	Host   string `json:"host"`
	// Path is the request's path; LookupPath the one skipper matched
	// (PrepareRequest puts the host key in front).
	Path       string              `json:"path"`
	LookupPath string              `json:"lookupPath"`
	Headers    map[string][]string `json:"headers"` // as the route lookup saw them (forwarded headers set)
	// GatewayPort is the Gateway listener port the request arrives on (0:
	// none: no Gateway route can match).
	GatewayPort int32 `json:"gatewayPort"`
	// Remote is the client address the request is explained as coming
	// from (?remote=; default 192.0.2.1, a documentation address no
	// -trusted-proxies range should hold): it decides whose forwarded
	// headers are believed.
	Remote string `json:"remote"`
}

// ExplainedRoute is one route and where it comes from.
type ExplainedRoute struct {
	ID string `json:"id"`
	// Origin is the one-line answer to "where does this route come from?",
	// as /routes prints it.
	Origin string `json:"origin"`
	// Object is the route's entry in the table (its Ingress, HTTPRoute or
	// GRPCRoute, host, path, backend); absent for a route the table does
	// not have (skipper's table changing under the question).
	Object *routing.Route `json:"object,omitempty"`
	Eskip  string         `json:"eskip"`
}

// Candidate is a route that did not win, and why.
type Candidate struct {
	ExplainedRoute
	// Matches: every condition of the route holds; it lost on precedence
	// (Reason says how, as far as it can be told).
	Matches bool `json:"matches"`
	// Failed lists the conditions that do not hold, each with the
	// request's side of it.
	Failed []string `json:"failed,omitempty"`
	Reason string   `json:"reason"`
}

// ExplainedBackend is the winning route's backend.
type ExplainedBackend struct {
	Name string `json:"name"`
	// Balancing is least-in-flight or round-robin; Protocol http, h2c or
	// tls toward the pods.
	Balancing string `json:"balancing"`
	Protocol  string `json:"protocol"`
	// Endpoints with their EndpointSlice conditions and breaker states;
	// empty: the backend answers 503.
	Endpoints []Endpoint `json:"endpoints"`
}

// ExplainedPolicy is the upstream policy that applies: the route's own
// settings over the router's defaults, and the retry settings.
type ExplainedPolicy struct {
	ConnectTimeout        Duration `json:"connectTimeout"`
	ResponseHeaderTimeout Duration `json:"responseHeaderTimeout"` // 0: none
	RequestTimeout        Duration `json:"requestTimeout"`        // 0: none
	SlowStart             Duration `json:"slowStart"`             // 0: off
	RetryNonIdempotent    bool     `json:"retryNonIdempotent"`
	// RouteArgs are the route's bulkheadUpstream arguments (its
	// annotations or timeouts); empty: the router's defaults throughout.
	RouteArgs []string      `json:"routeArgs,omitempty"`
	Retries   RetrySettings `json:"retries"`
}

// maxCandidates caps the list: a host-less rule set can be long.
const maxCandidates = 50

func serveExplain(w http.ResponseWriter, r *http.Request, source TableSource, endpoints EndpointSource, o *ExplainOptions) {
	req, err := explainRequest(r.URL.Query(), o.GatewayPort)
	if err != nil {
		http.Error(w, "bad request: "+err.Error()+"\n", http.StatusBadRequest)
		return
	}
	t, ok := currentTable(w, source)
	if !ok {
		return
	}
	var backends []Backend
	if endpoints != nil {
		backends = endpoints()
	}
	x := explain(req, t, backends, o)
	if wantsJSON(r) {
		writeJSON(w, x)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, x.Text())
}

// explainRequest builds the request to explain from the query: url
// (absolute http or https; the Host comes from it), method (GET),
// header=Name:Value (repeatable), port (the Gateway listener port),
// remote (the client address the proxy sees).
func explainRequest(q url.Values, defaultPort int32) (*http.Request, error) {
	for k := range q {
		switch k {
		case "url", "method", "header", "port", "remote":
		default:
			return nil, fmt.Errorf("unknown parameter %q (want url, method, header, port, remote)", k)
		}
	}
	raw := q.Get("url")
	if raw == "" {
		return nil, errors.New("url is required: /explain?url=http://shop.example.com/cart")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("url %q: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("url %q: want an absolute http:// or https:// URL with a host", raw)
	}
	if u.User != nil {
		return nil, fmt.Errorf("url %q: user information is not part of a request", raw)
	}
	method := cmp.Or(q.Get("method"), http.MethodGet)
	if !isToken(method) {
		return nil, fmt.Errorf("method %q is not an HTTP method token", method)
	}
	h := http.Header{}
	for _, hv := range q["header"] {
		name, value, ok := strings.Cut(hv, ":")
		if !ok || !isToken(name) {
			return nil, fmt.Errorf("header %q: want Name: value", hv)
		}
		value = strings.TrimSpace(value)
		if strings.ContainsAny(value, "\r\n\x00") {
			return nil, fmt.Errorf("header %q: the value has a line break or NUL", hv)
		}
		if strings.EqualFold(name, "Host") {
			return nil, errors.New("header Host: the host comes from the url")
		}
		h.Add(name, value)
	}
	port := defaultPort
	if p := q.Get("port"); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("port %q: want the Gateway listener port the request arrives on, 1 to 65535", p)
		}
		port = int32(n)
	}
	remote := cmp.Or(q.Get("remote"), "192.0.2.1")
	ip := net.ParseIP(remote)
	if ip == nil {
		return nil, fmt.Errorf("remote %q: want the client's IP address", remote)
	}
	ctx := context.Background()
	if port > 0 {
		ctx = routing.WithGatewayPort(ctx, port)
	}
	req := (&http.Request{
		Method: method, Host: u.Host, Header: h,
		URL:        &url.URL{Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery},
		RequestURI: u.RequestURI(),
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		RemoteAddr: net.JoinHostPort(ip.String(), "0"),
		Body:       http.NoBody,
	}).WithContext(ctx)
	if u.Scheme == "https" {
		req.TLS = &tls.ConnectionState{ServerName: u.Hostname()}
	}
	return req, nil
}

// isToken reports whether s is an RFC 9110 token (methods, header names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// explain answers for req. It runs per admin request, never on the
// traffic path; req is consumed (prepared in place by the Matcher).
func explain(req *http.Request, t routing.Table, backends []Backend, o *ExplainOptions) Explanation {
	shown := req.URL.String()
	scheme := "http://"
	if req.TLS != nil {
		scheme = "https://"
	}
	x := Explanation{Request: ExplainedRequest{Method: req.Method, URL: scheme + req.Host + shown, Host: req.Host,
		Path: cmp.Or(req.URL.Path, "/")}, Candidates: []Candidate{}}
	x.Request.Remote, _, _ = net.SplitHostPort(req.RemoteAddr)
	if port, ok := routing.GatewayPortFrom(req.Context()); ok {
		x.Request.GatewayPort = port
	}
	live, refused := o.Matcher.Match(req)
	x.Request.LookupPath = req.URL.Path
	x.Request.Headers = req.Header
	if refused != 0 {
		x.Refused = refused
		x.Answer = fmt.Sprintf("%d %s before any route lookup (the header limits: -max-header-field-bytes, -max-header-count)", refused, http.StatusText(refused))
		return x
	}
	specs := make(map[string]skrouting.PredicateSpec, len(o.Predicates))
	for _, s := range o.Predicates {
		specs[s.Name()] = s
	}
	path := httppath.Clean(req.URL.Path)
	rc := requestConds{r: req, path: path, segs: segments(path), gatewayPort: x.Request.GatewayPort}

	var winner *conds
	if live != nil {
		er := ExplainedRoute{ID: live.Id, Eskip: live.Route.String()}
		def := &live.Route
		if rt, ok := tableRoute(t, live.Id); ok {
			er.Object, er.Origin, er.Eskip, def = rt, origin(*rt), rt.Eskip.String(), rt.Eskip
		} else {
			er.Origin = "not in the current table (a table change is on its way to skipper)"
		}
		x.Route = &er
		winner = newConds(def, specs)
		x.Answer, x.Backend, x.Policy = answer(&live.Route, backends, o)
		if hasPredicate(def, "TrafficSegment") {
			x.Notes = append(x.Notes, "the route is one share of a weighted split (TrafficSegment): each request draws its share anew, so another request may take another share")
		}
	} else {
		x.Answer = "404 Not Found: no route matches"
		if x.Request.GatewayPort == 0 {
			x.Notes = append(x.Notes, "explained as arriving on a listener that serves no Gateway port: no HTTPRoute or GRPCRoute can match (?port= names one)")
		}
	}

	host := requestHost(req.Host)
	var matching, failing []Candidate
	for i := range t.Routes {
		rt := t.Routes[i]
		if live != nil && rt.Eskip.Id == live.Id {
			continue
		}
		if !isCandidate(rt, host, live == nil) {
			continue
		}
		c := Candidate{ExplainedRoute: ExplainedRoute{ID: rt.Eskip.Id, Origin: origin(*rt), Object: rt, Eskip: rt.Eskip.String()}}
		cd := newConds(rt.Eskip, specs)
		c.Failed = cd.failures(&rc, rt)
		if len(c.Failed) == 0 {
			c.Matches = true
			c.Reason = precedence(winner, cd)
			matching = append(matching, c)
			continue
		}
		c.Reason = "does not match: " + strings.Join(c.Failed, "; ")
		failing = append(failing, c)
	}
	x.Candidates = append(append(x.Candidates, matching...), failing...)
	if len(x.Candidates) > maxCandidates {
		x.More = len(x.Candidates) - maxCandidates
		x.Candidates = x.Candidates[:maxCandidates]
	}
	x.Notes = append(x.Notes, "the body is not considered (its limits and timeouts apply as it is read), nor the filters after the lookup (redirects, rewrites)")
	return x
}

func tableRoute(t routing.Table, id string) (*routing.Route, bool) {
	i, ok := slices.BinarySearchFunc(t.Routes, id, func(r *routing.Route, id string) int { return cmp.Compare(r.Eskip.Id, id) })
	if !ok {
		return nil, false
	}
	return t.Routes[i], true
}

func hasPredicate(def *eskip.Route, name string) bool {
	return slices.ContainsFunc(def.Predicates, func(p *eskip.Predicate) bool { return p.Name == name })
}

// requestHost is the request's host as the routes' vhosts are written:
// lowercase, without port and trailing dot.
func requestHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// isCandidate: the route's host covers the request's (exactly, a wildcard
// at any depth, any host, the default backend); with near (no route
// matched) also the routes of neighbouring hosts: the same parent domain,
// or the request host's parent or child.
func isCandidate(rt *routing.Route, host string, near bool) bool {
	v := rt.VirtualHost
	switch {
	case rt.Gateway == nil && rt.DefaultBackend, v == "", v == host:
		return true
	case strings.HasPrefix(v, "*."):
		return strings.HasSuffix(host, v[1:])
	case !near:
		return false
	}
	parent := func(h string) string { _, p, _ := strings.Cut(h, "."); return p }
	p := parent(host)
	return strings.Contains(p, ".") && parent(v) == p || parent(v) == host || v == p
}

// answer says what the router does with a request on route, and the
// backend and policy when it forwards.
func answer(route *eskip.Route, backends []Backend, o *ExplainOptions) (string, *ExplainedBackend, *ExplainedPolicy) {
	var be *ExplainedBackend
	var policyArgs []string
	status := 0
	for _, f := range route.Filters {
		switch f.Name {
		case upstream.BackendFilterName:
			be = backendOf(f.Args)
		case upstream.PolicyFilterName:
			for _, a := range f.Args {
				s, _ := a.(string)
				policyArgs = append(policyArgs, s)
			}
		case "status":
			if len(f.Args) == 1 {
				if n, ok := f.Args[0].(float64); ok {
					status = int(n)
				}
			}
		case routing.RedirectName:
			return "answered by the router: a redirect (HTTPRoute RequestRedirect)", nil, nil
		}
	}
	if be == nil {
		if status != 0 {
			return fmt.Sprintf("%d %s, answered by the router (no usable backend: see /problems)", status, http.StatusText(status)), nil, nil
		}
		return "answered by the router itself (the route has no backend)", nil, nil
	}
	for _, b := range backends {
		if b.Name == be.Name {
			be.Endpoints = b.Endpoints
		}
	}
	if be.Endpoints == nil {
		be.Endpoints = []Endpoint{}
	}
	pol, err := upstream.ParsePolicy(policyArgs)
	if err != nil {
		return fmt.Sprintf("the route's %s arguments do not parse (%v): skipper refuses such a route", upstream.PolicyFilterName, err), be, nil
	}
	d := o.Defaults
	p := &ExplainedPolicy{ConnectTimeout: Duration(d.ConnectTimeout), ResponseHeaderTimeout: Duration(d.ResponseHeaderTimeout),
		RequestTimeout: Duration(d.RequestTimeout), SlowStart: Duration(d.SlowStart), RetryNonIdempotent: pol.RetryNonIdempotent,
		RouteArgs: policyArgs, Retries: o.Retries}
	if pol.ConnectTimeoutSet {
		p.ConnectTimeout = Duration(pol.ConnectTimeout)
	}
	if pol.ResponseHeaderTimeoutSet {
		p.ResponseHeaderTimeout = Duration(pol.ResponseHeaderTimeout)
	}
	if pol.RequestTimeoutSet {
		p.RequestTimeout = Duration(pol.RequestTimeout)
	}
	if pol.SlowStartSet {
		p.SlowStart = Duration(pol.SlowStart)
	}
	usable := 0
	for _, ep := range be.Endpoints {
		if ep.Breaker != "open" {
			usable++
		}
	}
	switch {
	case len(be.Endpoints) == 0:
		return fmt.Sprintf("503 Service Unavailable: backend %s has no usable endpoint", be.Name), be, p
	case usable == 0:
		return fmt.Sprintf("forwarded to backend %s, though every endpoint's breaker is open (the panic threshold then ignores breakers)", be.Name), be, p
	}
	return fmt.Sprintf("forwarded to backend %s: one of its %d endpoints (%s), %d with the breaker not open", be.Name, len(be.Endpoints), be.Balancing, usable), be, p
}

// backendOf reads a bulkheadBackend filter's arguments (see
// upstream.BackendFilterName).
func backendOf(args []any) *ExplainedBackend {
	be := &ExplainedBackend{Balancing: "least-in-flight", Protocol: upstream.ProtocolHTTP1}
	for i, a := range args {
		s, _ := a.(string)
		switch {
		case i == 0:
			be.Name = s
		case s == upstream.AlgorithmRoundRobin:
			be.Balancing = "round-robin"
		case strings.HasPrefix(s, "protocol="):
			be.Protocol = strings.TrimPrefix(s, "protocol=")
		}
	}
	return be
}

// conds are a route's conditions as skipper's matcher checks them (see
// skipper's routing/matcher.go and datasource.go: Host, PathRegexp,
// Method, Header and HeaderRegexp predicates become fields; Path and
// PathSubtree place it in the path tree; Weight adds to its weight).
type conds struct {
	tree     string // "Path", "PathSubtree" or "" (a root leaf: tried last)
	pattern  string // cleaned
	method   string
	hostRxs  []*regexp.Regexp
	pathRxs  []*regexp.Regexp
	headers  map[string]string
	headerRx map[string][]*regexp.Regexp
	custom   []custom
	weight   int    // as skipper's leafWeight
	bad      string // a condition that could not be made (skipper would have refused the route)
}

type custom struct {
	def  *eskip.Predicate
	pred skrouting.Predicate
}

func newConds(def *eskip.Route, specs map[string]skrouting.PredicateSpec) *conds {
	c := &conds{method: def.Method, headers: map[string]string{}, headerRx: map[string][]*regexp.Regexp{}}
	hostExps, pathExps := slices.Clone(def.HostRegexps), slices.Clone(def.PathRegexps)
	for k, v := range def.Headers {
		c.headers[http.CanonicalHeaderKey(k)] = v
	}
	headerExps := map[string][]string{}
	for k, v := range def.HeaderRegexps {
		headerExps[http.CanonicalHeaderKey(k)] = append(headerExps[http.CanonicalHeaderKey(k)], v...)
	}
	if def.Path != "" {
		c.tree, c.pattern = predicates.PathName, def.Path
	}
	str := func(p *eskip.Predicate, i int) string {
		if i < len(p.Args) {
			s, _ := p.Args[i].(string)
			return s
		}
		return ""
	}
	for _, p := range def.Predicates {
		switch p.Name {
		case predicates.PathName, predicates.PathSubtreeName:
			c.tree, c.pattern = p.Name, str(p, 0)
		case predicates.HostName:
			hostExps = append(hostExps, str(p, 0))
		case predicates.PathRegexpName:
			pathExps = append(pathExps, str(p, 0))
		case predicates.MethodName:
			c.method = str(p, 0)
		case predicates.HeaderName:
			c.headers[http.CanonicalHeaderKey(str(p, 0))] = str(p, 1)
		case predicates.HeaderRegexpName:
			k := http.CanonicalHeaderKey(str(p, 0))
			headerExps[k] = append(headerExps[k], str(p, 1))
		case predicates.WeightName:
			if len(p.Args) == 1 {
				if w, ok := p.Args[0].(float64); ok {
					c.weight += int(w)
				}
			}
		default:
			spec, ok := specs[p.Name]
			if !ok {
				c.bad = fmt.Sprintf("predicate %s is not registered", p.Name)
				continue
			}
			pred, err := spec.Create(p.Args)
			if err != nil {
				c.bad = fmt.Sprintf("%s: %v", p, err)
				continue
			}
			if ws, ok := spec.(skrouting.WeightedPredicateSpec); ok {
				c.weight += ws.Weight()
			}
			c.custom = append(c.custom, custom{def: p, pred: pred})
		}
	}
	compile := func(exps []string) []*regexp.Regexp {
		var out []*regexp.Regexp
		for _, e := range exps {
			rx, err := regexp.Compile(e)
			if err != nil {
				c.bad = fmt.Sprintf("regexp %q: %v", e, err)
				continue
			}
			out = append(out, rx)
		}
		return out
	}
	c.hostRxs, c.pathRxs = compile(hostExps), compile(pathExps)
	for k, exps := range headerExps {
		c.headerRx[k] = compile(exps)
	}
	if c.pattern != "" {
		c.pattern = httppath.Clean(c.pattern)
	}
	if c.method != "" {
		c.weight++
	}
	c.weight += len(c.hostRxs) + len(c.pathRxs) + len(c.headers) + len(c.headerRx) + len(c.custom)
	return c
}

// requestConds is the prepared request as the matcher sees it.
type requestConds struct {
	r           *http.Request
	path        string // cleaned, with the host key
	segs        []string
	gatewayPort int32
}

func segments(p string) []string { return strings.Split(strings.TrimPrefix(p, "/"), "/") }

// failures lists the conditions of c that do not hold for the request, in
// the order skipper's matcher checks them: the path tree (host key, then
// path), method, Host, path regexps, headers, header regexps, the other
// predicates.
func (c *conds) failures(rc *requestConds, rt *routing.Route) []string {
	var out []string
	if c.bad != "" {
		out = append(out, "the route cannot be made: "+c.bad)
	}
	if c.tree != "" {
		if msg := c.treeFailure(rc, rt); msg != "" {
			out = append(out, msg)
		}
	}
	if c.method != "" && c.method != rc.r.Method {
		out = append(out, fmt.Sprintf("method: the route wants %s, the request is %s", c.method, rc.r.Method))
	}
	for _, rx := range c.hostRxs {
		if !rx.MatchString(rc.r.Host) {
			out = append(out, fmt.Sprintf("host: %s does not match Host(/%s/) (a wildcard's deeper names, or a listener's hostnames)", rc.r.Host, rx))
		}
	}
	for _, rx := range c.pathRxs {
		if !rx.MatchString(rc.path) {
			out = append(out, fmt.Sprintf("path: %s does not match PathRegexp(/%s/)", rc.path, rx))
		}
	}
	for _, k := range sortedKeys(c.headers) {
		v := c.headers[k]
		if !slices.Contains(rc.r.Header[k], v) {
			out = append(out, fmt.Sprintf("header %s: the route wants %q, the request has %s", k, v, headerValues(rc.r.Header[k])))
		}
	}
	for _, k := range sortedKeys(c.headerRx) {
		for _, rx := range c.headerRx[k] {
			if !slices.ContainsFunc(rc.r.Header[k], rx.MatchString) {
				out = append(out, fmt.Sprintf("header %s: the route wants /%s/, the request has %s", k, rx, headerValues(rc.r.Header[k])))
			}
		}
	}
	for _, p := range c.custom {
		if !p.pred.Match(rc.r) {
			out = append(out, customFailure(p.def, rc))
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func headerValues(vs []string) string {
	if len(vs) == 0 {
		return "none"
	}
	return strconv.Quote(strings.Join(vs, ", "))
}

// treeFailure checks the path tree condition as skipper's tree matches it
// with its trailing-slash option off: Path is the whole cleaned path,
// segment by segment, a ":name" segment any one segment; PathSubtree is
// its base path or anything below it ("/a" covers "/a", "/a/" and "/a/b",
// not "/ab"). The first two segments are the host key (routing's
// PrepareRequest): a difference there is the host's.
func (c *conds) treeFailure(rc *requestConds, rt *routing.Route) string {
	pat := segments(strings.TrimSuffix(c.pattern, "/"))
	if c.tree == predicates.PathName {
		pat = segments(c.pattern)
	}
	if c.pattern == "/" {
		pat = nil
	}
	for i := 0; i < len(pat) && i < 2; i++ {
		if i >= len(rc.segs) || !segmentMatches(pat[i], rc.segs[i]) {
			return fmt.Sprintf("host: the route's host %s does not cover %s", routeHost(rt), requestHost(rc.r.Host))
		}
	}
	ok := len(rc.segs) >= len(pat)
	for i := 2; ok && i < len(pat); i++ {
		ok = segmentMatches(pat[i], rc.segs[i])
	}
	if c.tree == predicates.PathName && len(rc.segs) != len(pat) {
		ok = false
	}
	if ok {
		return ""
	}
	reqPath := cmp.Or(rc.r.Pattern, rc.path)
	routePath := "/" + strings.Join(pat[min(2, len(pat)):], "/")
	if c.tree == predicates.PathName {
		return fmt.Sprintf("path: the route wants exactly %s, the request's path is %s", routePath, reqPath)
	}
	return fmt.Sprintf("path: the route's prefix %s does not cover %s (prefixes match whole segments)", routePath, reqPath)
}

func segmentMatches(pattern, seg string) bool {
	if strings.HasPrefix(pattern, ":") {
		return seg != ""
	}
	return pattern == seg
}

func routeHost(rt *routing.Route) string {
	switch {
	case rt == nil:
		return "(unknown)"
	case rt.VirtualHost == "":
		return "(any host)"
	}
	return rt.VirtualHost
}

// customFailure says why one of bulkhead's or skipper's other predicates
// does not hold.
func customFailure(p *eskip.Predicate, rc *requestConds) string {
	switch p.Name {
	case routing.GatewayPortName:
		return fmt.Sprintf("gateway port: the route serves listener %s, the request arrives on port %d (?port= to choose)", argList(p.Args), rc.gatewayPort)
	case "TrafficSegment":
		return fmt.Sprintf("weighted share %s: this request drew another share of the split (each request draws anew)", argList(p.Args))
	case routing.ListenerIsolationName:
		return "listener: a more specific listener of the Gateway takes this host (" + argList(p.Args) + ")"
	case routing.PathRegexpName:
		return fmt.Sprintf("path: %s does not match %s", cmp.Or(rc.r.Pattern, rc.path), p)
	case "QueryParam":
		return fmt.Sprintf("query: %s does not hold for ?%s", p, rc.r.URL.RawQuery)
	}
	return p.String() + " does not hold"
}

func argList(args []any) string {
	parts := make([]string, len(args))
	for i, a := range args {
		parts[i] = fmt.Sprint(a)
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// hostClass orders the tree's branches as skipper tries them: an exact
// host key (static segments) first, then a wildcard host, then any host;
// routes without a path (the default backend) last.
func (c *conds) hostClass() int {
	if c.tree == "" {
		return 3
	}
	s := segments(c.pattern)
	switch {
	case strings.HasPrefix(s[0], ":"):
		return 2
	case len(s) > 1 && strings.HasPrefix(s[1], ":"):
		return 1
	}
	return 0
}

var hostClassNames = [...]string{"an exact host", "a wildcard host", "any host", "no path (the default backend)"}

// base is the tree node a route sits on: its cleaned path, without the
// trailing slash of a subtree.
func (c *conds) base() string {
	if c.tree == predicates.PathSubtreeName {
		return cmp.Or(strings.TrimSuffix(c.pattern, "/"), "/")
	}
	return c.pattern
}

// precedence says why a route that matches too lost to the winner, as far
// as skipper's lookup order can be told from the outside: host class,
// then the longer path (the tree's deeper node), then, on one node, the
// weight (Weight() plus one per other condition; Exact routes carry
// Weight(1)). Anything finer is "lower precedence".
func precedence(w, l *conds) string {
	const lower = "matches too, lower precedence"
	if w == nil {
		return lower + " (yet skipper chose no route: the table may have changed under the question)"
	}
	wc, lc := w.hostClass(), l.hostClass()
	if wc < lc {
		return fmt.Sprintf("%s: the winner is a rule of %s, tried before %s", lower, hostClassNames[wc], hostClassNames[lc])
	}
	if wc > lc {
		return lower
	}
	wb, lb := w.base(), l.base()
	wn, ln := len(segments(wb)), len(segments(lb))
	if wb == "/" {
		wn = 0
	}
	if lb == "/" {
		ln = 0
	}
	switch {
	case wb != lb && wn > ln:
		return fmt.Sprintf("%s: the winner's path is longer (skipper's tree tries the deeper path first)", lower)
	case wb == lb && w.weight > l.weight:
		why := ""
		if w.tree == predicates.PathName && l.tree == predicates.PathSubtreeName {
			why = "; an Exact path is tried before a Prefix of the same path"
		}
		return fmt.Sprintf("%s: same path, the winner weighs more (%d against %d: Weight() plus one per other condition)%s", lower, w.weight, l.weight, why)
	case wb == lb && w.weight == l.weight:
		return fmt.Sprintf("%s: same path and weight (%d); skipper's order among equals", lower, w.weight)
	}
	return lower
}

// Text is the explanation for an operator's terminal.
func (x Explanation) Text() string {
	var b strings.Builder
	rq := x.Request
	fmt.Fprintf(&b, "%s %s\n", rq.Method, rq.URL)
	port := "none (no Gateway route can match; ?port= to choose)"
	if rq.GatewayPort != 0 {
		port = strconv.Itoa(int(rq.GatewayPort))
	}
	fmt.Fprintf(&b, "  host %s, path %s, Gateway listener port %s, client %s\n", rq.Host, rq.Path, port, rq.Remote)
	if rq.LookupPath != "" {
		fmt.Fprintf(&b, "  looked up as %s\n", rq.LookupPath)
	}
	b.WriteString("\n")
	if x.Route != nil {
		fmt.Fprintf(&b, "ROUTE %s\n  %s\n", x.Route.ID, x.Route.Origin)
		fmt.Fprintf(&b, "  %s\n", x.Route.Eskip)
	} else if x.Refused == 0 {
		b.WriteString("NO ROUTE matches\n")
	}
	fmt.Fprintf(&b, "\nANSWER %s\n", x.Answer)
	if be := x.Backend; be != nil {
		fmt.Fprintf(&b, "\nBACKEND %s (balancing %s, protocol %s)\n", be.Name, be.Balancing, be.Protocol)
		if len(be.Endpoints) == 0 {
			b.WriteString("  (no usable endpoints: answering 503)\n")
		}
		for _, ep := range be.Endpoints {
			fmt.Fprintf(&b, "  %-22s ready=%-5v serving=%-5v terminating=%-5v breaker=%-9s in-flight=%d failures=%d/%d (consecutive %d)\n",
				ep.Address, ep.Ready, ep.Serving, ep.Terminating, ep.Breaker, ep.InFlight, ep.Failures, ep.Requests, ep.ConsecutiveFailures)
		}
	}
	if p := x.Policy; p != nil {
		src := "the router's defaults"
		if len(p.RouteArgs) > 0 {
			src = "the route's " + upstream.PolicyFilterName + "(" + strings.Join(p.RouteArgs, ", ") + ") over the router's defaults"
		}
		fmt.Fprintf(&b, "\nPOLICY (%s)\n", src)
		fmt.Fprintf(&b, "  connect timeout %s, response header timeout %s, request timeout %s, slow start %s\n",
			orNone(p.ConnectTimeout, "none"), orNone(p.ResponseHeaderTimeout, "none"), orNone(p.RequestTimeout, "none"), orNone(p.SlowStart, "off"))
		methods := "idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE, TRACE)"
		if p.RetryNonIdempotent {
			methods = "every method (retry-non-idempotent)"
		}
		r := p.Retries
		fmt.Fprintf(&b, "  retries: up to %d per request on another endpoint; any method when the request never reached the pod, %s also after a 502/503/504, a reset or a response header timeout\n",
			r.MaxRetries, methods)
		fmt.Fprintf(&b, "  retry budget per backend: %g%% of requests plus %g/s over %s; no retry starts after %s from the first attempt\n",
			r.BudgetRatio*100, r.BudgetPerSecond, time.Duration(r.BudgetWindow), orNone(r.Deadline, "no deadline"))
	}
	if len(x.Candidates) > 0 {
		fmt.Fprintf(&b, "\nOTHER CANDIDATES (%d)\n", len(x.Candidates)+x.More)
		for _, c := range x.Candidates {
			fmt.Fprintf(&b, "  %s\n    %s\n", c.ID, c.Origin)
			if c.Matches {
				fmt.Fprintf(&b, "    %s\n", c.Reason)
				continue
			}
			for _, f := range c.Failed {
				fmt.Fprintf(&b, "    does not match: %s\n", f)
			}
		}
		if x.More > 0 {
			fmt.Fprintf(&b, "  ... and %d more (JSON lists the first %d too)\n", x.More, maxCandidates)
		}
	} else if x.Refused == 0 {
		b.WriteString("\nOTHER CANDIDATES: none (no other route for this host, a wildcard of it or any host)\n")
	}
	if len(x.Notes) > 0 {
		b.WriteString("\nNOTES\n")
		for _, n := range x.Notes {
			fmt.Fprintf(&b, "  %s\n", n)
		}
	}
	return b.String()
}

func orNone(d Duration, none string) string {
	if d == 0 {
		return none
	}
	return time.Duration(d).String()
}
