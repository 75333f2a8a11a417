// Command bulkhead is the resilient Kubernetes ingress edge router: it
// serves HTTP on -address through skipper's routing and proxy (HTTP/1.1,
// HTTP/2 with prior knowledge, and over TLS on Gateway ports HTTP/2 or
// HTTP/1.1 by ALPN, with HTTP/2's bounds in edge.go), answers load
// balancer health checks on -health-address, operators on -admin-address
// (loopback, or with a bearer token) and Prometheus on -metrics-address.
// Run with -help for every flag.
package main
