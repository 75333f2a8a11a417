// Package controlplane runs a real Kubernetes control plane (etcd,
// kube-apiserver and, if asked, kube-controller-manager and kube-scheduler)
// on loopback for bulkhead's integration tests, its demo and the local
// development cluster.
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
// give.
//
// By default there is no controller-manager and no scheduler: nothing but the
// test writes objects, so tests write EndpointSlices themselves and deleted
// namespaces never finish terminating. With Options.Controllers (or
// StartControllers on a running one) the control plane also runs
// kube-controller-manager (the controllers of ManagedControllers:
// Deployment, ReplicaSet, EndpointSlice, namespace, garbage collector, node
// lifecycle and taint eviction among them) and kube-scheduler, each with its
// own kubeconfig and the identity the bootstrap RBAC policy gives it. They
// outlive kube-apiserver's outages and reconnect on their own, as in a real
// cluster. Nothing runs pods: a node agent registers Nodes (with their
// podCIDR; node IPAM is off), renews their Leases and writes the Pods'
// status. A Node whose Lease goes unrenewed for
// Options.NodeMonitorGracePeriod is marked NotReady and its pods are evicted
// Options.PodEvictionToleration later.
//
// Every process runs with PR_SET_PDEATHSIG, so a test binary that crashes or
// is killed leaves none behind.
//
// Nothing in the router imports this package; it exists for tests and tools.
package controlplane
