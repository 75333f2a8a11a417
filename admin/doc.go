// Package admin serves the operator endpoint (-admin-address, loopback by
// default): the live route table with each route's Ingress (/routes), the
// objects skipped or answering 503 and why (/problems), the route source's
// state — API server connection, last sync, where the table came from,
// deletion-guard holds — (/status, POST /guard/confirm), Prometheus metrics
// from bulkhead's explicit registry, and Go's profiler. It is a separate
// listener from the proxy, so nothing here is reachable through the traffic
// port.
package admin
