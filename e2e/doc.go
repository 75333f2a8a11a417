// Package e2e holds bulkhead's end-to-end tests: a real etcd and
// kube-apiserver (internal/controlplane), HTTP pods in network namespaces
// with their Services and EndpointSlices (internal/testpods), and the built
// bulkhead binary (internal/testrouter), driven the way users drive them.
//
// They need root (network namespaces). Outside CI a host without it skips
// them with the reason; with CI=true it fails them.
package e2e
