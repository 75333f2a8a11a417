// Package upstream protects clients from the failures of individual
// endpoints (pods) behind skipper's load-balanced routes: when a pod
// leaves, its endpoint removal races its shutdown and keep-alive
// connections outlive it, which would otherwise surface as 502s.
//
// Everything is keyed by endpoint "ip:port", so state survives the route
// table rebuilds that follow every Kubernetes change. The package knows
// nothing of Kubernetes.
//
// Three pieces share one Upstream (see New):
//
//   - Breakers: one sony/gobreaker breaker per endpoint. It opens after
//     BreakerConfig.ConsecutiveFailures (default 5) consecutive failures
//     (connect errors, resets, timeouts, 502/503/504 answers), stays open
//     for BreakerConfig.OpenFor (default 10s), then lets exactly one probe
//     through (half-open) and closes on its success. Breakers only steer
//     traffic: they never fail a request by themselves. Breakers of
//     endpoints that left the table are pruned on every table.
//
//   - PostProcessor: a routing.PostProcessor, appended after
//     loadbalancer.NewAlgorithmProvider(). It wraps every LB route's
//     LBAlgorithm so that the route's own algorithm chooses among the
//     endpoints whose breaker is not open (nor half-open with its probe in
//     flight). Panic threshold: when more than half of the candidate
//     endpoints are unavailable, breakers are ignored for that choice, so
//     a partial outage never becomes a total one. It also publishes the
//     endpoint groups (routes' endpoint lists) used by retries.
//
//   - WrapRoundTripper: for proxy.Params.CustomHttpRoundTripperWrap. It
//     retries, on another endpoint of the same group (never the one that
//     just failed when another exists; closed breakers preferred), with
//     jittered exponential backoff (10-50ms by default), at most
//     Config.MaxRetries (2) times, never past the request's deadline, and
//     within a per-group retry budget (retries <= 20% of requests over
//     10s plus 3 retries/s). Retried:
//     any method when the request provably never reached the pod (dial
//     error, TLS handshake failure, net/http's "server closed idle
//     connection" on a reused keep-alive connection); idempotent methods
//     (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) also on 502/503/504 answers
//     and on resets/EOF after sending; other methods (POST, PATCH) only on
//     routes with the bulkheadRetryNonIdempotent() filter (OptInSpec).
//     Timeouts after sending are never retried.
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
// # Opt-in for non-idempotent methods
//
// The filter bulkheadRetryNonIdempotent() sets the internal header
// OptInHeader to a per-process random secret. The round tripper honours
// it only if the value matches and always deletes the header before the
// request is sent, so clients can neither opt in nor leak it to pods.
//
// # What is not protected
//
//   - WebSocket and other Upgrade requests: skipper's upgrade path dials
//     the backend itself and bypasses CustomHttpRoundTripperWrap, so
//     upgrades get neither retries nor breaker accounting. The LB wrapper
//     still steers their endpoint choice away from open breakers.
//   - Streamed or larger-than-limit bodies: never retried (see above).
//   - Requests to hosts that are not an endpoint of an LB route in the
//     current table (network backends, "<shunt>", dynamic backends) pass
//     through untouched.
//   - Failures after the response headers arrived (a body cut midway)
//     reach the client as they are.
package upstream
