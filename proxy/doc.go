// Package proxy assembles bulkhead's serving path from skipper's libraries:
// skipper routing tables fed by data clients (skrouting), skipper's load
// balancer post-processors, and skipper's proxy, behind one http.Handler.
//
// It knows nothing of Kubernetes: route sources arrive as skipper
// DataClients, and what their routes need is passed in as hooks: custom
// predicates, filters and pre- and post-processors for skipper's routing,
// and a PrepareRequest function called on every request before the route
// lookup (package routing's PrepareRequest, which puts the host into the
// path, and its bulkheadRestorePath filter, which takes it out again).
// Keeping this seam small is what lets the upstream resilience layer and
// the route source evolve independently.
//
// skipper rebuilds a routing table's whole matcher on any change of it, so
// the routes may be split into shards (Options.Shards): one skipper table
// and proxy per shard, each fed by its own data clients, the shard of a
// request named by the ShardOf hook after PrepareRequest, one transport to
// the backends for all. A change then costs the rebuild of its shard.
//
// Toward backends it sets what skipper leaves to its embedder: idle
// keep-alive connections closed after BackendIdleTimeout (4s, before the
// common server idle timeouts: the keep-alive race), no transport-level
// response header timeout (the upstream layer has one per route),
// WebSocket upgrades tunnelled, pooled copy buffers. Toward clients, the
// headers of a response with a Content-Length leave together with its
// first body bytes instead of in a write of their own (flush.go).
//
// Toward clients it is the edge: forwarded headers are believed only from
// trusted proxies (forwarded.go); headers listed in Connection are removed;
// single headers, request targets and header counts are bounded (431,
// 414); a chunked request's connection is closed after its answer, since
// net/http hides a Content-Length sent with it (request smuggling); a
// malformed chunked body is a 400 and a small body slower than the body
// timeout a 408 (limits.go); the router's own errors are generic bodies
// with the request id (errors.go), so no client learns a namespace,
// Service or pod; the pod's connection-specific response headers
// (Connection and what it lists, Keep-Alive, Proxy-Connection, Upgrade)
// are removed (flush.go).
//
// The same handler serves HTTP/1.x and HTTP/2 requests (the server decides
// which it speaks). Over HTTP/2 the rules hold per stream: the header
// limits, the body timeout (the stream's read deadline) and the body limit
// answer that stream alone, and the router never sends Connection: close
// there, which net/http would turn into a GOAWAY of the whole connection
// (one connection carries many clients' requests behind an ALB); net/http
// resets a stream whose body was left unread. What HTTP/2 has no room for
// is not applicable: chunked framing and smuggling (DATA frames frame the
// body), Connection headers (net/http refuses such requests), upgrades
// (WebSockets stay on HTTP/1.1). An HTTP/1.1 request offering Upgrade: h2c
// is served as HTTP/1.1, the offer removed: HTTP/2 without TLS is prior
// knowledge here. Responses stream to HTTP/2 clients as they come, as to
// HTTP/1 ones. Requests go on to pods as HTTP/1.1
// through skipper's transport: a body without content-length is sent
// chunked, TE: trailers is a hop-by-hop header there.
//
// The handler logs nothing per request and does no work of its own on the
// hot path beyond these checks, the forwarded headers, the PrepareRequest
// hook and what skipper does.
package proxy
