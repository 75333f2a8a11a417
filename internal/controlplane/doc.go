// Package controlplane runs a real Kubernetes control plane (etcd and
// kube-apiserver) on loopback for bulkhead's integration tests, its demo and
// the local development cluster.
//
// The binaries are built from the Go module proxy by the separate module in
// hack/kube (so bulkhead's own go.mod never carries k8s.io/kubernetes) and
// cached under the user's cache directory, keyed by a hash of that module's
// files, so only the first run pays for the build.
//
// A ControlPlane can kill (SIGKILL), freeze (SIGSTOP), thaw and restart its
// kube-apiserver on the same port and with the same serving certificate, so
// clients made before an outage keep working after it: that is what the
// outage tests need and what envtest, which mints a new CA on restart, cannot
// give. There is no controller-manager: tests write EndpointSlices themselves,
// and deleted namespaces never finish terminating.
//
// Nothing in the router imports this package; it exists for tests and tools.
package controlplane
