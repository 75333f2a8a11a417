// Package chaos runs named fault scenarios against bulkhead under steady
// load and reports, per scenario, how many requests were sent, how many
// failed (by status or error kind), their p50, p99 and max latency, and
// whether the scenario stayed within its documented bound. It is the
// library behind `make chaos` (hack/chaos) and its CI subset (the test in
// this package).
//
// # Why it exists
//
// The design's resilience claims (routes survive API server outages, pods
// leave without clients noticing, a mass deletion is held) are only worth
// something measured: with real processes, real faults and real load, as
// counts of failed requests. The e2e tests prove each behaviour once; this
// package replays the faults as an operator would see them and prints the
// numbers, and it can point the same load at a real cluster.
//
// # Shape
//
// A Scenario has a Name, a Setup, a Fault and a Check. Run performs one:
// a fresh environment is built, Setup adds what the scenario needs (pods,
// Ingresses, the router), steady open-loop load (internal/loadgen) starts
// through the router, Fault injects the fault and waits for the
// recovery while the load runs, the load stops, Check verifies what must
// hold afterwards, and the Judge (by default: zero failed requests and a
// router that never reported unready) decides pass or fail. A scenario that
// cannot run yet carries a Skip reason and is reported as skipped, never as
// passed.
//
// Two environments exist:
//
//   - Local: a real etcd and kube-apiserver on loopback
//     (internal/controlplane), toxiproxy in front of it when a scenario
//     needs the network cut (internal/toxiproxy), pods in network
//     namespaces (internal/testpods; for the workload scenarios
//     Deployments run by the node agent, and for grpc- ones a gRPC
//     Deployment called with grpc-go clients through internal/grpcload,
//     its calls reported as load streams counted by gRPC status) and the
//     bulkhead binary
//     (internal/testrouter). Every scenario gets a fresh control plane,
//     pods and router, so one scenario's damage never leaks into the next.
//   - Cluster: a kubeconfig, a namespace and a Deployment behind an Ingress
//     served by bulkhead, reached at a URL (an ALB, a node). Faults are
//     what kubectl and chaoskube-style pod killers do: delete pods, restart
//     the rollout, scale. Faults of the control plane or of the router
//     itself cannot be injected from outside and are reported as skipped.
//
// Imports point one way: this package drives the product as a binary,
// through its flags, listeners, admin endpoint and signals (it imports only
// metric names and the /status type); nothing in the product imports it.
//
// # Running outside go test
//
// The helpers it builds on (testrouter, toxiproxy) take a testing.TB, as
// test helpers do. RunAll gives each scenario a TB of its own (see
// commandT) so that the command reuses them unchanged: a Fatal ends that
// scenario's goroutine, its cleanups run, and the next scenario starts.
package chaos
