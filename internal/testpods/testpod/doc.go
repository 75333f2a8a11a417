// Command testpod is the HTTP backend that plays a Kubernetes pod in bulkhead's
// tests and demo. It uses only the standard library so it can be built quickly
// and started anywhere, typically inside a network namespace by package
// github.com/bulkhead-router/bulkhead/internal/testpods.
//
// Usage:
//
//	testpod -listen IP:PORT [-control IP:PORT] -pod NAME -service NAME -namespace NAME [-shutdown-timeout 30s] [-shutdown-delay 0s]
//
// Without -pod, -service and -namespace the identity comes from the
// environment: POD_NAME (else HOSTNAME), SERVICE_NAME, POD_NAMESPACE (else
// NAMESPACE), as the node agent's downward API and runtime set them.
//
// Every request to -listen is answered with a JSON document describing the
// pod (pod, service, namespace) and the request as the pod saw it (method,
// host, path, rawQuery, proto, headers, remoteAddr, bodyBytes), followed by a
// newline. The response also carries X-Testpod-Pod, X-Testpod-Service and
// X-Testpod-Namespace headers so a client can tell which pod answered without
// decoding the body. HTTP/1.1 and cleartext HTTP/2 with prior knowledge (h2c)
// are served.
//
// Query parameters shape a single response:
//
//	?sleep=2s    wait before answering; the wait ends early if the client goes away
//	?status=503  answer with that status (200..599); the body is still the JSON document
//	?bytes=N     append N bytes of filler after the JSON document (for large responses)
//	?stream=N    after the JSON document, send N lines "chunk <i>\n", each flushed, 10ms apart
//
// An invalid parameter is answered with 400 and the JSON document with an
// "error" field.
//
// The optional control listener (-control) switches the behaviour of the
// whole pod at run time:
//
//	GET  /mode              {"mode":"ok"}
//	POST /mode?value=MODE   MODE is one of:
//	                          ok    normal answers
//	                          503   every request is answered 503 (JSON body)
//	                          hang  requests are read and never answered, until the client gives up
//	                          close connections are closed without an answer
//	GET  /stats             {"mode":"ok","requests":N,"inFlight":N}
//
// "requests" counts requests received on -listen since start, "inFlight" the
// ones not finished yet; tests use them to wait for a request to have arrived
// instead of sleeping.
//
// On SIGTERM or SIGINT the pod first keeps serving for -shutdown-delay (0
// by default: many real applications exit at once; a preStop sleep gives
// a real pod this delay). Then it behaves like a well-behaved real pod: it stops
// accepting connections, lets in-flight requests finish (bounded by
// -shutdown-timeout) and exits 0. If the bound expires it closes the
// remaining connections and exits 1. One line per lifecycle event (start,
// listening, mode change, shutdown) is logged to stderr; requests are not
// logged.
package main
