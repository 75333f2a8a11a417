// Command ingressecho answers like the Ingress conformance suite's echo
// server (k8s.gcr.io/ingressconformance/echoserver:v0.0.1, from
// kubernetes-sigs/ingress-controller-conformance, images/echoserver), so
// the suite's Deployments run unmodified on bulkhead's node agent. It is
// our own code, written against what the suite reads (test/http: the
// status, the response headers, and the JSON fields below), with the
// standard library only.
//
// Environment (the image's interface; the suite's Deployment sets the
// first four):
//
//	POD_NAME, NAMESPACE, INGRESS_NAME, SERVICE_NAME   reported in every answer
//	HTTP_PORT (3000)    plain HTTP/1.1
//	HTTPS_PORT (8443)   HTTPS, only when TLS_SERVER_CERT and TLS_SERVER_PRIVKEY
//	                    name PEM files; TLS_CLIENT_CACERTS (PEM) makes it verify
//	                    client certificates when a client offers one
//
// GET /health answers 200 "OK" (the suite's liveness and readiness probes).
// Every other request is echoed as indented JSON, Content-Type
// application/json and X-Content-Type-Options nosniff:
//
//	{"path": request URI as received, "host", "method", "proto", "headers",
//	 "namespace", "ingress", "service", "pod",
//	 "tls": {"version", "peerCertificates", "serverName", "negotiatedProtocol", "cipherSuite"} (HTTPS only)}
//
// "//" in the path is folded to "/" before choosing the handler, as the
// original does ("path" still reports what was sent). No Server header is
// set: the original (net/http) sets none, and the suite's default backend
// feature expects one from the ingress controller, so faking it here
// would hide what the router does.
package main
