package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func newTestServer() *server {
	return &server{id: identity{Namespace: "ns", Pod: "pod-1"}, httpPort: "3000",
		log: slog.New(slog.DiscardHandler), attempts: map[string]int{}}
}

func TestEchoFormat(t *testing.T) {
	s := newTestServer()
	req := httptest.NewRequest("GET", "http://example.com/a//b?q=1", nil)
	req.Header.Set("X-Echo-Set-Header", "X-One: 1, X-Two: 2")
	req.Header.Set("X-Test", "yes")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"path": "http://example.com/a//b?q=1", "host": "example.com", "method": "GET",
		"proto": "HTTP/1.1", "httpPort": "3000", "namespace": "ns", "pod": "pod-1", "ingress": "", "service": ""} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	if _, ok := got["tls"]; ok {
		t.Error("tls present on plain HTTP")
	}
	if h := got["headers"].(map[string]any)["X-Test"].([]any); h[0] != "yes" {
		t.Errorf("headers %v", got["headers"])
	}
	if rec.Header().Get("X-One") != "1" || rec.Header().Get("X-Two") != "2" || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("response headers %v", rec.Header())
	}
}

func TestHealthStatusRetry(t *testing.T) {
	srv := httptest.NewServer(newTestServer())
	defer srv.Close()
	get := func(path string) (int, string, error) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	if code, body, _ := get("/health"); code != 200 || body != "OK" {
		t.Errorf("/health: %d %q", code, body)
	}
	if code, _, _ := get("/status/503"); code != 503 {
		t.Errorf("/status/503: %d", code)
	}
	if code, _, _ := get("/status/abc"); code != 400 {
		t.Errorf("/status/abc: %d", code)
	}
	// Two failures (status 500 here), then the echo.
	for i := range 2 {
		if code, _, _ := get("/retry/?uuid=u1&succeedAfter=2&responseCode=500"); code != 500 {
			t.Errorf("attempt %d: %d", i, code)
		}
	}
	if code, body, _ := get("/retry/?uuid=u1&succeedAfter=2&responseCode=500"); code != 200 || !strings.Contains(body, `"pod": "pod-1"`) {
		t.Errorf("third attempt: %d %s", code, body)
	}
	// Default failure mode: the connection is reset.
	// (A fresh connection: on a reused one the client would retry.)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := c.Get(srv.URL + "/retry/?uuid=u2&succeedAfter=1"); err == nil {
		resp.Body.Close()
		t.Errorf("first attempt without responseCode answered %s", resp.Status)
	}
}

func TestRefuse(t *testing.T) {
	q := []byte{0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1, 1, 'a', 0, 0, 1, 0, 1, 0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0}
	r := refuse(q)
	if len(r) != 19 || r[0] != 0xab || r[2]&0x80 == 0 || r[2]&0x01 == 0 || r[3] != 5 || r[11] != 0 {
		t.Errorf("refuse: % x", r)
	}
	if refuse([]byte{1, 2}) != nil {
		t.Error("short query answered")
	}
}
