// Command echobasic answers like the Gateway API conformance suite's
// echo-basic image (registry.k8s.io/gateway-api/echo-basic, as used by
// sigs.k8s.io/gateway-api/conformance v1.6.3), so the suite's base
// manifests run unmodified on bulkhead's node agent. It is our own code,
// written against what the suite reads (conformance/utils/http and
// utils/grpc), using the standard library, and google.golang.org/grpc for
// the gRPC mode, whose few flat messages are written with protowire by the
// field numbers of the suite's grpcecho.proto (grpc.go): no generated code.
//
// Environment (the image's interface):
//
//	POD_NAME, NAMESPACE, SERVICE_NAME, INGRESS_NAME   reported in every answer
//	HTTP_PORT (3000)   plain HTTP/1.1
//	H2C_PORT (3001)    cleartext HTTP/2 (prior knowledge or Upgrade: h2c); other requests get 400
//	HTTPS_PORT (8443)  HTTPS, only when TLS_SERVER_CERT and TLS_SERVER_PRIVKEY name PEM files;
//	                   TLS_CLIENT_CACERTS makes it verify client certificates if given
//	GRPC_ECHO_SERVER   set: serve the gRPC service
//	                   gateway_api_conformance.echo_basic.grpcecho.GrpcEcho instead:
//	                   h2c (prior knowledge) on HTTP_PORT, and TLS on HTTPS_PORT
//	                   when TLS_SERVER_CERT and TLS_SERVER_PRIV_KEY (sic) are set.
//	                   Echo and EchoTwo answer the fully qualified method, the
//	                   call's metadata and :authority, the pod's identity and, over
//	                   TLS, the connection's (version, SNI, ALPN, cipher, client
//	                   certificates); EchoThree is UNIMPLEMENTED, as the suite's is.
//	                   No server reflection (the suite does not use it).
//	TCP_ECHO_SERVER    set: echo raw bytes on HTTP_PORT, and over TLS on HTTPS_PORT
//	                   when TLS_SERVER_CERT and TLS_SERVER_PRIV_KEY (sic) are set
//
// With arguments "-conf FILE" (as the suite's coredns Deployment passes
// them) it is a DNS placeholder instead: it answers every query on UDP and
// TCP port 53 with REFUSED, so that Deployment runs and is ready; it
// resolves nothing.
//
// HTTP answers (every port): GET /health answers "OK"; /status/NNN answers
// status NNN with no body; /retry/?uuid=U&succeedAfter=N[&responseCode=C]
// [&delayRetry=D] fails the first N requests of U (connection reset, or
// status C) and then echoes; every other path echoes (?delay=D waits
// first). An echo is indented JSON:
//
//	{"path": request URI as received, "host", "method", "proto", "headers",
//	 "httpPort": HTTP_PORT, "namespace", "ingress", "service", "pod",
//	 "tls": {"version", "peerCertificates", "serverName", "negotiatedProtocol", "cipherSuite"} (HTTPS only)}
//
// with Content-Type application/json. Request header X-Echo-Set-Header
// ("Name: value, Other: value") sets those response headers. "//" in the
// path is folded to "/" before routing (but "path" reports the original).
// GET /ws upgrades to a WebSocket that echoes every frame.
package main
