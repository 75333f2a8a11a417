// Package podnet is the host side of bulkhead's local "pods": network
// namespaces with addresses of their own, reachable from the root
// namespace, and the processes running in them. Package testpods (pods
// started directly by tests) and package nodeagent (pods of Kubernetes
// Nodes) both build on it; it knows nothing of Kubernetes.
//
// # Network layout
//
// Every Host takes one free /24 out of Range (10.213.0.0/16), say
// 10.213.X.0/24, chosen at random among the /24s that no other Host (in
// any process) holds and that nothing on the host routes. In the root
// namespace it creates bridge "bhtpXb" holding 10.213.X.1/24. Pod number N
// (2..254) gets network namespace "bhtpX-N-<name>" with interface eth0 at
// 10.213.X.N/24 and a default route via 10.213.X.1; the other end of its
// veth pair, "bhtpXhN", is a port of the bridge. The root namespace
// reaches pods directly over the bridge: local delivery (OUTPUT and INPUT,
// never FORWARD), so IP forwarding stays off and no global firewall or
// sysctl state is changed. An "unreachable 10.213.0.0/16" route (proto
// 213, lowest priority) is added once and deliberately left in place, so
// traffic for an address of a Host that is gone fails at once instead of
// leaving the host. AddPod checks with `ip route get` that the pod's
// address is routed to the Host's bridge.
//
// # Cleanup after crashes
//
// Hosts of all processes coordinate through a flock'ed lock file and one
// ownership record per /24 (holder PID and start time) in
// /run/bulkhead-testpods. NewHost first removes everything with the "bhtp"
// prefix whose owner process is gone: processes in those namespaces,
// namespaces, veths, bridges, records, and program builds (BuildProgram)
// in the temporary directory. A crashed run never poisons the next one.
// Processes started through a Spawner with PR_SET_PDEATHSIG die with the
// process that started them.
//
// # Programs
//
// BuildProgram builds a main package of the bulkhead module once per
// process (while anyone holds it) with `go build`, statically, into a
// temporary directory named after the owning process.
package podnet
