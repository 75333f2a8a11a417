package tlsterm

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bulkhead-router/bulkhead/internal/testcerts"
)

// One socket answers HTTP and HTTPS, tells the handler which it was, and a
// client that never sends a byte is closed without holding others back.
func TestListenerServesPlainAndTLSOnOneSocket(t *testing.T) {
	certPEM, keyPEM := testcerts.SelfSigned(t, "shop.example")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c"}, []string{"protocol"})
	l := NewListener(raw, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, 200*time.Millisecond, conns)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls=%v", r.TLS != nil)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	// A silent client first: it must not block the others.
	silent, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	get := func(scheme string) string {
		t.Helper()
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "shop.example"}}}
		resp, err := c.Get(scheme + "://" + l.Addr().String() + "/")
		if err != nil {
			t.Fatalf("%s: %v", scheme, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	if got := get("http"); got != "tls=false" {
		t.Errorf("http: %q", got)
	}
	if got := get("https"); got != "tls=true" {
		t.Errorf("https: %q", got)
	}
	// The silent connection is closed after the first-byte timeout.
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("silent connection: read %v, want EOF (closed by the listener)", err)
	}
	if h, s, silentN := testutil.ToFloat64(conns.WithLabelValues("http")), testutil.ToFloat64(conns.WithLabelValues("tls")),
		testutil.ToFloat64(conns.WithLabelValues("silent")); h < 1 || s < 1 || silentN != 1 {
		t.Errorf("connections counted http=%v tls=%v silent=%v", h, s, silentN)
	}
}

// Close ends Accept at once, with net.ErrClosed as net/http expects.
func TestListenerClose(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(raw, &tls.Config{}, time.Second, nil)
	done := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	l.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Accept after Close returned a connection")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}
