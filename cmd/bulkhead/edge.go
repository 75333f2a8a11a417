package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-router/bulkhead/proxy"
)

// edgeConfig is what the proxy listener believes of and accepts from its
// clients: whose forwarded headers count, and the limits a client must
// stay within (the defaults are an AWS ALB's where it has one).
type edgeConfig struct {
	TrustedProxies      []netip.Prefix
	TrustedHeaders      proxy.TrustedHeaders
	HeaderTimeout       time.Duration
	BodyTimeout         time.Duration
	IdleTimeout         time.Duration
	MaxHeaderBytes      int
	MaxHeaderFieldBytes int
	MaxHeaderCount      int
	MaxBodyBytes        int64
	MaxStreams          int // HTTP/2 streams open at once on one client connection

	// Not flags: h2PingAfter and h2WriteByteTimeout, shorter in tests.
	h2PingAfter, h2WriteByteTimeout time.Duration
}

// netHTTPHeaderSlack is what net/http reads beyond http.Server's
// MaxHeaderBytes before it answers 431 (bufio's first read).
const netHTTPHeaderSlack = 4096

// serverMaxHeaderBytes is the http.Server setting that refuses a header
// block over MaxHeaderBytes, not 4 KiB later.
func (e edgeConfig) serverMaxHeaderBytes() int { return e.MaxHeaderBytes - netHTTPHeaderSlack }

// HTTP/2 toward clients. net/http serves it on the proxy listeners beside
// HTTP/1.1: with prior knowledge on plain connections (h2c: what an ALB
// target group of protocol version HTTP2 or GRPC sends over HTTP; no
// Upgrade: h2c dance, which neither the ALB nor gRPC uses) and through
// ALPN on TLS ones (tlsterm offers h2 and http/1.1). What bounds a client:
//
//   - defaultMaxStreams streams open at once per connection (nginx's
//     default; Go's would be 250). More are refused with REFUSED_STREAM,
//     which clients retry; handlers started for streams a client resets at
//     once (rapid reset, CVE-2023-44487) count until they return, and
//     net/http closes a connection that queues more than four times the
//     limit.
//   - The header list: SETTINGS_MAX_HEADER_LIST_SIZE is net/http's
//     MaxHeaderBytes plus 320 (its allowance for HTTP/2's 32 bytes of
//     overhead per field), so -max-header-bytes bounds HTTP/2 as it bounds
//     HTTP/1 (431); one field and the field count are proxy's checks for
//     both (431, 414). CONTINUATION frames count toward it.
//   - Idle connections (no stream open) get a GOAWAY after
//     -client-idle-timeout, as HTTP/1 keep-alives are closed. A client
//     trickling one header block never opens a stream, so it too is cut
//     there, not at -client-header-timeout, which HTTP/2 has no
//     equivalent of per stream (the preface and the TLS handshake are
//     bounded by it).
//   - Receive windows: 1 MiB per connection and per stream (net/http's
//     defaults): what a client can make the router buffer.
//   - h2PingAfter: a connection nothing was read from this long gets a
//     PING, and is closed if no answer comes within h2PingTimeout: a
//     client (or an ALB node) that vanished does not hold its streams,
//     and their pod connections, until the kernel gives up.
//   - h2WriteByteTimeout: a connection whose client stops reading (the
//     socket accepts nothing for this long while frames wait) is closed.
//     HTTP/1 has no such bound; over HTTP/2 one stalled reader would hold
//     every stream of the connection.
const (
	defaultMaxStreams  = 128
	h2PingAfter        = 30 * time.Second
	h2PingTimeout      = 15 * time.Second
	h2WriteByteTimeout = 30 * time.Second
)

// proxyServer is the http.Server of a proxy listener (the main one and
// each Gateway listener's): HTTP/1.1, h2c with prior knowledge and, on the
// TLS connections tlsterm hands it, HTTP/2 or HTTP/1.1 as ALPN chose.
// h2Errors, when not nil, counts HTTP/2 protocol errors by kind.
func (e edgeConfig) proxyServer(h http.Handler, errorLog *log.Logger, h2Errors func(kind string)) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: e.HeaderTimeout, // slow clients cannot hold connections open by trickling headers (HTTP/1; HTTP/2's preface)
		IdleTimeout:       e.IdleTimeout,   // longer than the ALB's default 60 s idle timeout, so the ALB closes first
		MaxHeaderBytes:    e.serverMaxHeaderBytes(),
		ErrorLog:          errorLog,
		Protocols:         &protocols,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: e.MaxStreams,
			SendPingTimeout:      e.h2PingAfter,
			PingTimeout:          min(h2PingTimeout, e.h2PingAfter),
			WriteByteTimeout:     e.h2WriteByteTimeout,
			CountError:           h2Errors,
		},
	}
}

// MetricHTTP2Errors counts HTTP/2 protocol errors on the proxy listeners.
const MetricHTTP2Errors = "bulkhead_proxy_http2_errors_total"

// http2ErrorCounter returns the CountError hook of proxyServer: errors by
// net/http's kind (a fixed set of lowercase names, such as
// conn_close_lost_ping or recv_goaway_), which tells a hostile or broken
// client from a healthy one without logging per connection.
func http2ErrorCounter(reg prometheus.Registerer) func(string) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricHTTP2Errors,
		Help: "HTTP/2 protocol errors on the proxy listeners, by net/http's kind of error."}, []string{"kind"})
	if reg != nil {
		reg.MustRegister(c)
	}
	return func(kind string) { c.WithLabelValues(kind).Inc() }
}

// register defines the flags on fs; the returned function parses the
// values that need it once fs has been parsed.
func (e *edgeConfig) register(fs *flag.FlagSet) func() error {
	e.h2PingAfter, e.h2WriteByteTimeout = h2PingAfter, h2WriteByteTimeout
	proxies := fs.String("trusted-proxies", "", "comma-separated CIDRs of the proxies in front of the router (an ALB's VPC ranges); only from these peers are the -trusted-forwarded-headers believed; empty: from nobody")
	headers := fs.String("trusted-forwarded-headers", proxy.DefaultTrustedHeaders, "forwarded headers kept when a trusted proxy sends them (any of X-Forwarded-Proto, X-Forwarded-Port, X-Forwarded-Host, Forwarded); only those the proxy itself sets: an ALB passes a client's X-Forwarded-Host and Forwarded through")
	fs.DurationVar(&e.HeaderTimeout, "client-header-timeout", 10*time.Second, "time a client has to send the request line and headers; then the connection is closed")
	fs.DurationVar(&e.BodyTimeout, "client-body-timeout", 30*time.Second, "time a client has to send a request body small enough to be buffered for retries (64 KiB, or chunked until it grows past that); then 408 and the connection is closed. Larger bodies stream at the client's pace")
	fs.DurationVar(&e.IdleTimeout, "client-idle-timeout", 75*time.Second, "idle keep-alive client connections (proxy and health listeners) are closed after this; above the ALB's 60 s idle timeout, so the ALB closes first")
	fs.IntVar(&e.MaxHeaderBytes, "max-header-bytes", 64<<10, "largest request line and header block, in bytes; over it: 431")
	fs.IntVar(&e.MaxHeaderFieldBytes, "max-header-field-bytes", proxy.DefaultMaxHeaderFieldBytes, "largest request target or single header line (name and value), in bytes; over it: 414 or 431")
	fs.IntVar(&e.MaxHeaderCount, "max-header-count", proxy.DefaultMaxHeaderCount, "most header lines in a request; over it: 431")
	fs.IntVar(&e.MaxStreams, "client-max-concurrent-streams", defaultMaxStreams, "HTTP/2 streams (requests) a client may have open at once on one connection; more are refused (REFUSED_STREAM) and the client opens another connection")
	fs.Int64Var(&e.MaxBodyBytes, "max-body-bytes", 0, "largest request body in bytes, 0 for none (as an ALB); a larger Content-Length is answered 413 at once, a chunked body 413 when it grows past it")
	return func() error {
		var err error
		if e.TrustedProxies, err = parsePrefixes(*proxies); err != nil {
			return fmt.Errorf("-trusted-proxies: %w", err)
		}
		if e.TrustedHeaders, err = proxy.ParseTrustedHeaders(*headers); err != nil {
			return fmt.Errorf("-trusted-forwarded-headers: %w", err)
		}
		return e.validate()
	}
}

func (e edgeConfig) validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"-client-header-timeout", e.HeaderTimeout}, {"-client-body-timeout", e.BodyTimeout}, {"-client-idle-timeout", e.IdleTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("%s %s: must be positive", d.name, d.v)
		}
	}
	if e.MaxHeaderBytes < 2*netHTTPHeaderSlack || e.MaxHeaderBytes > 1<<20 {
		return fmt.Errorf("-max-header-bytes %d: want 8192 to 1048576", e.MaxHeaderBytes)
	}
	if e.MaxHeaderFieldBytes < 1024 || e.MaxHeaderFieldBytes > e.MaxHeaderBytes {
		return fmt.Errorf("-max-header-field-bytes %d: want at least 1024 and at most -max-header-bytes", e.MaxHeaderFieldBytes)
	}
	if e.MaxBodyBytes < 0 {
		return fmt.Errorf("-max-body-bytes %d: must not be negative (0: none)", e.MaxBodyBytes)
	}
	if e.MaxStreams < 1 || e.MaxStreams > 10000 {
		return fmt.Errorf("-client-max-concurrent-streams %d: want 1 to 10000", e.MaxStreams)
	}
	if e.MaxHeaderCount < 10 {
		return fmt.Errorf("-max-header-count %d: want at least 10", e.MaxHeaderCount)
	}
	return nil
}

// parsePrefixes parses a comma-separated list of CIDRs or single addresses.
func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q is neither a CIDR nor an IP address", f)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR (like 10.0.0.0/16)", f)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
