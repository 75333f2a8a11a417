// Package nodewatch tells the router when the node it runs on is being taken
// out of service, so that its readiness (the ALB's target health check) can
// fail while the process keeps serving: the load balancer then stops sending
// new requests to this node before the node goes away.
//
// Incident 3 of the design (504 on node termination) is why: a DaemonSet pod
// is not evicted by a node drain, so the router hears nothing until the
// machine shuts down, and the ALB keeps sending traffic to a node that is
// about to vanish. The node's own object says so much earlier.
//
// What counts as "draining" is decided by one pure function, DrainReason,
// from the Node object alone:
//
//   - the Node is being deleted (deletionTimestamp set; Karpenter holds its
//     Nodes with a finalizer while it drains them);
//   - the cluster autoscaler's deletion taint ToBeDeletedByClusterAutoscaler;
//   - Karpenter's disruption taint: karpenter.sh/disrupted (v1), or
//     karpenter.sh/disruption=disrupting (the v1beta1 releases);
//   - the label node.kubernetes.io/exclude-from-external-load-balancers
//     (present with any value, as Kubernetes' service controller reads it);
//   - the node is cordoned (spec.unschedulable).
//
// Soft signals such as the autoscaler's DeletionCandidateOfClusterAutoscaler
// (PreferNoSchedule) are deliberately not draining: they announce a node
// that may be removed later, and failing health on them would move traffic
// for nothing.
//
// A Watcher keeps that decision current for one named Node (the pod's own,
// from the downward API) through a client-go informer restricted to that
// Node by a metadata.name field selector. Data flows one way: API server →
// informer → DrainReason → an atomic decision that the readiness handler
// reads without a lock (Draining) and an optional callback (OnChange). The
// package knows nothing of the router, health or skipper; cmd wires it.
//
// The same watch also passes on the Node's IP addresses (status.addresses)
// through OnAddresses, when first seen and when they change: the router
// refuses endpoints at its own node (see routing.Options.NodeAddresses), so
// a pod cannot make it proxy to the node's private services. A Node that
// goes away leaves its last addresses refused.
//
// The rule the product lives by, "an unreachable control plane never changes
// readiness", shapes every choice here:
//
//   - Before the first answer from the API server the decision is "not
//     draining": a router that starts during an outage must be able to
//     serve its stored table.
//   - While the watch fails, nothing changes: only an object (or the
//     absence of one in a successful list) can change the decision, never
//     an error. The errors client-go reports are counted and logged,
//     rate-limited (it retries a refused watch connection without reporting
//     it; the route source's bulkhead_apiserver_connected covers that).
//   - A Node that cannot be found at start (a wrong -node-name) or cannot be
//     read (missing RBAC) is logged and shown in a metric, and treated as not
//     draining; the informer keeps retrying, so the Node is picked up when it
//     appears or the permission is granted.
//   - A Node that was seen and is then deleted means draining. This is a
//     positive answer from the API server, not a failure to reach it: a
//     successful watch event or list says the object is gone. A deleted Node
//     means the machine is leaving the cluster (cloud node lifecycle,
//     Karpenter or the autoscaler removing it); a running kubelet does
//     not register its Node again, and the pod garbage collector deletes the
//     pods of a node that no longer exists, so this router is going away in
//     any case and should leave the load balancer first. If the Node comes
//     back, the decision follows the new object.
//
// Because every router of the DaemonSet runs this, a signal put on every
// node at once (an operator cordoning the whole fleet) makes every target
// unhealthy. An ALB whose targets are all unhealthy fails open and routes to
// all of them, so this degrades to "no health check", not to an outage; the
// bulkhead_node_draining metric makes it visible.
package nodewatch
