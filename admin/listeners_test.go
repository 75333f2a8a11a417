package admin

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-router/bulkhead/routing"
)

func registryWith(t *testing.T, name string) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "test"})
	g.Set(1)
	reg.MustRegister(g)
	return reg
}

// TestMetricsListenerIsReadOnly: what Prometheus scrapes on the pod network
// serves the metrics and nothing that changes state or shows more.
func TestMetricsListenerIsReadOnly(t *testing.T) {
	h := MetricsHandler(registryWith(t, "bulkhead_test_gauge"))
	if code, body := do(h, http.MethodGet, "/metrics", ""); code != 200 || !strings.Contains(body, "bulkhead_test_gauge 1") {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	for _, req := range []struct{ method, path string }{
		{http.MethodPost, "/guard/confirm"}, {http.MethodGet, "/guard/confirm"},
		{http.MethodGet, "/debug/pprof/"}, {http.MethodGet, "/debug/pprof/profile"}, {http.MethodGet, "/debug/pprof/cmdline"},
		{http.MethodGet, "/debug/pprof/heap"}, {http.MethodGet, "/debug/pprof/trace"},
		{http.MethodGet, "/routes"}, {http.MethodGet, "/problems"}, {http.MethodGet, "/endpoints"}, {http.MethodGet, "/status"},
		{http.MethodGet, "/"}, {http.MethodPost, "/metrics"}, {http.MethodDelete, "/metrics"},
	} {
		if code, body := do(h, req.method, req.path, ""); code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
			t.Errorf("%s %s on the metrics listener: %d, want 404 or 405\n%s", req.method, req.path, code, body)
		}
	}
}

func withToken(h http.Handler, method, path, authorization string) (int, http.Header) {
	req, _ := http.NewRequest(method, path, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Header()
}

// TestTokenGuardsEveryAdminPath: with a token, nothing on the admin
// listener answers without it, least of all the deletion guard's confirm.
func TestTokenGuardsEveryAdminPath(t *testing.T) {
	const token = "0123456789abcdef0123456789abcdef"
	src := &fakeSource{held: true}
	h := Handler(Options{Gatherer: registryWith(t, "bulkhead_test_gauge"), Source: src, Token: []byte(token),
		Table: func() (routing.Table, bool) { return routing.Table{}, true }})
	paths := []struct {
		method, path string
		ok           int
	}{
		{http.MethodGet, "/metrics", 200}, {http.MethodGet, "/routes", 200}, {http.MethodGet, "/problems", 200},
		{http.MethodGet, "/status", 200}, {http.MethodGet, "/debug/pprof/", 200}, {http.MethodGet, "/debug/pprof/cmdline", 200},
		{http.MethodGet, "/", 200}, {http.MethodGet, "/no-such-path", 404},
		{http.MethodPost, "/guard/confirm", 200},
	}
	for _, p := range paths {
		for _, auth := range []string{
			"", "Bearer", "Bearer ", "Bearer wrong", "Bearer " + token[:len(token)-1], "Bearer " + token + "x",
			"Basic " + token, "Bearer  " + token, token,
		} {
			code, header := withToken(h, p.method, p.path, auth)
			if code != http.StatusUnauthorized || !strings.HasPrefix(header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s with Authorization %q: %d, want 401 with a Bearer challenge", p.method, p.path, auth, code)
			}
		}
		if src.confirmed {
			t.Fatal("the held update was confirmed without the token")
		}
		for _, auth := range []string{"Bearer " + token, "bearer " + token} {
			if code, _ := withToken(h, p.method, p.path, auth); code != p.ok {
				t.Errorf("%s %s with the token (%q): %d, want %d", p.method, p.path, auth[:6], code, p.ok)
			}
		}
	}
	if !src.confirmed {
		t.Error("POST /guard/confirm with the token did not confirm the hold")
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	token, err := LoadToken(write("ok", "0123456789abcdef0123\n"))
	if err != nil || string(token) != "0123456789abcdef0123" {
		t.Fatalf("LoadToken = %q, %v; want the file's line without its newline", token, err)
	}
	for name, content := range map[string]string{
		"empty":  "",
		"blank":  " \n\n",
		"short":  "0123456789abcde\n", // 15
		"spaced": "0123456789 abcdef0123",
		"lines":  "0123456789abcdef\n0123456789abcdef\n",
	} {
		if token, err := LoadToken(write(name, content)); err == nil {
			t.Errorf("%s token file %q accepted as %q", name, content, token)
		}
	}
	if _, err := LoadToken(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing token file was accepted")
	}
}
