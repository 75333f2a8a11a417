package toxiproxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestCutBlackHoleAndRestore checks each fault against a real upstream.
func TestCutBlackHoleAndRestore(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "up") }))
	defer up.Close()
	s := ForTest(t)
	p := s.NewProxy(t, "api", up.Listener.Addr().String())
	get := func(timeout time.Duration) error {
		c := &http.Client{Timeout: timeout, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
		resp, err := c.Get("http://" + p.Listen + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(5 * time.Second); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	if err := p.Cut(); err != nil {
		t.Fatal(err)
	}
	if err := get(2 * time.Second); err == nil {
		t.Fatal("a request passed a cut proxy")
	}
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	if err := get(5 * time.Second); err != nil {
		t.Fatalf("after restore: %v", err)
	}
	if err := p.BlackHole(); err != nil {
		t.Fatal(err)
	}
	if err := get(500 * time.Millisecond); err == nil {
		t.Fatal("a request passed a black hole")
	}
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	if err := get(5 * time.Second); err != nil {
		t.Fatalf("after heal: %v", err)
	}
}
