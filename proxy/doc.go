// Package proxy assembles bulkhead's serving path from skipper's libraries:
// a skipper routing table fed by data clients (skrouting), skipper's load
// balancer post-processors, and skipper's proxy, behind one http.Handler.
//
// It knows nothing of Kubernetes: route sources arrive as skipper
// DataClients, and any custom predicates and pre-processors they need (the
// VirtualHost predicate of package routing) are passed in. Keeping this seam
// small is what lets the upstream resilience layer and the route source
// evolve independently.
//
// The handler logs nothing per request and does no work of its own on the
// hot path beyond what skipper does.
package proxy
