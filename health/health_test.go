package health

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestReadinessFollowsConditions(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := New(reg, map[string]string{ConditionRoutes: "no route table loaded yet"})
	h := Handler(s)

	if code, body := get(t, h, "/readyz"); code != 503 || !strings.Contains(body, "routes: no route table loaded yet") {
		t.Fatalf("before routes: %d %q", code, body)
	}
	if code, _ := get(t, h, "/healthz"); code != 200 {
		t.Fatalf("liveness must not depend on readiness, got %d", code)
	}
	if v := testutil.ToFloat64(s.readyGa); v != 0 {
		t.Fatalf("%s = %v before routes", MetricReady, v)
	}

	s.Set(ConditionRoutes, true, "")
	if code, body := get(t, h, "/readyz"); code != 200 || body != "ready\n" {
		t.Fatalf("with routes: %d %q", code, body)
	}
	if v := testutil.ToFloat64(s.readyGa); v != 1 {
		t.Fatalf("%s = %v when ready", MetricReady, v)
	}

	s.Set(ConditionDraining, false, "shutting down")
	if code, body := get(t, h, "/readyz"); code != 503 || !strings.Contains(body, "draining: shutting down") {
		t.Fatalf("draining: %d %q", code, body)
	}
	if code, _ := get(t, h, "/healthz"); code != 200 {
		t.Fatalf("liveness must stay 200 while draining, got %d", code)
	}
}

func TestOnlyGetIsServed(t *testing.T) {
	h := Handler(New(nil, nil))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/readyz", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /readyz: %d", rec.Code)
	}
}
