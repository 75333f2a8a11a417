package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/bulkhead-router/bulkhead/admin"
	"github.com/bulkhead-router/bulkhead/dataclient"
	"github.com/bulkhead-router/bulkhead/health"
	"github.com/bulkhead-router/bulkhead/internal/freeport"
)

// serveOn runs srv on a loopback port for the test and returns its base URL.
func serveOn(t *testing.T, srv *http.Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return "http://" + l.Addr().String()
}

func call(t *testing.T, method, url, authorization string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

type holdSource struct{ confirmed bool }

func (*holdSource) Status() (s dataclient.Status) { return s }
func (h *holdSource) ConfirmHold() bool           { h.confirmed = true; return true }

// TestMetricsListenerServesOnlyMetrics: the listener on the pod network
// (what Prometheus scrapes) is wired to the read-only handler, with bounded
// header and idle times, and the admin listener to the full one.
func TestMetricsListenerServesOnlyMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(buildInfo())
	src := &holdSource{}
	metrics := metricsServer(reg, nil)
	adminSrv := adminServer(admin.Options{Gatherer: reg, Source: src}, nil)
	for name, s := range map[string]*http.Server{"metrics": metrics, "admin": adminSrv} {
		if s.ReadHeaderTimeout <= 0 || s.IdleTimeout <= 0 || s.MaxHeaderBytes <= 0 {
			t.Errorf("%s listener: ReadHeaderTimeout %s, IdleTimeout %s, MaxHeaderBytes %d: want all bounded",
				name, s.ReadHeaderTimeout, s.IdleTimeout, s.MaxHeaderBytes)
		}
	}
	if metrics.WriteTimeout <= 0 {
		t.Error("metrics listener without a write timeout")
	}

	m := serveOn(t, metrics)
	if code, body := call(t, http.MethodGet, m+"/metrics", ""); code != 200 || !strings.Contains(body, "bulkhead_build_info") {
		t.Fatalf("GET /metrics on the metrics listener: %d\n%.300s", code, body)
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/status", "/routes", "/guard/confirm"} {
		if code, _ := call(t, http.MethodGet, m+path, ""); code != http.StatusNotFound {
			t.Errorf("GET %s on the metrics listener: %d, want 404", path, code)
		}
	}
	if code, _ := call(t, http.MethodPost, m+"/guard/confirm", ""); code != http.StatusNotFound || src.confirmed {
		t.Errorf("POST /guard/confirm on the metrics listener: %d, confirmed %v", code, src.confirmed)
	}

	a := serveOn(t, adminSrv)
	if code, _ := call(t, http.MethodGet, a+"/debug/pprof/cmdline", ""); code != 200 {
		t.Errorf("the profiler on the admin listener: %d", code)
	}
	if code, _ := call(t, http.MethodPost, a+"/guard/confirm", ""); code != 200 || !src.confirmed {
		t.Errorf("POST /guard/confirm on the admin listener: %d, confirmed %v", code, src.confirmed)
	}
}

// TestServeKeepsAdminPrivate runs the router's own wiring (serve) with an
// admin listener off loopback and its token, beside the metrics listener:
// the token guards everything on the admin listener, and the metrics
// listener has nothing but /metrics. The API server refuses connections;
// the listeners do not depend on it.
func TestServeKeepsAdminPrivate(t *testing.T) {
	dir := t.TempDir()
	const token = "0123456789abcdef0123456789abcdef"
	kubeconfig, tokenFile := filepath.Join(dir, "kubeconfig"), filepath.Join(dir, "token")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ports, err := freeport.Get(4)
	if err != nil {
		t.Fatal(err)
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	// 0.0.0.0 is not loopback: the token is required (and checked here over
	// loopback, the same listener).
	adminAddr := "0.0.0.0:" + strconv.Itoa(ports[2])
	cfg, err := parseConfig([]string{"-kubeconfig", kubeconfig, "-state-dir", filepath.Join(dir, "state"),
		"-address", addr(0), "-health-address", addr(1), "-admin-address", adminAddr, "-metrics-address", addr(3),
		"-admin-token-file", tokenFile, "-watch-node=false", "-drain-delay=0s", "-log-level=error"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	stop, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(stop, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	adminURL, metricsURL := "http://"+addr(2), "http://"+addr(3)
	// The listeners are bound before serve returns to its caller's select;
	// wait for the metrics listener to answer.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(metricsURL + "/metrics")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics listener not up: %v", err)
		}
		select {
		case err := <-served:
			t.Fatalf("serve returned early: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if code, body := call(t, http.MethodGet, metricsURL+"/metrics", ""); code != 200 || !strings.Contains(body, "bulkhead_ready") {
		t.Fatalf("GET /metrics on the metrics listener: %d\n%.300s", code, body)
	}
	for _, path := range []string{"/debug/pprof/", "/status", "/routes", "/problems", "/endpoints"} {
		if code, _ := call(t, http.MethodGet, metricsURL+path, ""); code != http.StatusNotFound {
			t.Errorf("GET %s on the metrics listener: %d, want 404", path, code)
		}
	}
	if code, _ := call(t, http.MethodPost, metricsURL+"/guard/confirm", ""); code != http.StatusNotFound {
		t.Errorf("POST /guard/confirm on the metrics listener: %d, want 404", code)
	}
	for _, path := range []string{"/metrics", "/status", "/debug/pprof/cmdline"} {
		if code, _ := call(t, http.MethodGet, adminURL+path, ""); code != http.StatusUnauthorized {
			t.Errorf("GET %s on the admin listener without the token: %d, want 401", path, code)
		}
		if code, _ := call(t, http.MethodGet, adminURL+path, "Bearer "+token); code != http.StatusOK {
			t.Errorf("GET %s on the admin listener with the token: %d, want 200", path, code)
		}
	}
	if code, _ := call(t, http.MethodPost, adminURL+"/guard/confirm", ""); code != http.StatusUnauthorized {
		t.Errorf("POST /guard/confirm without the token: %d, want 401", code)
	}
}

// The health listener answers what each ALB target group protocol version
// checks with: HTTP/1.1 and h2c GETs of /readyz (HTTP1, HTTP2) and gRPC
// calls (GRPC), from a real gRPC client, all following readiness.
func TestHealthServerForEveryTargetGroupVersion(t *testing.T) {
	ready := health.New(nil, map[string]string{health.ConditionRoutes: "no route table loaded yet"})
	base := serveOn(t, healthServer(ready, time.Minute, nil))
	var h1p, h2p http.Protocols
	h1p.SetHTTP1(true)
	h2p.SetUnencryptedHTTP2(true)
	clients := map[string]*http.Client{
		"HTTP/1.1": {Timeout: 5 * time.Second, Transport: &http.Transport{Protocols: &h1p}},
		"HTTP/2.0": {Timeout: 5 * time.Second, Transport: &http.Transport{Protocols: &h2p}},
	}
	conn, err := grpc.NewClient(strings.TrimPrefix(base, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	check := func(wantReady bool) {
		t.Helper()
		want := http.StatusServiceUnavailable
		if wantReady {
			want = http.StatusOK
		}
		for name, c := range clients {
			resp, err := c.Get(base + "/readyz")
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			resp.Body.Close()
			if resp.StatusCode != want || resp.Proto != name {
				t.Errorf("GET /readyz over %s: %d over %s, want %d", name, resp.StatusCode, resp.Proto, want)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		switch {
		case wantReady && (err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING):
			t.Errorf("grpc.health.v1.Health/Check when ready: %v, %v; want SERVING", res, err)
		case !wantReady && status.Code(err) != codes.Unavailable:
			t.Errorf("grpc.health.v1.Health/Check when not ready: %v, %v; want UNAVAILABLE", res, err)
		}
		// The ALB's default check: /AWS.ALB/healthcheck, healthy on 12.
		err = conn.Invoke(ctx, "/AWS.ALB/healthcheck", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
		if wantCode := map[bool]codes.Code{true: codes.Unimplemented, false: codes.Unavailable}[wantReady]; status.Code(err) != wantCode {
			t.Errorf("/AWS.ALB/healthcheck (ready %v): %v, want %s", wantReady, err, wantCode)
		}
	}
	check(false)
	ready.Set(health.ConditionRoutes, true, "")
	check(true)
	ready.Set(health.ConditionDraining, false, "shutting down")
	check(false)
}
