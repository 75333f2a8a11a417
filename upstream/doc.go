// Package upstream protects clients from the failures of individual
// endpoints (pods) behind skipper's load-balanced routes: when a pod
// leaves, its endpoint removal races its shutdown and keep-alive
// connections outlive it, which would otherwise surface as 502s.
//
// Everything is keyed by endpoint "ip:port", so state survives the route
// table rebuilds that follow every Kubernetes change. The package knows
// nothing of Kubernetes.
//
// Three pieces share one Upstream (see New), and Handler gives them each
// request's route policy (see "Timeouts and per-route policy"):
//
//   - Breakers: one sony/gobreaker breaker per endpoint. It opens after
//     BreakerConfig.ConsecutiveFailures (default 5) consecutive failures
//     (connect errors, resets, timeouts, 502/503/504 answers), stays open
//     for BreakerConfig.OpenFor (default 10s), then lets exactly one probe
//     through (half-open) and closes on its success. Breakers only steer
//     traffic: they never fail a request by themselves. An attempt the
//     client cancelled counts neither as a success nor as a failure.
//     Breakers of endpoints that left the table are pruned on every table.
//
//   - PostProcessor: a routing.PostProcessor, appended after
//     loadbalancer.NewAlgorithmProvider(). It gives every LB route our
//     balancer: least in-flight (power of two choices: two endpoints
//     drawn at random, fewer attempts in flight wins; the default, since
//     it steers away from slow or hanging pods by itself, costs O(1) and
//     needs no shared state) or round robin, both with optional slow
//     start (a new endpoint's share ramps linearly from 10% over the
//     route's slow-start duration; endpoints of the first table are not
//     new). Either chooses among the endpoints whose breaker is not open
//     (nor half-open with its probe in flight). Panic threshold: when more
//     than half of the candidate endpoints are unavailable, breakers are
//     ignored for that choice, so a partial outage never becomes a total
//     one. It also publishes the endpoint groups (routes' endpoint lists)
//     used by retries.
//
//   - WrapRoundTripper: for proxy.Params.CustomHttpRoundTripperWrap. It
//     retries, on another endpoint of the same group (never the one that
//     just failed when another exists; closed breakers preferred), with
//     jittered exponential backoff (10-50ms by default), at most
//     Config.MaxRetries (2) times, never past the request's deadline, and
//     within a per-group retry budget (retries <= 20% of requests over
//     10s plus 3 retries/s), and only while a whole attempt (its response
//     header timeout) still fits before Config.RetryDeadline (55s by
//     default, counted from the first attempt: below an ALB's 60s idle
//     timeout, so 30s timeouts never chain to 90s). Retried:
//     any method when the request provably never reached the pod (dial
//     error, connect timeout, TLS handshake failure, net/http's "server
//     closed idle connection" on a reused keep-alive connection);
//     idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) also on
//     502/503/504 answers, on resets/EOF after sending and on response
//     header timeouts; other methods (POST, PATCH) only on routes whose
//     policy sets retry-non-idempotent.
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
// the filter of the matched route puts the route's policy there; the
// round tripper reads it from the outgoing request's context, which
// skipper derives from the incoming one. No client can set it and no pod
// can see it, on any path (upgrades included, which simply get none).
// Without Handler every route gets the defaults (logged once). On a route
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
// Content-Length after buffering.
//
// # What is not protected
//
//   - WebSocket and other Upgrade requests: they work (the proxy tunnels
//     them), but skipper's upgrade path dials the backend itself and
//     bypasses CustomHttpRoundTripperWrap, so upgrades get neither
//     retries, nor timeouts, nor breaker accounting. The balancer still
//     steers their endpoint choice away from open breakers.
//   - Streamed responses: passed through as they come (not buffered); the
//     response header timeout and retries apply until the headers arrive,
//     after that only the request timeout, if the route sets one.
//   - Streamed or larger-than-limit bodies: never retried (see above).
//   - Requests to hosts that are not an endpoint of an LB route in the
//     current table (network backends, "<shunt>", dynamic backends) pass
//     through untouched.
//   - Failures after the response headers arrived (a body cut midway)
//     reach the client as they are.
package upstream
