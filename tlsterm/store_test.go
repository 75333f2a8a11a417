package tlsterm

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bulkhead-router/bulkhead/internal/testcerts"
	"github.com/bulkhead-router/bulkhead/routing"
)

// handshake connects to addr with SNI name and returns the leaf's first
// DNS name, or the error.
func handshake(t *testing.T, addr, name string, roots *x509.CertPool) (string, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	// Which certificate was served is the question, not whether it verifies.
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots, InsecureSkipVerify: true})
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].DNSNames[0], nil
}

// The store picks by port and server name, follows Set without a restart,
// and refuses a handshake nothing matches.
func TestStorePicksByPortAndServerName(t *testing.T) {
	exactCert, exactKey := testcerts.SelfSigned(t, "shop.example")
	wildCert, wildKey := testcerts.SelfSigned(t, "*.example")
	anyCert, anyKey := testcerts.SelfSigned(t, "default.invalid")
	otherCert, otherKey := testcerts.SelfSigned(t, "other.example")
	roots := x509.NewCertPool()
	for _, c := range [][]byte{exactCert, wildCert, anyCert, otherCert} {
		roots.AppendCertsFromPEM(c)
	}
	reg := prometheus.NewRegistry()
	s := NewStore(reg, nil)
	certs := []routing.Certificate{
		{Port: 443, Hostname: "shop.example", Cert: exactCert, Key: exactKey},
		{Port: 443, Hostname: "*.example", Cert: wildCert, Key: wildKey},
		{Port: 443, Cert: anyCert, Key: anyKey},
		{Port: 8443, Hostname: "other.example", Cert: otherCert, Key: otherKey},
	}
	s.Set(certs)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(raw, s.Config(443), time.Second, nil)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	for name, want := range map[string]string{
		"shop.example": "shop.example", "SHOP.example.": "shop.example", "api.example": "*.example",
		"deep.api.example": "*.example", "": "default.invalid", "elsewhere.test": "default.invalid",
	} {
		got, err := handshake(t, l.Addr().String(), name, roots)
		if err != nil || got != want {
			t.Errorf("SNI %q: %q, %v; want %q", name, got, err, want)
		}
	}
	// Port 8443's certificate is not served on 443.
	if got, err := handshake(t, l.Addr().String(), "other.example", roots); err == nil && got == "other.example" {
		t.Error("another port's certificate served")
	}
	// A new table without the hostname-less listener: names nothing
	// matches are refused, counted.
	s.Set(certs[:2])
	if _, err := handshake(t, l.Addr().String(), "elsewhere.test", roots); err == nil {
		t.Error("handshake without a matching certificate succeeded")
	}
	if n := testutil.ToFloat64(s.misses.WithLabelValues("443")); n != 1 {
		t.Errorf("%v handshakes counted without certificate, want 1", n)
	}
	if n := testutil.ToFloat64(s.count); n != 2 {
		t.Errorf("%v certificates, want 2", n)
	}
}

// A key pair that does not parse is left out; the others are served.
func TestStoreSkipsBrokenKeyPair(t *testing.T) {
	goodCert, goodKey := testcerts.SelfSigned(t, "good.example")
	_, otherKey := testcerts.SelfSigned(t, "bad.example")
	s := NewStore(nil, nil)
	s.Set([]routing.Certificate{
		{Port: 443, Hostname: "bad.example", Cert: goodCert, Key: otherKey},
		{Port: 443, Hostname: "good.example", Cert: goodCert, Key: goodKey},
	})
	cfg := s.Config(443)
	if _, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "bad.example"}); err == nil {
		t.Error("a mismatched key pair was served")
	}
	if c, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "good.example"}); err != nil || c == nil {
		t.Errorf("good.example: %v", err)
	}
}
