package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"time"
)

// The protocols a backend's pods are spoken to with, as the
// BackendFilterName filter's "protocol=" argument names them.
const (
	// ProtocolHTTP1 is HTTP/1.1 in the clear, the default.
	ProtocolHTTP1 = "http"
	// ProtocolH2C is HTTP/2 with prior knowledge in the clear (gRPC
	// servers, kubernetes.io/h2c).
	ProtocolH2C = "h2c"
	// ProtocolTLS is TLS; HTTP/2 when the pod offers it through ALPN,
	// else HTTP/1.1.
	ProtocolTLS = "tls"
)

type protocol uint8

const (
	protoHTTP1 protocol = iota
	protoH2C
	protoTLS
)

// TLSConfig is how the router trusts pods of TLS backends. Pods are
// reached by IP, so a certificate is checked against the name the route
// gives (server-name=, the Service's <service>.<namespace>.svc), which is
// also sent as SNI; without one, against the IP.
type TLSConfig struct {
	// RootCAs verify pod certificates; nil: the system's roots.
	RootCAs *x509.CertPool
	// InsecureSkipVerify accepts any certificate: the traffic is
	// encrypted, but anyone who can answer on a pod's address (another
	// pod given that IP, a spoofed EndpointSlice) can read it.
	InsecureSkipVerify bool
	// ClientCertificate, when set, is presented to pods that ask for one
	// (mutual TLS).
	ClientCertificate *tls.Certificate
}

// HTTP/2 connections to pods are pinged after this long without a frame,
// and closed when the ping is not answered within h2PingTimeout: a node
// that vanished sends no reset, and every stream multiplexed on the
// connection would otherwise hang until its own timeouts.
const (
	h2ReadIdleTimeout = 15 * time.Second
	h2PingTimeout     = 5 * time.Second
)

// h2Health sets the HTTP/2 health check of tr unless it has one.
func h2Health(tr *http.Transport) {
	if tr.HTTP2 == nil {
		tr.HTTP2 = &http.HTTP2Config{}
	}
	if tr.HTTP2.SendPingTimeout == 0 {
		tr.HTTP2.SendPingTimeout = h2ReadIdleTimeout
	}
	if tr.HTTP2.PingTimeout == 0 {
		tr.HTTP2.PingTimeout = h2PingTimeout
	}
}

// tlsTransport is the transport of TLS backends, made from the HTTP
// transport skipper gave the round tripper (its pool sizes, idle timeout
// and dialer, wrapped for the connect timeout), with a TLS dial of its
// own: the server name to verify is the attempt's (its route's), which
// one tls.Config cannot carry. Its pool is keyed by "ip:port" like the
// others: a connection verified for one Service is reused for another
// whose route reaches the same pod port (the same pod, so the same
// certificate).
func tlsTransport(base *http.Transport, cfg TLSConfig) *http.Transport {
	var tr *http.Transport
	if base != nil {
		tr = base.Clone()
	} else {
		tr = &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 4 * time.Second}
	}
	dial := tr.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conf := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		RootCAs:            cfg.RootCAs,
		InsecureSkipVerify: cfg.InsecureSkipVerify, //nolint:gosec // the operator's explicit choice (-backend-tls-insecure-skip-verify)
		NextProtos:         []string{"h2", "http/1.1"},
	}
	if cfg.ClientCertificate != nil {
		conf.Certificates = []tls.Certificate{*cfg.ClientCertificate}
	}
	tr.TLSClientConfig = conf
	tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		s, _ := ctx.Value(attemptKey{}).(*attemptState)
		if s != nil && s.connect > 0 {
			// The connect timeout covers the handshake too: a pod that
			// accepts and never answers TLS is as gone as one that does
			// not accept.
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeoutCause(ctx, s.connect, errConnectTimeout)
			defer cancel()
		}
		raw, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := conf.Clone()
		if s != nil && s.serverName != "" {
			c.ServerName = s.serverName
		} else if host, _, err := net.SplitHostPort(addr); err == nil {
			c.ServerName = host
		}
		tc := tls.Client(raw, c)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			if context.Cause(ctx) == errConnectTimeout {
				return nil, &net.OpError{Op: "dial", Net: network, Err: errConnectTimeout}
			}
			return nil, err
		}
		return tc, nil
	}
	tr.ForceAttemptHTTP2 = true
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP1(true)
	tr.Protocols.SetHTTP2(true)
	h2Health(tr)
	return tr
}
