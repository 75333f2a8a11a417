// Command grpc-echo is the gRPC backend that plays a Kubernetes pod in
// bulkhead's tests, chaos scenarios and peer benchmarks: what users run
// behind an Ingress whose Service port says appProtocol kubernetes.io/h2c.
// The node agent runs it for the image bulkhead.local/grpc-echo.
//
// Usage:
//
//	grpc-echo -listen :8080 [-control :15000] [-tls-listen :8443 -tls-cert FILE -tls-key FILE]
//	          [-pod NAME] [-shutdown-delay 0s] [-shutdown-timeout 30s]
//
// The pod name comes from -pod, else POD_NAME, else HOSTNAME (the downward
// API and a runtime set them), as testpod's does.
//
// -listen serves gRPC over cleartext HTTP/2 (prior knowledge, as gRPC
// clients and h2c proxies speak it) with grpc-go's own server, not
// net/http's, so the framing, flow control, GOAWAY and trailers are those
// of real gRPC services. -tls-listen serves the same over TLS (ALPN h2).
// Services, from generated code already in grpc-go's module so that
// nothing is generated here:
//
//   - grpc.health.v1.Health: "" and "grpc.testing.TestService" SERVING,
//     NOT_SERVING after SIGTERM or when the control endpoint says so.
//   - grpc.testing.TestService (interop/grpc_testing):
//     EmptyCall; UnaryCall, answering Hostname and ServerId = the pod name
//     and a payload of ResponseSize bytes; StreamingOutputCall, one
//     message per ResponseParameters entry, each after its IntervalUs;
//     FullDuplexCall, the same for every request message. A request's
//     ResponseStatus makes the call end with that code and message
//     (after the stream's messages).
//
// Every call gets header metadata x-pod (the pod name) and trailer
// metadata x-pod and x-echo-count (messages sent); request metadata
// x-echo-trailer is sent back as trailer metadata of the same name, so a
// test can tell custom trailers from the status through a proxy.
//
// The control endpoint (-control, HTTP/1.1) switches the pod at run time:
//
//	GET  /ready             200 while the health service says SERVING, else 503 (the readiness probe:
//	                        the node agent has no gRPC probe)
//	POST /mode?value=MODE   ok: normal; unavailable: every call ends at once with UNAVAILABLE
//	                        (trailers-only), a pod that refuses work; notserving: calls served but
//	                        health NOT_SERVING (readiness fails)
//	GET  /stats             {"mode":"ok","calls":N,"inFlight":N}
//
// On SIGTERM the health service turns NOT_SERVING, the pod keeps serving
// for -shutdown-delay, then GracefulStop: GOAWAY, calls in flight (streams
// too) finish, bounded by -shutdown-timeout, after which the rest are
// cut and the exit code is 1. One line per lifecycle event is logged to
// stderr; calls are not logged.
package main
