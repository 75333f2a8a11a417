package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/bulkhead-router/bulkhead/internal/grpcload"
	"github.com/bulkhead-router/bulkhead/internal/testcerts"
)

// startPod serves the pod on loopback listeners and returns the gRPC and
// control addresses and the context cancelling it (a SIGTERM).
func startPod(t *testing.T, delay time.Duration) (grpcAddr, controlURL string, term context.CancelFunc, exit func() int) {
	t.Helper()
	h2c, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	control, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var code int
	cfg := config{pod: "pod-a", shutdownDelay: delay, shutdownTimeout: 5 * time.Second}
	go func() {
		code = serve(ctx, listeners{h2c: h2c, control: control}, cfg, slog.New(slog.DiscardHandler))
		close(done)
	}()
	exit = func() int { <-done; return code }
	t.Cleanup(func() {
		cancel()
		exit()
	})
	return h2c.Addr().String(), "http://" + control.Addr().String(), cancel, exit
}

func TestCalls(t *testing.T) {
	addr, controlURL, _, _ := startPod(t, 0)
	conn, err := grpcload.Dial(addr, "echo.example", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	r, err := grpcload.Unary(ctx, conn, &testpb.SimpleRequest{ResponseSize: 10}, grpcload.TrailerKey, "t-1")
	if err != nil || r.Pod != "pod-a" || r.Trailer.Get(grpcload.TrailerKey)[0] != "t-1" || r.Trailer.Get(grpcload.CountKey)[0] != "1" {
		t.Fatalf("unary: %v, %+v", err, r)
	}
	r, err = grpcload.Stream(ctx, conn, 5, 10, time.Millisecond, nil, grpcload.TrailerKey, "t-2")
	if err != nil || r.Messages != 5 || r.Pod != "pod-a" || r.Trailer.Get(grpcload.CountKey)[0] != "5" || r.Trailer.Get(grpcload.TrailerKey)[0] != "t-2" {
		t.Fatalf("stream: %v, %+v", err, r)
	}
	_, err = grpcload.Unary(ctx, conn, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "asked"}})
	if s := status.Convert(err); s.Code() != codes.NotFound || s.Message() != "asked" {
		t.Fatalf("echoed status: %v", err)
	}

	post(t, controlURL+"/mode?value=unavailable", http.StatusOK)
	if _, err := grpcload.Unary(ctx, conn, &testpb.SimpleRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("mode unavailable: %v", err)
	}
	if _, err := grpcload.Stream(ctx, conn, 1, 1, 0, nil); status.Code(err) != codes.Unavailable {
		t.Fatalf("mode unavailable, stream: %v", err)
	}
	hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health in mode unavailable: %v %v", hc, err)
	}
	get(t, controlURL+"/ready", http.StatusOK)
	post(t, controlURL+"/mode?value=notserving", http.StatusOK)
	get(t, controlURL+"/ready", http.StatusServiceUnavailable)
	if hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || hc.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health in mode notserving: %v %v", hc, err)
	}
	post(t, controlURL+"/mode?value=bogus", http.StatusBadRequest)
	post(t, controlURL+"/mode?value=ok", http.StatusOK)
	if _, err := grpcload.Unary(ctx, conn, &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	if body := get(t, controlURL+"/stats", http.StatusOK); !strings.Contains(body, `"calls":6`) {
		t.Errorf("stats: %s", body)
	}
}

// TestGracefulStop: on SIGTERM a stream in flight finishes (GracefulStop),
// health turns NOT_SERVING during the delay, and the exit code is 0.
func TestGracefulStop(t *testing.T) {
	addr, controlURL, term, exit := startPod(t, 300*time.Millisecond)
	get(t, controlURL+"/ready", http.StatusOK)
	conn, err := grpcload.Dial(addr, "echo.example", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first := make(chan struct{})
	type result struct {
		r   grpcload.Reply
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := grpcload.Stream(ctx, conn, 20, 10, 50*time.Millisecond, func(i int, _ metadata.MD) {
			if i == 1 {
				close(first)
			}
		})
		done <- result{r, err}
	}()
	<-first
	term()
	// During the shutdown delay the pod still serves but says NOT_SERVING.
	awaitStatus(t, controlURL+"/ready", http.StatusServiceUnavailable)
	res := <-done
	if res.err != nil || res.r.Messages != 20 {
		t.Fatalf("stream across SIGTERM: %v, %d messages", res.err, res.r.Messages)
	}
	if code := exit(); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

func post(t *testing.T, url string, want int) string { return do(t, http.MethodPost, url, want) }
func get(t *testing.T, url string, want int) string  { return do(t, http.MethodGet, url, want) }

func do(t *testing.T, method, url string, want int) string {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, url, resp.StatusCode, body, want)
	}
	return string(body)
}

func awaitStatus(t *testing.T, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not %d after 5s (%v)", url, want, err)
		}
		time.Sleep(10 * time.Millisecond) // polling another goroutine's server: no event to wait on
	}
}

// TestTLSListener: with -tls-listen the same services answer over TLS
// (ALPN h2) with the configured key pair, beside h2c.
func TestTLSListener(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := testcerts.SelfSigned(t, "echo.grpc.svc")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseFlags([]string{"-listen", "127.0.0.1:0", "-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile, "-pod", "pod-tls"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := openListeners(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tlsAddr := ls.tls.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	exit := make(chan int, 1)
	go func() { exit <- serve(ctx, ls, cfg, slog.New(slog.DiscardHandler)) }()
	defer func() {
		cancel()
		<-exit
	}()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	conn, err := grpcload.Dial(tlsAddr, "echo.grpc.svc", &tls.Config{ServerName: "echo.grpc.svc", RootCAs: roots, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The listeners are open before serve runs: the first call connects.
	callCtx, callCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer callCancel()
	r, err := grpcload.Unary(callCtx, conn, &testpb.SimpleRequest{})
	if err != nil || r.Pod != "pod-tls" {
		t.Fatalf("unary over TLS: %v from %q", err, r.Pod)
	}
}
