package main

import (
	"flag"
	"fmt"
	"net/netip"
	"strings"
	"time"

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
}

// netHTTPHeaderSlack is what net/http reads beyond http.Server's
// MaxHeaderBytes before it answers 431 (bufio's first read).
const netHTTPHeaderSlack = 4096

// serverMaxHeaderBytes is the http.Server setting that refuses a header
// block over MaxHeaderBytes, not 4 KiB later.
func (e edgeConfig) serverMaxHeaderBytes() int { return e.MaxHeaderBytes - netHTTPHeaderSlack }

// register defines the flags on fs; the returned function parses the
// values that need it once fs has been parsed.
func (e *edgeConfig) register(fs *flag.FlagSet) func() error {
	proxies := fs.String("trusted-proxies", "", "comma-separated CIDRs of the proxies in front of the router (an ALB's VPC ranges); only from these peers are the -trusted-forwarded-headers believed; empty: from nobody")
	headers := fs.String("trusted-forwarded-headers", proxy.DefaultTrustedHeaders, "forwarded headers kept when a trusted proxy sends them (any of X-Forwarded-Proto, X-Forwarded-Port, X-Forwarded-Host, Forwarded); only those the proxy itself sets: an ALB passes a client's X-Forwarded-Host and Forwarded through")
	fs.DurationVar(&e.HeaderTimeout, "client-header-timeout", 10*time.Second, "time a client has to send the request line and headers; then the connection is closed")
	fs.DurationVar(&e.BodyTimeout, "client-body-timeout", 30*time.Second, "time a client has to send a request body small enough to be buffered for retries (64 KiB, or chunked until it grows past that); then 408 and the connection is closed. Larger bodies stream at the client's pace")
	fs.DurationVar(&e.IdleTimeout, "client-idle-timeout", 75*time.Second, "idle keep-alive client connections (proxy and health listeners) are closed after this; above the ALB's 60 s idle timeout, so the ALB closes first")
	fs.IntVar(&e.MaxHeaderBytes, "max-header-bytes", 64<<10, "largest request line and header block, in bytes; over it: 431")
	fs.IntVar(&e.MaxHeaderFieldBytes, "max-header-field-bytes", proxy.DefaultMaxHeaderFieldBytes, "largest request target or single header line (name and value), in bytes; over it: 414 or 431")
	fs.IntVar(&e.MaxHeaderCount, "max-header-count", proxy.DefaultMaxHeaderCount, "most header lines in a request; over it: 431")
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
