package main

import (
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestEdgeFlags(t *testing.T) {
	c, err := parseConfig([]string{"-trusted-proxies", "10.0.0.0/16, 10.1.2.3,2001:db8::/32", "-trusted-forwarded-headers", "x-forwarded-proto,Forwarded",
		"-max-header-bytes", "32768", "-max-body-bytes", "1048576"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16"), netip.MustParsePrefix("10.1.2.3/32"), netip.MustParsePrefix("2001:db8::/32")}
	if len(c.Edge.TrustedProxies) != 3 || c.Edge.TrustedProxies[0] != want[0] || c.Edge.TrustedProxies[1] != want[1] || c.Edge.TrustedProxies[2] != want[2] {
		t.Errorf("trusted proxies %v, want %v", c.Edge.TrustedProxies, want)
	}
	if c.Edge.TrustedHeaders == 0 || c.Edge.MaxBodyBytes != 1<<20 || c.Edge.serverMaxHeaderBytes() != 32768-4096 {
		t.Errorf("headers %v, server MaxHeaderBytes %d", c.Edge.TrustedHeaders, c.Edge.serverMaxHeaderBytes())
	}
	d, err := parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Edge.TrustedProxies) != 0 || d.Edge.MaxHeaderBytes != 64<<10 || d.Edge.MaxHeaderFieldBytes != 16<<10 || d.Edge.HeaderTimeout == 0 || d.Edge.BodyTimeout == 0 {
		t.Errorf("defaults: %+v", d.Edge)
	}
	for _, args := range [][]string{
		{"-trusted-proxies", "10.0.0.0/33"},
		{"-trusted-proxies", "alb.example.com"},
		{"-trusted-forwarded-headers", "X-Real-Ip"},
		{"-client-header-timeout", "0s"},
		{"-client-body-timeout", "-1s"},
		{"-max-header-bytes", "100"},
		{"-max-header-field-bytes", "999999"},
		{"-max-header-count", "1"},
		{"-max-body-bytes", "-1"},
		{"-client-max-concurrent-streams", "0"},
	} {
		_, err := parseConfig(args, io.Discard)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v, want one line", args, err)
		}
	}
}

// The proxy listeners' server speaks HTTP/1.1, h2c and HTTP/2 over TLS,
// with every HTTP/2 bound set.
func TestProxyServerSettings(t *testing.T) {
	c, err := parseConfig([]string{"-client-max-concurrent-streams", "64"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Edge.proxyServer(http.NotFoundHandler(), nil, nil)
	if p := s.Protocols; p == nil || !p.HTTP1() || !p.HTTP2() || !p.UnencryptedHTTP2() {
		t.Errorf("protocols %v, want HTTP1, HTTP2 and UnencryptedHTTP2", p)
	}
	h2 := s.HTTP2
	if h2 == nil || h2.MaxConcurrentStreams != 64 || h2.SendPingTimeout != h2PingAfter || h2.PingTimeout != h2PingTimeout ||
		h2.WriteByteTimeout != h2WriteByteTimeout {
		t.Errorf("HTTP/2 settings %+v", h2)
	}
	if s.ReadHeaderTimeout != c.Edge.HeaderTimeout || s.IdleTimeout != c.Edge.IdleTimeout || s.MaxHeaderBytes != c.Edge.serverMaxHeaderBytes() {
		t.Errorf("server %+v", s)
	}
}
