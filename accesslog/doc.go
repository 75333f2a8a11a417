// Package accesslog writes one line per client request: who asked what,
// how it was answered, and what the router did on the way (the route and
// the Ingress, HTTPRoute or GRPCRoute it came from, the backend, every
// attempt toward a pod with its outcome, retries, breaker skips and why
// no further attempt was made), read from the request's record (package
// record), which the upstream layer fills in.
//
// Imports point one way: cmd wires a Logger's Handler around the proxy's
// handler (outermost, so the line covers everything the router did) and
// feeds it every applied route table (SetTable); the package reads
// package record and the routes of package routing, and nothing reads
// it.
//
// # Cost on the serving path
//
// The handler takes its per-request state (the record and the counting
// ResponseWriter) from a pool, puts the record into the request's
// context (one context and one request copy: the two allocations a
// logged request adds; a request with a body adds its byte counter),
// and once the proxy has returned, encodes the line by hand into a
// pooled buffer (no encoding/json, no slog) and hands it to the writer
// goroutine with a non-blocking channel send. The route's object is found
// by a binary search in the table's routes, which are sorted by id,
// loaded through an atomic pointer: no lock per request. Sampling
// (Options.Sample) skips the encoding of successful requests that are not
// drawn; failures (status >= 500, a failed attempt, a retry, a breaker
// skip, a stop reason) are always logged.
//
// # Never blocking
//
// Lines wait in a queue of fixed length (Options.Queue) for the one
// writer goroutine. From the first line of a batch it waits FlushDelay
// (100 ms) for more, or less when the queue is a quarter full, and then
// writes what is queued in writes of up to 64 KiB: a line reaches the
// sink within about FlushDelay, and the sink costs a system call per
// batch, not per request (per request it cost 40% more CPU per request
// through the router). When
// the sink is slower than the requests (a full disk, a stuck pipe, a
// log shipper that stopped reading), the queue fills and further lines
// are dropped and counted in MetricDropped: the request is answered as
// fast as ever. Close writes what is queued, bounded by its context.
//
// # What the fields say
//
// Strings from the client (path, host, X-Forwarded-For, request id) are
// escaped so that every line is one valid JSON object whatever bytes
// arrive: invalid UTF-8 becomes U+FFFD. X-Forwarded-For is logged as
// received, before the router appends the peer: what the client (or the
// load balancer in front) claims, not checked. The trace id is the
// tracer's when tracing is on, else the one of a well-formed incoming
// traceparent header (informative: the client chose it, and it is passed
// on to the pod unchanged). The query string is left out unless asked
// for (FieldQuery): URLs carry tokens. Bytes in are the request body bytes
// the proxy read, bytes out the response body bytes written; bytes
// through an upgraded (WebSocket) connection are not counted, its status
// is 101. grpc-status comes from the trailers the upstream layer passes
// on (or a trailers-only answer's headers).
package accesslog
