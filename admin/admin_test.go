package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zalando/skipper/eskip"
	"k8s.io/apimachinery/pkg/types"

	"github.com/bulkhead-router/bulkhead/dataclient"
	"github.com/bulkhead-router/bulkhead/routing"
)

type fakeSource struct {
	held      bool
	confirmed bool
}

func (f *fakeSource) Status() dataclient.Status {
	st := dataclient.Status{Table: dataclient.TableStatus{Loaded: true, Source: dataclient.SourceSnapshot, Routes: 1}}
	if f.held {
		st.Hold = &dataclient.HoldStatus{Ingresses: 3}
	}
	return st
}

func (f *fakeSource) ConfirmHold() bool {
	f.confirmed = f.held
	return f.held
}

func handler(t *testing.T, src *fakeSource, loaded bool) http.Handler {
	t.Helper()
	table := routing.Table{
		Routes: []*routing.Route{{
			Eskip:   &eskip.Route{Id: "r1", Path: "/com/shop", BackendType: eskip.ShuntBackend, Shunt: true},
			Ingress: types.NamespacedName{Namespace: "shop", Name: "web"}, Host: "shop.com", Path: "/", PathType: "Prefix",
			Service: "web", Port: "80",
		}, {
			Eskip: &eskip.Route{Id: "gw1", Path: "/com/shop", BackendType: eskip.ShuntBackend, Shunt: true},
			Gateway: &routing.GatewayOrigin{HTTPRoute: types.NamespacedName{Namespace: "shop", Name: "canary"}, Rule: 1, RuleName: "beta", Match: 0,
				Gateway: types.NamespacedName{Namespace: "infra", Name: "edge"}, Listener: "http", Port: 80, BackendRef: 1},
			Host: "shop.com", Path: "/beta", PathType: "PathPrefix", Service: "web-v2", Port: "8080",
			Backend: routing.BackendKey{Namespace: "shop", Service: "web-v2", Port: 8080},
		}},
		Problems: []routing.Problem{{Kind: "HTTPRoute", Namespace: "shop", Name: "canary", Reason: "UnsupportedValue", Message: "rule 1: filter CORS is not supported"},
			{Kind: "Ingress", Namespace: "shop", Name: "bad", Reason: routing.ServiceNotFound, Message: "service shop/x not found"}},
	}
	return Handler(Options{
		Gatherer: prometheus.NewRegistry(),
		Table:    func() (routing.Table, bool) { return table, loaded },
		Source:   src,
	})
}

func do(h http.Handler, method, path, accept string) (int, string) {
	req := httptest.NewRequest(method, path, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestRoutesAreTraceableToTheirIngress(t *testing.T) {
	h := handler(t, &fakeSource{}, true)
	code, text := do(h, http.MethodGet, "/routes", "")
	if code != 200 || !strings.Contains(text, "// ingress shop/web: host shop.com path / (Prefix) -> service web port 80") || !strings.Contains(text, "r1:") {
		t.Fatalf("/routes text: %d\n%s", code, text)
	}
	if !strings.Contains(text, "// httproute shop/canary rule 1 (beta) match 0, gateway infra/edge listener http port 80: host shop.com path /beta (PathPrefix) -> backendRef 1 service web-v2 port 8080") {
		t.Fatalf("/routes text does not name the HTTPRoute and rule:\n%s", text)
	}
	code, body := do(h, http.MethodGet, "/routes", "application/json")
	var views []map[string]any
	if err := json.Unmarshal([]byte(body), &views); code != 200 || err != nil || len(views) != 2 || views[0]["id"] != "r1" || views[0]["host"] != "shop.com" ||
		views[1]["gateway"].(map[string]any)["httpRoute"].(map[string]any)["Name"] != "canary" {
		t.Fatalf("/routes JSON: %d %v\n%s", code, err, body)
	}
}

func TestProblemsListed(t *testing.T) {
	h := handler(t, &fakeSource{}, true)
	if code, text := do(h, http.MethodGet, "/problems", ""); code != 200 || !strings.Contains(text, "Ingress shop/bad: ServiceNotFound") || !strings.Contains(text, "HTTPRoute shop/canary: UnsupportedValue") {
		t.Fatalf("/problems: %d %s", code, text)
	}
}

func TestNoTableYetIs503(t *testing.T) {
	h := handler(t, &fakeSource{}, false)
	if code, _ := do(h, http.MethodGet, "/routes", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("/routes without a table: %d", code)
	}
}

func TestStatusAndGuardConfirm(t *testing.T) {
	src := &fakeSource{}
	h := handler(t, src, true)
	if code, body := do(h, http.MethodGet, "/status", ""); code != 200 || !strings.Contains(body, `"source": "snapshot"`) {
		t.Fatalf("/status: %d %s", code, body)
	}
	if code, _ := do(h, http.MethodPost, "/guard/confirm", ""); code != http.StatusConflict {
		t.Fatalf("confirm with nothing held: %d", code)
	}
	if code, _ := do(h, http.MethodGet, "/guard/confirm", ""); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /guard/confirm must not confirm: %d", code)
	}
	src.held = true
	if code, _ := do(h, http.MethodPost, "/guard/confirm", ""); code != 200 || !src.confirmed {
		t.Fatalf("confirm with a hold: %d confirmed=%v", code, src.confirmed)
	}
}

func TestEndpointsView(t *testing.T) {
	h := Handler(Options{Gatherer: prometheus.NewRegistry(), Endpoints: func() []Backend {
		return []Backend{
			{Name: "shop/web:80", Endpoints: []Endpoint{{Address: "10.0.0.1:8080", Ready: true, Serving: true, Breaker: "open", Failures: 5, Requests: 5, ConsecutiveFailures: 5, InFlight: 2}}},
			{Name: "shop/empty:80"},
		}
	}})
	code, text := do(h, http.MethodGet, "/endpoints", "")
	if code != 200 || !strings.Contains(text, "shop/web:80\n  10.0.0.1:8080") || !strings.Contains(text, "breaker=open") ||
		!strings.Contains(text, "in-flight=2") || !strings.Contains(text, "shop/empty:80\n  (no usable endpoints") {
		t.Fatalf("/endpoints text: %d\n%s", code, text)
	}
	code, body := do(h, http.MethodGet, "/endpoints", "application/json")
	var backends []Backend
	if err := json.Unmarshal([]byte(body), &backends); code != 200 || err != nil || len(backends) != 2 || backends[0].Endpoints[0].Breaker != "open" {
		t.Fatalf("/endpoints JSON: %d %v\n%s", code, err, body)
	}
}
