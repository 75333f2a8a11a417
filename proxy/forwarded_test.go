package proxy

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestForwardedHeadersSetOnDirectRequest(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "http://shop.example/cart", nil)
	r.RemoteAddr = "192.0.2.7:51234"
	setForwardedHeaders(r)
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

func TestForwardedHeadersBehindALB(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "http://shop.example/", nil)
	r.RemoteAddr = "10.0.3.4:443"
	r.Header.Set(HeaderForwardedFor, "203.0.113.9")
	r.Header.Add(HeaderForwardedFor, "198.51.100.2")
	r.Header.Set(HeaderForwardedProto, "https")
	r.Header.Set(HeaderForwardedHost, "public.example")
	r.Header.Set(HeaderRequestID, "abc")
	setForwardedHeaders(r)
	if got := r.Header.Values(HeaderForwardedFor); len(got) != 1 || got[0] != "203.0.113.9, 198.51.100.2, 10.0.3.4" {
		t.Errorf("X-Forwarded-For = %q, want the prior list with this hop appended", got)
	}
	if got := r.Header.Get(HeaderForwardedProto); got != "https" {
		t.Errorf("X-Forwarded-Proto = %q, want the ALB's https kept", got)
	}
	if got := r.Header.Get(HeaderForwardedHost); got != "public.example" {
		t.Errorf("X-Forwarded-Host = %q", got)
	}
	if got := r.Header.Get(HeaderRequestID); got != "abc" {
		t.Errorf("X-Request-Id = %q, want the incoming id kept", got)
	}
}

func TestForwardedProtoOverTLS(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "https://shop.example/", nil)
	r.TLS = &tls.ConnectionState{}
	setForwardedHeaders(r)
	if got := r.Header.Get(HeaderForwardedProto); got != "https" {
		t.Errorf("X-Forwarded-Proto = %q", got)
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
	b.ReportAllocs()
	for b.Loop() {
		delete(r.Header, HeaderForwardedFor)
		delete(r.Header, HeaderRequestID)
		setForwardedHeaders(r)
	}
}
