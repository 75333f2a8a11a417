package proxy

import (
	"cmp"
	"log/slog"
	"net/http"
	"time"

	"github.com/zalando/skipper/filters"
	"github.com/zalando/skipper/filters/builtin"
	"github.com/zalando/skipper/loadbalancer"
	"github.com/zalando/skipper/metrics"
	skproxy "github.com/zalando/skipper/proxy"
	skrouting "github.com/zalando/skipper/routing"

	"github.com/bulkhead-router/bulkhead/internal/logging"
)

// Options configure New.
type Options struct {
	// DataClients are the route sources. skipper keeps its current table
	// when a client returns an error and replaces it on success, so a client
	// must return an error, never an empty table, until it really knows.
	DataClients []skrouting.DataClient
	// Shards, above 1, splits the routes into that many skipper tables,
	// each with its own matcher, fed by ShardDataClients(i) (DataClients
	// is then unused); ShardOf names the shard a request is looked up in,
	// after PrepareRequest. skipper rebuilds a whole table on any change,
	// so a change then costs a shard's rebuild, not the whole table's. The
	// shards share one transport to the backends.
	Shards           int
	ShardDataClients func(shard int) []skrouting.DataClient
	ShardOf          func(*http.Request) int
	// Predicates are custom predicate specifications the routes use.
	Predicates []skrouting.PredicateSpec
	// Filters are custom filter specifications the routes use, registered
	// in addition to skipper's builtin filters (builtin.MakeRegistry); one
	// with the name of a builtin filter replaces it. Skipper rejects routes
	// that use a filter it does not know.
	Filters []filters.Spec
	// PrepareRequest, when set, is called on every request before skipper
	// looks up its route (after the X-Forwarded-* headers are set): the
	// route source's hook to put the request into the form its routes
	// match. Whatever it changes, the routes must undo in a filter if the
	// backend is not to see it. It must not block.
	PrepareRequest func(*http.Request)
	// PreProcessors run over the whole route table before it is processed.
	PreProcessors []skrouting.PreProcessor
	// PostProcessors run over every processed table just before it goes
	// live, after skipper's own load-balancer post-processors.
	PostProcessors []skrouting.PostProcessor
	// WrapRoundTripper, when set, wraps skipper's transport to the
	// backends (the upstream resilience layer: breakers and retries).
	WrapRoundTripper func(http.RoundTripper) http.RoundTripper
	// PollInterval is the pause skipper takes between two calls to a data
	// client. Zero: 5 ms. It adds directly to the latency of every route
	// change, so it is short; a data client whose LoadAll and LoadUpdate
	// wait for a change (as bulkhead's do) keeps idle polling cheap.
	PollInterval time.Duration
	// BackendIdleTimeout closes keep-alive connections to endpoints that
	// stayed idle this long. Zero: 4s, below the shortest common server
	// idle timeouts (Node.js and uvicorn 5s), so the router, not the pod,
	// closes an idle connection: a pod closing it while a request is
	// being sent on it is the keep-alive race that turns into a 502.
	BackendIdleTimeout time.Duration
	// BackendConnectTimeoutCap bounds the dialer; per-route connect
	// timeouts (the upstream layer's) apply below it. Zero: 1 minute.
	BackendConnectTimeoutCap time.Duration
	// Log receives skipper's routing log.
	Log *slog.Logger
	// ExpectedErrors are fragments of data-client errors that are normal
	// (not synced yet) and logged at debug instead of error.
	ExpectedErrors []string

	// Trust says whose forwarded headers are believed (forwarded.go).
	// Zero: nobody's.
	Trust ForwardedTrust
	// MaxHeaderFieldBytes bounds the request target and each header line
	// (name and value); over it: 414 or 431. Zero: 16 KiB, an ALB's limit.
	// (The total is the http.Server's MaxHeaderBytes.)
	MaxHeaderFieldBytes int
	// MaxHeaderCount bounds the number of header lines; over it: 431.
	// Zero: 100.
	MaxHeaderCount int
	// BufferedBodyLimit is the size up to which the upstream layer buffers
	// request bodies for replay; bodies of at most this size, and chunked
	// bodies until they grow past it, must arrive within BodyTimeout.
	// Zero: 64 KiB (upstream's default).
	BufferedBodyLimit int64
	// BodyTimeout bounds the reading of such bodies; a body that takes
	// longer is answered 408 and its connection closed. Zero: no bound.
	BodyTimeout time.Duration
	// MaxBodyBytes bounds request bodies: a larger Content-Length is
	// answered 413 at once, a chunked body 413 when it grows past it (if
	// the pod has not answered yet). Zero: no bound.
	MaxBodyBytes int64
}

// Proxy is the serving path: route lookup and forwarding to endpoints.
type Proxy struct {
	shards    []shard
	shardOf   func(*http.Request) int
	firstLoad chan struct{}
	closed    chan struct{}
	prepare   func(*http.Request)
	log       *slog.Logger

	trust          ForwardedTrust
	maxFieldBytes  int
	maxHeaderCount int
	bodyLimit      int64
	bodyTimeout    time.Duration
	maxBody        int64
}

// New starts the routing table's update loop and builds the proxy. Until
// the first table is loaded every request gets 404: callers gate traffic on
// readiness (FirstLoad).
func New(o Options) *Proxy {
	if o.MaxHeaderFieldBytes <= 0 {
		o.MaxHeaderFieldBytes = DefaultMaxHeaderFieldBytes
	}
	if o.MaxHeaderCount <= 0 {
		o.MaxHeaderCount = DefaultMaxHeaderCount
	}
	if o.BufferedBodyLimit <= 0 {
		o.BufferedBodyLimit = 64 << 10
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.PollInterval == 0 {
		o.PollInterval = 5 * time.Millisecond
	}
	if o.BackendIdleTimeout <= 0 {
		o.BackendIdleTimeout = 4 * time.Second
	}
	if o.BackendConnectTimeoutCap <= 0 {
		o.BackendConnectTimeoutCap = time.Minute
	}
	n := max(o.Shards, 1)
	p := &Proxy{shardOf: o.ShardOf, firstLoad: make(chan struct{}), closed: make(chan struct{}), prepare: o.PrepareRequest, log: o.Log,
		trust: o.Trust, maxFieldBytes: o.MaxHeaderFieldBytes, maxHeaderCount: o.MaxHeaderCount,
		bodyLimit: o.BufferedBodyLimit, bodyTimeout: o.BodyTimeout, maxBody: o.MaxBodyBytes}
	if n == 1 || p.shardOf == nil {
		n, p.shardOf = 1, nil
	}
	var shared []http.RoundTripper // the first shard's transports, wrapped; every shard uses them
	for i := range n {
		clients := o.DataClients
		if n > 1 {
			clients = o.ShardDataClients(i)
		}
		p.shards = append(p.shards, newShard(o, clients, &shared))
	}
	go func() {
		for _, sh := range p.shards {
			select {
			case <-sh.routing.FirstLoad():
			case <-p.closed:
				return
			}
		}
		close(p.firstLoad)
	}()
	return p
}

// shard is one skipper routing table and the proxy that looks requests up
// in it.
type shard struct {
	routing *skrouting.Routing
	proxy   *skproxy.Proxy
}

func newShard(o Options, clients []skrouting.DataClient, shared *[]http.RoundTripper) shard {
	calls := 0
	registry := builtin.MakeRegistry()
	for _, f := range o.Filters {
		registry.Register(f)
	}
	endpoints := skrouting.NewEndpointRegistry(skrouting.RegistryOptions{})
	rt := skrouting.New(skrouting.Options{
		FilterRegistry:  registry,
		DataClients:     clients,
		Predicates:      o.Predicates,
		PreProcessors:   o.PreProcessors,
		PollTimeout:     o.PollInterval,
		Log:             logging.Skipper{L: o.Log.With(logging.KeyComponent, "skipper-routing"), Expected: o.ExpectedErrors},
		SuppressLogs:    true, // one summary line per update, not one per route
		SignalFirstLoad: true,
		PostProcessors: append([]skrouting.PostProcessor{
			loadbalancer.NewAlgorithmProvider(), // turns <roundRobin, ...> backends into live balancers
			endpoints,
		}, o.PostProcessors...),
	})
	px := skproxy.WithParams(skproxy.Params{
		Routing: rt,
		// The pod sees the client's Host header, as it would behind any
		// Kubernetes ingress; hop-by-hop headers are not forwarded.
		Flags:             skproxy.PreserveHost | skproxy.HopHeadersRemoval,
		Metrics:           metrics.Void,
		AccessLogDisabled: true,
		DefaultHTTPStatus: http.StatusNotFound,
		EndpointRegistry:  endpoints,
		// Wraps skipper's transport: sees each request's chosen endpoint in
		// req.URL.Host. (WebSocket upgrades do not pass through it.)
		CustomHttpRoundTripperWrap: func(rt http.RoundTripper) http.RoundTripper {
			// skipper wraps its transports in a fixed order (HTTP, then
			// h2c); later shards get the first shard's, in that order.
			if calls++; calls <= len(*shared) {
				return (*shared)[calls-1]
			}
			if tr, ok := rt.(*http.Transport); ok {
				// Per transport, not skipper's ticker that closes every
				// idle connection at once (it exists for DNS changes; our
				// endpoints are IPs).
				tr.IdleConnTimeout = o.BackendIdleTimeout
			}
			if o.WrapRoundTripper != nil {
				rt = o.WrapRoundTripper(rt)
			}
			*shared = append(*shared, rt)
			return rt
		},
		CloseIdleConnsPeriod: -1,
		// Connect and response-header timeouts are per route, enforced by
		// the upstream layer; the transport keeps only a dial cap.
		Timeout:               o.BackendConnectTimeoutCap,
		ResponseHeaderTimeout: -1,
		// WebSocket and other Upgrade requests: forwarded, the connection
		// then tunnelled both ways.
		ExperimentalUpgrade: true,
		// Response bodies are copied through pooled buffers instead of a
		// new 8 KiB buffer per request.
		EnableCopyStreamPoolExperimental: true,
	})
	return shard{routing: rt, proxy: px}
}

// ServeHTTP forwards r along the matching route.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if code := p.checkHeaderLimits(r); code != 0 {
		id := r.Header[HeaderRequestID]
		if len(id) == 0 {
			id = []string{newRequestID()}
		}
		// HTTP/1: what follows may be the rest of this request, not the
		// next one. HTTP/2 frames each stream: a Connection: close would
		// make net/http send a GOAWAY for the whole connection.
		writeError(w, code, id, r.ProtoMajor == 1)
		return
	}
	removeConnectionListed(r.Header) // HTTP/2 requests have no Connection header (net/http refuses them)
	if up, ok := r.Header["Upgrade"]; ok && isH2CUpgrade(up) {
		// An HTTP/1.1 client offering to switch to h2c (curl --http2 on
		// http://): the offer is declined by serving the request as it
		// is, as RFC 9110 allows. Left in, skipper would take it for a
		// protocol upgrade and tunnel it to the pod, past the upstream
		// layer. Clients that mean HTTP/2 send its preface instead.
		delete(r.Header, "Upgrade")
		delete(r.Header, "Connection")
		delete(r.Header, "Http2-Settings") // the offer's, hop-by-hop (RFC 7540 §3.2.1)
	}
	setForwardedHeaders(r, &p.trust)
	cw := &clientWriter{ResponseWriter: w, requestID: r.Header[HeaderRequestID], http1: r.ProtoMajor == 1}
	// net/http frames a request with both Content-Length and
	// Transfer-Encoding: chunked by the chunked coding and drops the
	// Content-Length header, so the two cannot be told apart here. RFC
	// 9112 §6.1 requires closing the connection after such a request (the
	// front end may have framed it by its Content-Length: what follows
	// the chunked body could be a request it never saw), so every chunked
	// HTTP/1 request is served and its connection then closed. Clients
	// rarely send chunked requests; those that do reconnect.
	if r.ProtoMajor == 1 && len(r.TransferEncoding) > 0 {
		cw.closeAfter = true
	}
	cw.watching = p.watchBody(w, r, &cw.body)
	if p.prepare != nil {
		p.prepare(r)
	}
	sh := &p.shards[0]
	if p.shardOf != nil {
		sh = &p.shards[p.shardOf(r)]
	}
	sh.proxy.ServeHTTP(cw, r)
	cw.finish()
}

// FirstLoad is closed once the first route table is live (in every
// shard).
func (p *Proxy) FirstLoad() <-chan struct{} { return p.firstLoad }

// Close stops the update loops and releases idle backend connections.
func (p *Proxy) Close() error {
	close(p.closed)
	var err error
	for _, sh := range p.shards {
		err = cmp.Or(err, sh.proxy.Close())
		sh.routing.Close()
	}
	return err
}
