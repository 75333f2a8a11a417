// Command bulkhead is the resilient Kubernetes ingress edge router: it
// serves HTTP on -address through skipper's routing and proxy (HTTP/1.1,
// HTTP/2 with prior knowledge, and over TLS HTTP/2 or HTTP/1.1 by ALPN,
// with HTTP/2's bounds in edge.go), answers load balancer health checks on
// -health-address (HTTP/1.1, h2c and gRPC health checks, for every ALB
// target group protocol version: listeners.go), operators on
// -admin-address (loopback, or with a bearer token) and Prometheus on
// -metrics-address. Run with -help for every flag.
//
// "bulkhead explain URL", "bulkhead routes" and "bulkhead status"
// (subcommands.go) run no router: they ask a running one's admin endpoint
// (-admin-address, default 127.0.0.1:9911, its default too) and print the
// answer, for kubectl exec into the router's pod; each takes -help.
package main
