// Package health answers the two questions a load balancer and the kubelet
// ask, and keeps them apart:
//
//   - GET /healthz (liveness): is the process able to serve at all? It never
//     depends on the Kubernetes API server, so an API outage never restarts
//     the router.
//   - GET /readyz (readiness, the ALB target health check): is a route table
//     loaded, and is the router not draining? It is 503, with a short body
//     saying why, while any readiness condition is unmet.
//
// Readiness is a set of named conditions that other packages set (the route
// source sets "routes", shutdown sets "draining", the node watch sets
// "node"). Nothing here asks the API server; that is the whole point.
package health
