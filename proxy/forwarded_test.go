package proxy

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

var noTrust = &ForwardedTrust{}

func albTrust(t *testing.T) *ForwardedTrust {
	t.Helper()
	h, err := ParseTrustedHeaders(DefaultTrustedHeaders)
	if err != nil {
		t.Fatal(err)
	}
	return &ForwardedTrust{Proxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")}, Headers: h}
}

func TestForwardedHeadersSetOnDirectRequest(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "http://shop.example/cart", nil)
	r.RemoteAddr = "192.0.2.7:51234"
	setForwardedHeaders(r, noTrust)
	if got := r.Header.Get(HeaderForwardedFor); got != "192.0.2.7" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
	if got := r.Header.Get(HeaderForwardedProto); got != "http" {
		t.Errorf("X-Forwarded-Proto = %q", got)
	}
	if got := r.Header.Get(HeaderForwardedHost); got != "shop.example" {
		t.Errorf("X-Forwarded-Host = %q", got)
	}
	if id := r.Header.Get(HeaderRequestID); len(id) != 32 {
		t.Errorf("X-Request-Id = %q, want 32 hex digits", id)
	}
}

// forgedRequest carries every forwarded header a client could forge.
func forgedRequest(peer string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://shop.example/", nil)
	r.RemoteAddr = peer
	r.Header.Set(HeaderForwardedFor, "203.0.113.9")
	r.Header.Add(HeaderForwardedFor, "198.51.100.2")
	r.Header.Set(HeaderForwardedProto, "https")
	r.Header.Set(HeaderForwardedPort, "443")
	r.Header.Set(HeaderForwardedHost, "evil.example")
	r.Header.Set(HeaderForwarded, "for=192.0.2.1;host=evil.example;proto=https")
	r.Header.Set(HeaderRequestID, "abc")
	return r
}

func TestForwardedHeadersFromUntrustedPeerAreReplaced(t *testing.T) {
	for name, trust := range map[string]*ForwardedTrust{"no trusted proxies": noTrust, "peer outside them": albTrust(t)} {
		r := forgedRequest("192.0.2.50:443")
		setForwardedHeaders(r, trust)
		if got := r.Header.Values(HeaderForwardedFor); len(got) != 1 || got[0] != "203.0.113.9, 198.51.100.2, 192.0.2.50" {
			t.Errorf("%s: X-Forwarded-For = %q, want the prior list with the peer appended", name, got)
		}
		if got := r.Header.Get(HeaderForwardedProto); got != "http" {
			t.Errorf("%s: X-Forwarded-Proto = %q, want this hop's http", name, got)
		}
		if got := r.Header.Get(HeaderForwardedHost); got != "shop.example" {
			t.Errorf("%s: X-Forwarded-Host = %q, want the Host this hop saw", name, got)
		}
		if got := r.Header.Values(HeaderForwardedPort); got != nil {
			t.Errorf("%s: X-Forwarded-Port = %q, want it removed", name, got)
		}
		if got := r.Header.Values(HeaderForwarded); got != nil {
			t.Errorf("%s: Forwarded = %q, want it removed", name, got)
		}
		if got := r.Header.Get(HeaderRequestID); got != "abc" {
			t.Errorf("%s: X-Request-Id = %q, want the incoming id kept", name, got)
		}
	}
}

func TestForwardedHeadersBehindTrustedALB(t *testing.T) {
	r := forgedRequest("10.0.3.4:443")
	setForwardedHeaders(r, albTrust(t))
	if got := r.Header.Values(HeaderForwardedFor); len(got) != 1 || got[0] != "203.0.113.9, 198.51.100.2, 10.0.3.4" {
		t.Errorf("X-Forwarded-For = %q, want the prior list with this hop appended", got)
	}
	if got := r.Header.Get(HeaderForwardedProto); got != "https" {
		t.Errorf("X-Forwarded-Proto = %q, want the ALB's https kept", got)
	}
	if got := r.Header.Get(HeaderForwardedPort); got != "443" {
		t.Errorf("X-Forwarded-Port = %q, want the ALB's kept", got)
	}
	// An ALB passes these through from the client: not trusted by default.
	if got := r.Header.Get(HeaderForwardedHost); got != "shop.example" {
		t.Errorf("X-Forwarded-Host = %q, want the Host (an ALB does not set it)", got)
	}
	if got := r.Header.Values(HeaderForwarded); got != nil {
		t.Errorf("Forwarded = %q, want it removed (an ALB does not set it)", got)
	}
}

func TestForwardedHostAndForwardedKeptWhenTrusted(t *testing.T) {
	h, err := ParseTrustedHeaders("x-forwarded-host, Forwarded")
	if err != nil {
		t.Fatal(err)
	}
	trust := &ForwardedTrust{Proxies: []netip.Prefix{netip.MustParsePrefix("10.0.3.4/32"), netip.MustParsePrefix("2001:db8::/32")}, Headers: h}
	for _, peer := range []string{"10.0.3.4:1", "[::ffff:10.0.3.4]:1", "[2001:db8::1]:1"} {
		r := forgedRequest(peer)
		setForwardedHeaders(r, trust)
		if r.Header.Get(HeaderForwardedHost) != "evil.example" || r.Header.Get(HeaderForwarded) == "" {
			t.Errorf("peer %s: X-Forwarded-Host %q, Forwarded %q: want both kept", peer, r.Header.Get(HeaderForwardedHost), r.Header.Get(HeaderForwarded))
		}
		if r.Header.Get(HeaderForwardedProto) != "http" || r.Header.Get(HeaderForwardedPort) != "" {
			t.Errorf("peer %s: Proto %q Port %q: not trusted here, want replaced", peer, r.Header.Get(HeaderForwardedProto), r.Header.Get(HeaderForwardedPort))
		}
	}
}

func TestParseTrustedHeaders(t *testing.T) {
	if _, err := ParseTrustedHeaders("X-Forwarded-Proto,X-Real-Ip"); err == nil {
		t.Error("X-Real-Ip accepted")
	}
	if h, err := ParseTrustedHeaders(""); err != nil || h != 0 {
		t.Errorf("empty list: %v %v", h, err)
	}
}

func TestForwardedProtoOverTLS(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "https://shop.example/", nil)
	r.TLS = &tls.ConnectionState{}
	r.Header.Set(HeaderForwardedProto, "http")
	setForwardedHeaders(r, noTrust)
	if got := r.Header.Get(HeaderForwardedProto); got != "https" {
		t.Errorf("X-Forwarded-Proto = %q", got)
	}
}

func TestConnectionListedHeadersRemovedButNotOurs(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "http://shop.example/", nil)
	r.RemoteAddr = "192.0.2.7:1"
	r.Header.Set("Connection", "x-secret, X-Forwarded-For,keep-alive, upgrade, x-request-id")
	r.Header.Add("Connection", "X-Other")
	r.Header.Set("X-Secret", "1")
	r.Header.Set("X-Other", "1")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set(HeaderForwardedFor, "203.0.113.9")
	r.Header.Set(HeaderRequestID, "abc")
	r.Header.Set("X-Kept", "1")
	removeConnectionListed(r.Header)
	setForwardedHeaders(r, noTrust)
	for _, gone := range []string{"X-Secret", "X-Other"} {
		if r.Header.Get(gone) != "" {
			t.Errorf("%s listed in Connection still there", gone)
		}
	}
	if r.Header.Get("X-Kept") == "" || r.Header.Get("Upgrade") == "" {
		t.Error("a header not listed (or Upgrade) was removed")
	}
	if got := r.Header.Get(HeaderForwardedFor); got != "192.0.2.7" {
		t.Errorf("X-Forwarded-For = %q, want the peer (the client's hop-by-hop list dropped, ours set)", got)
	}
	if id := r.Header.Get(HeaderRequestID); len(id) != 32 {
		t.Errorf("X-Request-Id = %q, want a fresh id", id)
	}
}

func TestRequestIDsDiffer(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newRequestID()
		if seen[id] {
			t.Fatalf("repeated id %s", id)
		}
		seen[id] = true
	}
}

func BenchmarkSetForwardedHeaders(b *testing.B) {
	r := httptest.NewRequest(http.MethodGet, "http://shop.example/", nil)
	r.RemoteAddr = "192.0.2.7:51234"
	trust := &ForwardedTrust{Proxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Headers: trustProto | trustPort}
	b.ReportAllocs()
	for b.Loop() {
		delete(r.Header, HeaderForwardedFor)
		delete(r.Header, HeaderRequestID)
		setForwardedHeaders(r, trust)
	}
}
