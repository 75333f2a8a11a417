package tlsterm

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bulkhead-router/bulkhead/internal/testcerts"
)

// One socket answers HTTP/1.1 and HTTP/2, plain and over TLS (ALPN), tells
// the handler which it was, counts each, and a client that never sends a
// byte is closed without holding others back.
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
	l := NewListener(raw, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}},
		200*time.Millisecond, conns)
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s tls=%v body=%d", r.Proto, r.TLS != nil, n)
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
	client := func(p func(*http.Protocols)) *http.Client {
		var ps http.Protocols
		p(&ps)
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Protocols: &ps,
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "shop.example"}}}
	}
	do := func(c *http.Client, method, url string) string {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader("abc"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	plain, secure := "http://"+l.Addr().String()+"/", "https://"+l.Addr().String()+"/"
	h1 := client(func(p *http.Protocols) { p.SetHTTP1(true) })
	h2c := client(func(p *http.Protocols) { p.SetUnencryptedHTTP2(true) })
	h2 := client(func(p *http.Protocols) { p.SetHTTP2(true) })
	for _, tc := range []struct {
		c      *http.Client
		method string
		url    string
		want   string
	}{
		{h1, http.MethodGet, plain, "HTTP/1.1 tls=false body=3"},
		// Requests starting with P, as the preface does.
		{h1, http.MethodPost, plain, "HTTP/1.1 tls=false body=3"},
		{h1, http.MethodPut, plain, "HTTP/1.1 tls=false body=3"},
		{h1, http.MethodPatch, plain, "HTTP/1.1 tls=false body=3"},
		{h2c, http.MethodPost, plain, "HTTP/2.0 tls=false body=3"},
		{h1, http.MethodGet, secure, "HTTP/1.1 tls=true body=3"},
		{h2, http.MethodPost, secure, "HTTP/2.0 tls=true body=3"},
	} {
		if got := do(tc.c, tc.method, tc.url); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.method, tc.url, got, tc.want)
		}
	}
	// The silent connection is closed after the first-byte timeout.
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("silent connection: read %v, want EOF (closed by the listener)", err)
	}
	for protocol, want := range map[string]float64{ProtocolHTTP: 1, ProtocolH2C: 1, ProtocolHTTPS: 1, ProtocolH2: 1, ProtocolSilent: 1} {
		if got := testutil.ToFloat64(conns.WithLabelValues(protocol)); got != want {
			t.Errorf("%s connections counted %v, want %v", protocol, got, want)
		}
	}
}

// A client that sends a prefix of the HTTP/2 preface and stops is closed
// after the first-byte timeout, as a silent one is, and counted as
// HTTP/1 (net/http then refuses it).
func TestListenerPartialPreface(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c"}, []string{"protocol"})
	l := NewListener(raw, &tls.Config{}, 200*time.Millisecond, conns)
	srv := &http.Server{ReadHeaderTimeout: 200 * time.Millisecond, Handler: http.NotFoundHandler()}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "PRI * HTTP/2")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("read %v, want the connection closed", err)
	}
	if got := testutil.ToFloat64(conns.WithLabelValues(ProtocolHTTP)); got != 1 {
		t.Errorf("counted %v as http, want 1", got)
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
