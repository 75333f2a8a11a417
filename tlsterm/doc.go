// Package tlsterm terminates TLS on the proxy listeners.
//
// A Listener serves plain HTTP and TLS on one socket, telling them apart
// by each connection's first byte (a TLS ClientHello record starts with
// 0x16, no HTTP request does), so which protocol a Gateway listener port
// speaks follows the Gateway, not the router's flags. The proxy listener
// is always wrapped, so Ingress TLS needs no flag either.
//
// A Store holds the certificates of the applied route table
// (routing.Table.Certificates: one per programmed HTTPS Gateway listener,
// one per Ingress spec.tls host, and the default certificate) and picks
// one per handshake by the listener's Gateway port and the client's server
// name (routing.CertificateIndex.Serve): first the port's Gateway
// listeners (exact hostname, then the longest wildcard, then a listener
// without hostname), then the Ingress TLS hosts (exact, then wildcard),
// then the default certificate (also for a ClientHello without SNI). Ingress
// certificates are offered on every listener, as Ingress routes answer on
// every listener. None: the handshake fails, counted in
// bulkhead_tls_handshakes_without_certificate_total{port} and logged at
// debug level only. Expired certificates are served (the Secret says so;
// a refusal would not help the client either);
// bulkhead_tls_certificate_not_after_timestamp_seconds{secret} is there
// to alert on. The table comes from the API server or, after a restart
// during an outage, from the stored last-known-good table, so TLS is
// served either way. A changed Secret reaches new handshakes with the next
// table; established connections keep theirs.
//
// TLS 1.2 is the minimum; ALPN offers h2 and http/1.1, in that order (a
// client without ALPN gets HTTP/1.1). The listener counts connections by
// protocol (bulkhead_proxy_connections_total): plain ones by their first
// bytes (HTTP/2 with prior knowledge starts with its 24-byte preface, read
// only as far as it matches, so an HTTP/1 request is never held back),
// TLS ones once the handshake has succeeded, by what ALPN chose.
package tlsterm
