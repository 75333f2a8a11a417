// Package admin serves the operator endpoint and the metrics endpoint, two
// listeners apart from the proxy, so nothing here is reachable through the
// traffic port.
//
// Handler is the operator endpoint (-admin-address, loopback by default and
// in the manifests; operators reach it with kubectl port-forward): the live
// route table with each route's Ingress (/routes), the objects skipped or
// answering 503 and why (/problems), each backend's endpoints (/endpoints),
// the route source's state — API server connection, last sync, where the
// table came from, deletion-guard holds — (/status), the one mutating call
// (POST /guard/confirm), Prometheus metrics and Go's profiler. With a token
// (-admin-token-file, required when the listener is not on loopback) every
// request needs "Authorization: Bearer <token>", compared in constant time.
//
// MetricsHandler is the metrics listener (-metrics-address) Prometheus
// scrapes on the pod network: GET /metrics from bulkhead's explicit
// registry, and nothing else.
package admin
