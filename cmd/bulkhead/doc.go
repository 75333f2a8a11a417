// Command bulkhead is the resilient Kubernetes ingress edge router: it
// serves HTTP on -address through skipper's routing and proxy, answers load
// balancer health checks on -health-address and operators on -admin-address.
// Run with -help for every flag.
package main
