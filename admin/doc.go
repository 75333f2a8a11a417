// Package admin serves the operator endpoint and the metrics endpoint, two
// listeners apart from the proxy, so nothing here is reachable through the
// traffic port.
//
// Handler is the operator endpoint (-admin-address, loopback by default and
// in the manifests; operators reach it with kubectl port-forward): the live
// route table with each route's Ingress (/routes), the objects skipped or
// answering 503 and why (/problems), each backend's endpoints (/endpoints),
// the route source's state — API server connection, last sync, where the
// table came from, deletion-guard holds — (/status), the answer to "where
// does this URL go, and why?" (/explain, explain.go), the one mutating call
// (POST /guard/confirm), Prometheus metrics and Go's profiler. With a token
// (-admin-token-file, required when the listener is not on loopback) every
// request needs "Authorization: Bearer <token>", compared in constant time.
//
// /explain describes a request (url, method, headers, the Gateway listener
// port, the client address) and asks the proxy's own lookup which route
// takes it (proxy.(*Proxy).Match: the proxy's preparation, then skipper's
// live matcher), never a second implementation of it. The winner is named
// by its table entry (Ingress, HTTPRoute or GRPCRoute, host, path), with
// its backend's endpoints (EndpointSlice conditions, breakers) and the
// upstream policy that applies (its bulkheadUpstream arguments over the
// router's defaults, the retry settings). The other candidates are the
// table's routes for the request's host (exact, a wildcard of it, any
// host, the default backend; without a winner also neighbouring hosts):
// their conditions are checked one by one as skipper's matcher checks them
// (path tree, method, Host, path and header regexps, headers, the other
// predicates made from the proxy's own specifications), and the failing
// ones named; a candidate whose conditions all hold lost on precedence,
// told as far as skipper's lookup order can be told from outside (host
// class, longer path, weight on one tree node), else "lower precedence".
// It runs per admin request; nothing of it is on the traffic path.
//
// MetricsHandler is the metrics listener (-metrics-address) Prometheus
// scrapes on the pod network: GET /metrics from bulkhead's explicit
// registry, and nothing else.
package admin
