package main

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/bulkhead-router/bulkhead/internal/testcerts"
)

// captured is what the suite's test/http reads from an answer.
type captured struct {
	Path      string              `json:"path"`
	Host      string              `json:"host"`
	Method    string              `json:"method"`
	Proto     string              `json:"proto"`
	Headers   map[string][]string `json:"headers"`
	Namespace string              `json:"namespace"`
	Ingress   string              `json:"ingress"`
	Service   string              `json:"service"`
	Pod       string              `json:"pod"`
	TLS       *struct {
		Version    string `json:"version"`
		ServerName string `json:"serverName"`
	} `json:"tls"`
}

func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: &server{
		id:  identity{Namespace: "ns-1", Ingress: "host-rules", Service: "foo-bar-com", Pod: "echo-abc"},
		log: slog.New(slog.DiscardHandler),
	}, TLSConfig: cfg}
	if cfg != nil {
		go func() { _ = srv.ServeTLS(l, "", "") }()
	} else {
		go func() { _ = srv.Serve(l) }()
	}
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

func get(t *testing.T, c *http.Client, url, host string) (*http.Response, captured, []byte) {
	t.Helper()
	req, err := http.NewRequest("PATCH", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("X-Test", "yes")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var got captured
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("not JSON: %v: %s", err, body)
	}
	return resp, got, body
}

func TestEchoOverHTTP(t *testing.T) {
	addr := serve(t, nil)
	resp, got, body := get(t, http.DefaultClient, "http://"+addr+"/a//b?q=1", "foo.bar.com")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	if resp.Header.Get("Server") != "" {
		t.Errorf("Server header %q: the original sets none", resp.Header.Get("Server"))
	}
	want := captured{Path: "/a//b?q=1", Host: "foo.bar.com", Method: "PATCH", Proto: "HTTP/1.1",
		Namespace: "ns-1", Ingress: "host-rules", Service: "foo-bar-com", Pod: "echo-abc"}
	h := got.Headers
	if got.Path != want.Path || got.Host != want.Host || got.Method != want.Method || got.Proto != want.Proto ||
		got.Namespace != want.Namespace || got.Ingress != want.Ingress || got.Service != want.Service || got.Pod != want.Pod {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if len(h["X-Test"]) != 1 || h["X-Test"][0] != "yes" {
		t.Errorf("headers %v", h)
	}
	var raw map[string]any
	_ = json.Unmarshal(body, &raw)
	if _, ok := raw["tls"]; ok {
		t.Errorf("tls present over plain HTTP: %s", body)
	}
}

func TestHealth(t *testing.T) {
	addr := serve(t, nil)
	for _, path := range []string{"/health", "//health"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "OK" {
			t.Errorf("%s: %d %q", path, resp.StatusCode, b)
		}
	}
}

func TestEchoOverHTTPS(t *testing.T) {
	certPEM, keyPEM := testcerts.SelfSigned(t, "foo.bar.com")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := tlsConfig(certFile, keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: "foo.bar.com", InsecureSkipVerify: true}}}
	_, got, body := get(t, c, "https://"+addr+"/x", "foo.bar.com")
	if got.TLS == nil || got.TLS.ServerName != "foo.bar.com" || got.TLS.Version == "" {
		t.Errorf("tls: %s", body)
	}
	if _, err := tlsConfig(certFile, keyFile, certFile+".missing"); err == nil {
		t.Error("a missing client CA file was accepted")
	}
}
