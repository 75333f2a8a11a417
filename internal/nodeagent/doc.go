// Package nodeagent plays the kubelets of a small local cluster: it
// registers Nodes with a Kubernetes API server and runs the Pods bound to
// them as processes in network namespaces of this host. There is no
// container runtime, no image, no CNI and no kube-proxy: an image name
// selects a program built from this repository, and a pod's "network" is a
// netns with one address, reachable from the root namespace (package
// podnet). Everything else a client can observe (Node and Lease objects,
// pod status, probes, restarts, graceful termination, the final deletion)
// follows what a kubelet does, so the real controllers (Deployment,
// ReplicaSet, EndpointSlice, node lifecycle) work against it unmodified.
//
// Data flow: API server -> (one pod informer per node, field selector
// spec.nodeName) -> one runner per pod -> processes, probes -> status
// patches and deletions back to the API server. Imports point at podnet
// and client-go only.
//
// # Starting and stopping
//
//	a, err := nodeagent.Start(ctx, client, nodeagent.Options{})   // or ForTest(t, client, opts)
//	defer a.Close()
//
// Start registers Options.Nodes (default bulkhead-node-1..3), each with
// labels kubernetes.io/hostname, kubernetes.io/os=linux, kubernetes.io/arch
// and topology.kubernetes.io/zone (Options.Zones round-robin, default
// zone-a, zone-b), capacity and allocatable cpu/memory/pods, status Ready,
// and a Lease in kube-node-lease renewed every LeaseDuration/4 (10 s by
// default, as kubelet). Node status is rewritten every StatusInterval.
// A Node of the same name left by an earlier run is taken over, or
// replaced when its podCIDR differs (spec.podCIDR is immutable).
//
// Close stops renewing (a node lifecycle controller then marks the nodes
// NotReady, as for a dead machine), SIGKILLs every pod process and removes
// every netns, veth and bridge; Pod objects stay, Nodes too unless
// Options.DeleteNodesOnClose. After a crash of the owning process the next
// podnet user (any Start, or testpods.New) removes the leftovers, and
// PR_SET_PDEATHSIG has already killed the processes.
//
// # Addresses
//
// Every node takes a free /24 of 10.213.0.0/16 (podnet.NewHost: random
// among the /24s no other owner on the host holds), set as spec.podCIDR;
// its .1, on the node's bridge in the root namespace, is the node's
// InternalIP and every pod's hostIP. Pods get .2 to .254 round-robin, so
// an address just freed (maybe still in an EndpointSlice) is reused last.
//
// # Images
//
// Images (a table in images.go) maps a repository, any tag or digest, to
// a program:
//
//	bulkhead.local/testpod                   internal/testpods/testpod, args -listen :8080 -control :15000
//	bulkhead.local/grpc-echo                 internal/testpods/grpcecho, args -listen :8080 -control :15000 (gRPC over h2c)
//	bulkhead.local/echo-basic                internal/nodeagent/echobasic (HTTP :3000, h2c :3001, HTTPS :8443)
//	registry.k8s.io/gateway-api/echo-basic   the same: the Gateway API conformance echo server's format
//	registry.k8s.io/coredns/coredns          echobasic's DNS placeholder (REFUSED on :53)
//	k8s.gcr.io/ingressconformance/echoserver internal/nodeagent/ingressecho (HTTP :3000): the Ingress conformance suite's echo server
//
// The conformance suite v1.6.3 uses echo-basic v1.5.1, v1.6.0-dev.2 and
// v1.6.0-dev.3, and coredns v1.12.2 in its base manifests, which
// GATEWAY-HTTP needs all ready (the HTTPRoute tests add no images of
// their own); echo-advanced (mesh only) is not mapped.
// Programs are built with `go build` once per agent, from the current
// directory, which must be inside the bulkhead module. A container's
// command replaces the image's entrypoint (its first word must name the
// image's program), its args the default args. An unknown image leaves
// the container waiting with reason ErrImagePull (InvalidImageName for a
// malformed reference) and a message naming the supported images.
//
// # Containers
//
// A pod's sandbox (netns, address) that cannot be made is tried again with
// a back-off of 1 s doubling to 30 s. Each container is one process started
// with `ip netns exec` in the pod's netns, in its own process group, with
// PR_SET_PDEATHSIG. Its environment: PATH, HOSTNAME (the pod name, as a
// runtime sets it), the image's ENV, envFrom and env with $(VAR) expansion,
// valueFrom.fieldRef (metadata.name, namespace, uid, labels['k'],
// annotations['k'], spec.nodeName, spec.serviceAccountName, status.podIP,
// status.hostIP), resourceFieldRef (the container's own requests/limits),
// configMapKeyRef and secretKeyRef. Secret, configMap and emptyDir volumes
// are written to a per-pod directory; since pods share the host's
// filesystem, a mountPath is not mounted: env values, command and args
// naming a path under it are rewritten to the directory (how the
// conformance tls-backend finds its certificate). Init containers,
// sidecars, resource limits, hostNetwork and securityContext are not
// implemented, and there is no kubelet endpoint: kubectl logs, exec and
// port-forward do not work (a pod's output goes to the agent's logger with
// the pod's name).
//
// # Probes, restarts, status
//
// httpGet, tcpSocket and exec probes (startup, liveness, readiness) run
// from the root namespace against the pod IP with initialDelaySeconds,
// periodSeconds, timeoutSeconds, successThreshold and failureThreshold;
// named ports resolve from the container's ports. Ready follows readiness
// (no probe: ready once running); a failed liveness or startup probe stops
// the container (SIGTERM, SIGKILL after the probe's or pod's grace) and it
// restarts per restartPolicy. Restarts: the first at once, then a back-off
// of BackoffBase doubling to BackoffMax (kubelet: 10 s to 5 min), shown as
// waiting CrashLoopBackOff; a run of 10 minutes resets it. Status is
// written as a kubelet does, by JSON merge patches of the status
// subresource carrying the pod's UID: phase Pending, Running, Succeeded or
// Failed; conditions PodScheduled, PodReadyToStartContainers, Initialized,
// ContainersReady, Ready (others' conditions kept); podIP(s), hostIP(s),
// startTime; containerStatuses with state, lastState, ready, started,
// restartCount, containerID bulkhead://<pid>. Events (Started, Killing,
// Unhealthy, BackOff, Failed, FailedPreStopHook) are recorded.
//
// # Deletion
//
// When a pod gets a deletionTimestamp, each container runs its preStop
// hook (exec `sleep N` or `sh -c "sleep N"` natively; other exec commands
// in the pod's netns if the binary exists on the host, else a
// FailedPreStopHook event; httpGet; the native sleep action), then gets
// SIGTERM, and SIGKILL when the grace period (deletionGracePeriodSeconds,
// counted from the start of termination, at least 2 s after SIGTERM) is
// over. Then the netns goes, the final status is written (Succeeded if
// every container exited 0, else Failed, Ready false) and the pod is
// deleted with grace 0 and a UID precondition. A pod deleted outright
// (force) is killed at once.
package nodeagent
