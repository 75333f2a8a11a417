// Command demo shows bulkhead working: it starts a local control plane
// (etcd, kube-apiserver), example pods in network namespaces with their
// Services and EndpointSlices, applies example Ingresses with kubectl, runs
// the router and prints what to try (Ingress and Gateway API routes, TLS
// from an Ingress Secret, HTTP/2 and gRPC through hack/grpccall). Ctrl-C
// stops everything.
//
// Run it with `make demo` from the repository root, as root (the pods live
// in network namespaces).
package main
