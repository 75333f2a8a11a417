// Package grpcechoserver is the protobuf and gRPC code the Gateway API
// conformance suite generated for its echo server's gRPC mode
// (sigs.k8s.io/gateway-api/conformance v1.6.3,
// echo-basic/grpcechoserver, from echo-basic/grpcecho.proto; Apache 2.0,
// copied unmodified but for this file). The suite's gRPC client calls
// gateway_api_conformance.echo_basic.grpcecho.GrpcEcho with these messages;
// echobasic answers them. Copied rather than imported: the conformance
// module would bring controller-runtime and its dependencies into the
// router's go.mod, and move some of them, for two generated files.
package grpcechoserver
