// Package grpcload is the gRPC client side of bulkhead's tests, chaos
// scenarios and peer benchmarks: real grpc-go clients (grpc.NewClient,
// HTTP/2 with prior knowledge or over TLS) calling the grpc-echo test pod
// (internal/testpods/grpcecho, grpc.testing.TestService) through a router.
//
// Start sends unary or server-streaming calls at a fixed rate (open loop,
// as internal/loadgen does for HTTP: a slow answer does not slow the
// sender) and counts every outcome by gRPC status code; a call that fails
// is counted, never retried by this package (the client's own retry
// policy is off: grpc-go retries nothing without a service config, and
// transparent retries only happen for streams the server never saw).
// Saturate is the closed-loop form for throughput: a fixed number of
// workers calling back to back for a duration.
//
// Data flow: tests, chaos, hack/benchpeers → grpcload → a router → pods.
// Nothing in the router imports it.
package grpcload
