// Package testpods runs real HTTP backends ("pods") for bulkhead's tests
// and demo, each in its own network namespace with its own address, and
// publishes them to Kubernetes as a Service plus an EndpointSlice.
//
// # Why namespaces
//
// EndpointSlice validation rejects loopback and link-local addresses, so
// backends on 127.0.0.1 cannot be published. Each pod therefore gets a
// non-loopback address that only exists on this host: traffic to it goes to
// a network namespace created here and nowhere else.
//
// # Network layout
//
// The network and process machinery lives in package podnet, shared with
// package nodeagent; this is what it does for a Cluster.
//
// Every Cluster takes one free /24 out of 10.213.0.0/16, say 10.213.X.0/24,
// chosen at random among the /24s that no other Cluster (in any process)
// holds and that nothing on the host routes. In the root namespace it
// creates bridge "bhtpXb" holding 10.213.X.1/24. Pod number N (2..254) gets
// network namespace "bhtpX-N-<pod name>" with interface eth0 at
// 10.213.X.N/24 and a default route via 10.213.X.1; the other end of its
// veth pair, "bhtpXhN", is a port of the bridge. The root namespace, where
// bulkhead and the tests run, reaches pods directly over the bridge, from
// source address 10.213.X.1. That is local delivery in the root namespace
// (OUTPUT and INPUT, never FORWARD), so IP forwarding stays off, bridge
// netfilter and a FORWARD DROP policy do not matter, and strict rp_filter
// passes because the reverse route is the bridge itself. Only pod-to-pod
// traffic would cross FORWARD, and nothing needs it. A root namespace INPUT
// or OUTPUT firewall dropping 10.213.0.0/16 would break pods; StartPod then
// fails naming that cause. No global firewall or sysctl state is changed.
//
// The first New on a host also adds an "unreachable 10.213.0.0/16" route
// (proto 213, lowest-priority metric) to the root namespace. Live /24s are
// more specific and win; every other address in the range (a stale
// EndpointSlice, a client still sending after Close) fails at once with
// "no route to host" instead of following the default route off the host.
// The route is deliberately left in place after the last Close, because
// traffic for these addresses must never go anywhere but our namespaces;
// `ip route del unreachable 10.213.0.0/16 proto 213` removes it by hand.
// StartPod also checks with `ip route get` that the pod's address is routed
// to the Cluster's bridge before any traffic is sent.
//
// # Pods
//
// The pod program is ./testpod (see its documentation for the answers,
// query parameters and control modes). New builds it once per process with
// `go build` (podnet.BuildProgram), run from the current directory, which must be inside the
// bulkhead module. StartPod runs it with `ip netns exec` in its own process
// group, with PR_SET_PDEATHSIG so it dies with the test process, and polls
// until it answers from the root namespace. Pod.Kill and Pod.Terminate end
// it abruptly or gracefully; Pod.SetMode and Pod.Stats talk to its control
// endpoint on port 15000 (15001 if the pod itself uses 15000).
//
// # Kubernetes objects
//
// With a client, StartPod by default creates the namespace and a
// selector-less ClusterIP Service (port "http" 80, targetPort "http") and
// writes one EndpointSlice per service, named "<service>-testpods",
// managed-by ManagedBy, listing the service's published pods with their
// conditions. Pod.SetConditions, Cluster.AddToEndpoints and
// Cluster.RemoveFromEndpoints change what the next SyncEndpointSlice writes;
// nothing is written behind the test's back, so a test controls when the
// "cluster" notices a change. Close leaves Kubernetes objects alone.
//
// # Cleanup
//
// Close kills the pods, deletes their veths and namespaces, the bridge and
// the /24's ownership record; it is safe to call twice. Clusters of all
// processes coordinate through a flock'ed lock file and one ownership record
// per /24 (holder PID and start time) in /run/bulkhead-testpods. New first
// removes everything with the "bhtp" prefix whose owner process is gone:
// processes in those namespaces, namespaces, veths, bridges, records, and
// testpod builds in the temporary directory. A crashed run never poisons
// the next one.
//
// # Preconditions
//
// Root (CAP_NET_ADMIN and CAP_SYS_ADMIN), the ip command from iproute2 and,
// unless Options.TestpodBinary is set, the go command. New returns a
// *MissingPreconditionError naming what is missing; ForTest turns it into a
// skip, or into a failure when CI=true.
package testpods
