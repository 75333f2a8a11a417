// Package admin serves the operator endpoint (-admin-address, loopback by
// default): Prometheus metrics from bulkhead's explicit registry, the live
// route table, and Go's profiler. It is a separate listener from the proxy,
// so nothing here is ever reachable through the traffic port.
package admin
