// Package workloads builds and drives real Kubernetes workloads for
// bulkhead's tests, chaos scenarios and demo: Deployments of the node
// agent's test image (App) or of its gRPC test image (GRPCApp, a Service
// port with appProtocol kubernetes.io/h2c) behind a selector Service, and
// the operations users run on them (rollout restart, scale, pod deletion,
// node drain) through the real kubectl against the local control plane.
//
// It exists so that tests exercise what clients see when Kubernetes
// itself moves pods: the Deployment and ReplicaSet controllers choose
// which pods go when, the EndpointSlice controller writes the slices with
// its own lag, the node agent (internal/nodeagent) runs preStop hooks and
// sends SIGTERM. Nothing here writes an EndpointSlice or a Pod status;
// tests that need exact control of a slice use internal/testpods instead.
//
// Waits poll the API server until a condition holds, with the caller's
// context as the deadline; none sleeps for a fixed time.
//
// Data flow: tests → workloads → kubectl and client-go → the control
// plane. Nothing in the router imports this package.
package workloads
