package tlsterm

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"

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

// A listener offers its Gateway port's certificates first, then the
// Ingress TLS hosts (port 0), then the default certificate; the proxy
// listener (port 0) the last two. Without a default certificate a name
// nothing matches is refused and counted under "proxy". Each served
// Secret's expiry is a metric.
func TestStoreIngressAndDefaultCertificates(t *testing.T) {
	mk := func(name string) (c, k []byte) { return testcerts.SelfSigned(t, name) }
	gwCert, gwKey := mk("gw.example")
	gwAnyCert, gwAnyKey := mk("gw-any.example")
	shopCert, shopKey := mk("shop.example")
	wildCert, wildKey := mk("*.wild.example")
	defCert, defKey := mk("default.invalid")
	certs := []routing.Certificate{
		{Port: 0, Hostname: "shop.example", Ingress: types.NamespacedName{Namespace: "shop", Name: "shop"},
			Secret: types.NamespacedName{Namespace: "shop", Name: "shop-tls"}, Cert: shopCert, Key: shopKey},
		{Port: 0, Hostname: "*.wild.example", Ingress: types.NamespacedName{Namespace: "shop", Name: "wild"},
			Secret: types.NamespacedName{Namespace: "shop", Name: "wild-tls"}, Cert: wildCert, Key: wildKey},
		{Port: 0, Default: true, Secret: types.NamespacedName{Namespace: "infra", Name: "default-tls"}, Cert: defCert, Key: defKey},
		{Port: 443, Hostname: "gw.example", Secret: types.NamespacedName{Namespace: "infra", Name: "gw-tls"}, Cert: gwCert, Key: gwKey},
		{Port: 8443, Secret: types.NamespacedName{Namespace: "infra", Name: "gw-any-tls"}, Cert: gwAnyCert, Key: gwAnyKey},
	}
	reg := prometheus.NewRegistry()
	s := NewStore(reg, nil)
	s.Set(certs)
	served := func(port int32, name string) string {
		t.Helper()
		c, err := s.Config(port).GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil {
			return "refused"
		}
		return c.Leaf.DNSNames[0]
	}
	for _, tc := range []struct {
		port       int32
		name, want string
	}{
		{0, "shop.example", "shop.example"},
		{0, "Shop.Example.", "shop.example"},
		{0, "a.wild.example", "*.wild.example"},
		{0, "gw.example", "default.invalid"}, // Gateway listeners are their port's only
		{0, "", "default.invalid"},
		{0, "unknown.test", "default.invalid"},
		{443, "gw.example", "gw.example"},
		{443, "shop.example", "shop.example"}, // Ingress hosts on a Gateway port too
		{443, "unknown.test", "default.invalid"},
		{8443, "shop.example", "gw-any.example"}, // a listener without hostname takes its port's every name
	} {
		if got := served(tc.port, tc.name); got != tc.want {
			t.Errorf("port %d SNI %q: %s, want %s", tc.port, tc.name, got, tc.want)
		}
	}
	// testcerts are valid for an hour from now.
	if v := testutil.ToFloat64(s.notAfter.WithLabelValues("shop/shop-tls")); v < float64(time.Now().Unix()) || v > float64(time.Now().Add(2*time.Hour).Unix()) {
		t.Errorf("expiry of shop/shop-tls %v, want within the next two hours", v)
	}
	if n := testutil.CollectAndCount(s.notAfter); n != 5 {
		t.Errorf("%d expiry series, want 5", n)
	}
	// Without the default certificate an unknown name is refused.
	s.Set(slices.DeleteFunc(slices.Clone(certs), func(c routing.Certificate) bool { return c.Default }))
	if got := served(0, "unknown.test"); got != "refused" {
		t.Errorf("unknown name without default: %s", got)
	}
	if got := served(0, "shop.example"); got != "shop.example" {
		t.Errorf("shop.example after the default went: %s", got)
	}
	if n := testutil.ToFloat64(s.misses.WithLabelValues("proxy")); n != 1 {
		t.Errorf("%v refused handshakes counted on the proxy listener, want 1", n)
	}
	if n := testutil.CollectAndCount(s.notAfter); n != 4 {
		t.Errorf("%d expiry series after the default went, want 4", n)
	}
}
