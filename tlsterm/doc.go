// Package tlsterm terminates TLS on the proxy listeners.
//
// A Listener serves plain HTTP and TLS on one socket, telling them apart
// by each connection's first byte (a TLS ClientHello record starts with
// 0x16, no HTTP request does), so which protocol a Gateway listener port
// speaks follows the Gateway, not the router's flags.
//
// A Store holds the certificates of the applied route table
// (routing.Table.Certificates: one per programmed HTTPS Gateway listener)
// and picks one per handshake by the listener's Gateway port and the
// client's server name (routing.CertificateIndex: exact hostname, then the
// longest wildcard, then a listener without hostname; without SNI only the
// latter). The table comes from the API server or, after a restart during
// an outage, from the stored last-known-good table, so TLS is served
// either way. A changed Secret reaches new handshakes with the next table;
// established connections keep theirs.
//
// TLS 1.2 is the minimum; ALPN offers HTTP/1.1 only.
package tlsterm
