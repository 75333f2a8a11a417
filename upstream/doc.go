// Package upstream protects clients from the failures of individual
// endpoints (pods) of the backends that routes name: when a pod leaves,
// its endpoint removal races its shutdown and keep-alive connections
// outlive it, which would otherwise surface as 502s. It also holds the
// live endpoints of every backend, outside skipper's route table.
//
// Imports point one way: cmd feeds it endpoints (SetEndpoints, from the
// data client) and installs its filters, post-processor, round tripper
// and Handler; the package knows nothing of Kubernetes, and a backend key
// ("namespace/service:port") is an opaque string to it. Endpoint state is keyed by "ip:port", so it survives
// endpoint set swaps and route table rebuilds.
//
// # Endpoints outside the route table
//
// A route names its backend and ends in skipper's dynamic backend:
//
//	r1: PathSubtree("/") -> bulkheadUpstream("response-header-timeout=5s")
//	    -> bulkheadBackend("up/web:80") -> <dynamic>;
//
// SetEndpoints replaces the endpoint lists of the backends it is given;
// each backend's set is immutable and swapped atomically, and the key map
// is copied only when a backend comes or goes. The route does not change
// when endpoints do, so skipper neither re-translates nor rebuilds its
// matcher for endpoint churn (envoy's EDS split). Per request, the
// BackendFilterName filter loads the backend's current set (an atomic
// load and a map lookup, no lock), chooses an endpoint, makes it skipper's
// dynamic target (filters.DynamicBackendHostKey, scheme http) and records
// the backend and endpoint in the request's slot (see Handler). The
// dynamic backend, rather than a custom backend or a rewritten URL, is
// what every path of skipper's proxy honours: plain requests, and
// upgrades (WebSocket), which skipper dials itself from the same target
// and which therefore reach the endpoint the filter chose. A backend
// without endpoints, or unknown, answers 503 in skipper's own error shape,
// which bulkhead's proxy replaces with its generic answer.
//
// With <dynamic>, skipper sends a request that no filter gave a target to
// the host of its Host header. Two guards stop that: PostProcessor drops
// dynamic routes without BackendFilterName (the only guard for upgrades,
// which bypass the round tripper), and with Config.RefuseUnrouted the
// round tripper answers 502 (skipper's shape, counted in
// MetricUnroutedRefused) to any request no backend chose an endpoint
// for, instead of sending it.
//
// The pieces, sharing one Upstream (see New):
//
//   - Breakers: one sony/gobreaker breaker per endpoint. It opens after
//     BreakerConfig.ConsecutiveFailures (default 5) consecutive failures
//     (connect errors, resets, timeouts, 502/503/504 answers, gRPC
//     UNAVAILABLE: see gRPC), stays open
//     for BreakerConfig.OpenFor (default 10s), then lets exactly one probe
//     through (half-open) and closes on its success. Breakers only steer
//     traffic: they never fail a request by themselves. An attempt the
//     client cancelled counts neither as a success nor as a failure. The
//     state of an endpoint that left every backend is dropped one update
//     later: a request balanced on the previous set may still be on its
//     way to it (typically a pod shutting down) and keeps its accounting.
//     An endpoint's gobreaker (and its metric series) is made on its first
//     attempt: most endpoints of the cluster never get a request through
//     a given router.
//
//   - The balancer (BackendFilterName): least in-flight (power of two
//     choices: two endpoints drawn at random, fewer attempts in flight
//     wins; the default, since it steers away from slow or hanging pods by
//     itself, costs O(1) and needs no shared state) or round robin (its
//     counter lives in the route's filter, which endpoint changes no
//     longer rebuild), both with optional slow start from the route's
//     policy (a new endpoint's share ramps linearly from 10% over the
//     slow-start duration; endpoints of the first SetEndpoints call are not
//     new). Either chooses among the endpoints whose breaker is not open
//     (nor half-open with its probe in flight). Panic threshold: when more
//     than half of the endpoints are unavailable, breakers are ignored for
//     that choice, so a partial outage never becomes a total one.
//
//   - WrapRoundTripper: for proxy.Params.CustomHttpRoundTripperWrap. It
//     sends to the endpoint the filter chose (carried in the request's
//     slot, see Handler) and retries within the backend's current
//     endpoint set, which that endpoint may have left meanwhile (never
//     the endpoint that just failed when another exists; closed breakers
//     preferred), with jittered
//     exponential backoff (10-50ms by default), at most Config.MaxRetries
//     (2) times, never past the request's deadline, and within a
//     per-backend retry budget (retries <= 20% of requests over 10s plus
//     3 retries/s), and only while a whole attempt (its response header
//     timeout) still fits before Config.RetryDeadline (55s by default,
//     counted from the first attempt: below an ALB's 60s idle timeout, so
//     30s timeouts never chain to 90s). Retried: any method when the
//     request provably never reached the pod (dial error, connect timeout,
//     TLS handshake failure, net/http's "server closed idle connection" on
//     a reused keep-alive connection); idempotent methods (GET, HEAD,
//     OPTIONS, PUT, DELETE, TRACE) also on 502/503/504 answers, on
//     resets/EOF after sending and on response header timeouts; other
//     methods (POST, PATCH) only on routes whose policy sets
//     retry-non-idempotent. Metrics are per backend, labelled (label
//     "group") by Config.Label; a label's series go with its last backend.
//
//   - The mirror (MirrorFilterName, Gateway API's RequestMirror): copies
//     a fraction of a route's requests to another backend's endpoints,
//     directly (no retries, breakers nor policy), from a bounded pool of
//     goroutines under a timeout, the answer discarded. It never holds nor
//     fails the client's request: a full pool drops the copy; a body is
//     copied only when its length is known and small (MirrorConfig), else
//     the request is not mirrored. Copies are counted per mirror backend
//     label and result in MetricMirrorRequests.
//
// # Protocols toward pods
//
// The route's BackendFilterName filter names the protocol of its backend
// (the Service port's appProtocol, which package routing reads):
//
//   - HTTP/1.1 (no argument): skipper's HTTP transport, as always.
//   - "protocol=h2c": HTTP/2 with prior knowledge in the clear. The filter
//     makes skipper's dynamic scheme "h2c", which sends the request
//     through skipper's cleartext HTTP/2 transport; WrapRoundTripper
//     wraps it as it wraps the HTTP one (connect timeout in the dialer,
//     idle connections closed after the proxy's BackendIdleTimeout) and
//     adds HTTP/2 pings (after 15s without a frame, closed when a ping
//     goes 5s unanswered: a vanished node sends no reset).
//   - "protocol=tls" with "server-name=NAME": TLS, HTTP/2 when the pod
//     offers it through ALPN, else HTTP/1.1. The scheme is "https";
//     skipper hands it to its HTTP transport's round tripper, which sends
//     it through a transport of its own made from that one (same pool
//     sizes, idle timeout and dialer) with a TLS dial that checks the
//     pod's certificate against NAME (sent as SNI; pods are reached by IP)
//     and Config.TLS's roots (nil: the system's), unless
//     Config.TLS.InsecureSkipVerify. The connect timeout covers the TCP
//     connection and the handshake. A failed handshake is never-sent for
//     retries and a breaker failure, and answers 502. Pools are keyed by
//     "ip:port": a connection verified for one Service may carry requests
//     of another route reaching the same pod port.
//
// Breakers, balancing, retries, slow start, the terminating fallback and
// the timeouts apply to every protocol alike. On HTTP/2 many attempts
// share one connection; in-flight counts (least in-flight) are per
// attempt, as on HTTP/1, not per connection: an attempt until its
// response headers, a gRPC call until its status (see gRPC).
//
// # gRPC
//
// A request or answer is gRPC when its content type starts with
// application/grpc.
//
//   - Trailers: skipper v0.27.57 copies an answer's headers and body
//     only, and builds the outgoing request from the client's headers
//     and body only. The round tripper puts back what it drops: "te:
//     trailers" (a hop-by-hop header skipper strips, which gRPC servers
//     require) and the client's request trailers on the way in; on the
//     way out, at the end of any HTTP/2 answer's body (or an HTTP/1.1 one
//     announcing trailers), the pod's trailers are written into the
//     client's ResponseWriter (held in the request's slot by Handler) as
//     http.TrailerPrefix headers, which net/http sends as HTTP/2 trailers
//     or as the trailer of a chunked HTTP/1.1 answer (an answer that
//     announces trailers loses its Content-Length for that). A trailers-only
//     answer (the status in the one HEADERS frame) is passed on as
//     headers and trailers, since skipper flushes the headers before the
//     body and a gRPC client rejects a stream that ends without trailers.
//   - Status: grpc-status, from a trailers-only answer or from the
//     trailers, is counted per backend label and code in
//     MetricGRPCResponses (17 codes, MISSING and INVALID: bounded) and
//     judges the attempt for its breaker: UNAVAILABLE, and a stream that
//     breaks or ends without a status, are failures; CANCELLED and
//     DEADLINE_EXCEEDED count neither way (mostly the client's own
//     deadline); every other code is a success, as any HTTP answer but
//     502/503/504 is (see grpcOutcome). A status that comes in trailers
//     is recorded when they arrive; a half-open probe is settled by the
//     headers, so that a long stream does not hold it. Until then the
//     call counts as in flight on its endpoint, so that least in-flight
//     sees the streams each pod serves. A stream the pod's side breaks
//     ends for the client with grpc-status UNAVAILABLE in the trailers
//     (a stream without trailers reads as INTERNAL to gRPC clients,
//     which nothing retries).
//   - Retries: only before anything reached the client, and only when the
//     call was not processed: a connect error or failed handshake, a
//     refused stream (REFUSED_STREAM) or one the pod's GOAWAY came before
//     (net/http retries these itself when it can replay the body), and a
//     trailers-only UNAVAILABLE; within MaxRetries, the budget and the
//     retry deadline as any retry. An answer whose headers arrived is
//     never retried, whatever its trailers say.
//   - Bodies: a gRPC request body of unknown length (every gRPC client's)
//     is forwarded as it comes, never waited for: a client stream may wait
//     for the pod's answer before it sends more. A copy of its first 64
//     KiB is kept on the side, so that a small unary call that was refused
//     can be replayed whole; a body not yet read at all (a connect error)
//     is replayed as it is; anything else is not replayed.
//   - Streams: answers are passed through as they come (skipper flushes
//     after every read; the proxy holds back only answers with a
//     Content-Length), and once its headers arrived a stream is bound only
//     by the request timeout, if the route sets one. A server that sends
//     its headers only with its first message must do so within the
//     response header timeout (the default 30s; bulkhead.io/
//     response-header-timeout per route, 0 for none).
//
// # Timeouts and per-route policy
//
// Each attempt runs under a connect timeout (applied in the dialer, so a
// reused keep-alive connection costs nothing) and a response header
// timeout (from the start of the attempt to the response headers, sending
// the request included); a request timeout, when set, bounds the whole
// exchange, retries and response body included. Defaults are in
// DefaultPolicy (1s, 30s, none) and Config.Defaults. A route overrides
// them with the bulkheadUpstream filter (PolicyFilterName), which also
// carries slow start and the non-idempotent retry opt-in. The policy
// travels inside the process, never in a header: Handler, wrapped around
// the serving handler, gives each request an empty slot in its context;
// the filters of the matched route put the route's policy (and the
// chosen backend and endpoint) there; the round tripper reads it from the
// outgoing request's context, which skipper derives from the incoming
// one. No client can set it and no pod can see it, on any path (upgrades
// included, which simply get none). Without Handler every route gets the
// defaults and its requests get no retries, timeouts nor breaker
// accounting (logged once); with Config.RefuseUnrouted they are refused,
// as no backend's choice reaches the round tripper. On a route
// without a response header timeout, a retry's wait for headers is cut at
// the retry deadline. Timeouts answer 504 and count as breaker failures.
//
// # Request bodies
//
// Bodies up to Config.MaxBufferedBody (64 KiB) are read completely before
// the first attempt and replayed with a correct ContentLength and GetBody
// (GetBody also lets net/http itself replay a request on a fresh
// connection when a reused one died before anything was written). Bodies
// that are larger, or streamed with unknown length beyond the limit, are
// forwarded as they come and are never retried; breakers still record
// their outcome. Note that a small chunked body is sent with a
// Content-Length after buffering. gRPC bodies of unknown length, and
// bodies followed by trailers, are never waited for (see gRPC).
//
// # What is not protected
//
//   - WebSocket and other Upgrade requests: they work (the proxy tunnels
//     them to the endpoint the filter chose), but skipper's upgrade path
//     dials the backend itself and bypasses CustomHttpRoundTripperWrap,
//     so upgrades get neither retries, nor timeouts, nor breaker
//     accounting. The balancer still steers their endpoint choice away
//     from open breakers. They are HTTP/1.1 in the clear only: to an h2c
//     or TLS backend skipper's upgrade path neither speaks HTTP/2 nor
//     uses the TLS transport.
//   - Mirrored copies (MirrorFilterName) go over HTTP/1.1 in the clear
//     whatever the mirror backend's protocol.
//   - Streamed responses: passed through as they come (not buffered); the
//     response header timeout and retries apply until the headers arrive,
//     after that only the request timeout, if the route sets one.
//   - Streamed or larger-than-limit bodies: never retried (see above).
//   - Requests that no backend chose an endpoint for (routes without
//     BackendFilterName: network backends, or skipper LB routes, which
//     skipper balances alone) pass through untouched, or are refused
//     with Config.RefuseUnrouted.
//   - Failures after the response headers arrived (a body cut midway)
//     reach the client as they are.
package upstream
