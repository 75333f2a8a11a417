// Command bulkhead is the resilient Kubernetes ingress edge router: it
// serves HTTP on -address through skipper's routing and proxy, answers load
// balancer health checks on -health-address, operators on -admin-address
// (loopback, or with a bearer token) and Prometheus on -metrics-address.
// Run with -help for every flag.
package main
