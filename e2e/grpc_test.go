package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bulkhead-router/bulkhead/internal/grpcload"
	"github.com/bulkhead-router/bulkhead/internal/testcerts"
	"github.com/bulkhead-router/bulkhead/internal/workloads"
)

// grpcEnv is a workload cluster with a gRPC Deployment behind an Ingress
// served over h2c and, for its host, TLS from a Secret.
type grpcEnv struct {
	*workloadEnv
	namespace, name, host string
	h2c, tls              *grpc.ClientConn
}

// podsTLSHost is the host of TestGRPCCalls' second Ingress, to the
// Service port whose appProtocol says https: TLS toward the pods.
const podsTLSHost = "echo-pods-tls.example"

func newGRPCEnv(t *testing.T, replicas int32, annotations map[string]string, podsTLS bool) *grpcEnv {
	t.Helper()
	g := &grpcEnv{namespace: "grpc", name: "echo", host: "echo.example"}
	// A 1 s preStop sleep; TestGRPCFaults patches it away for its last
	// rolling update.
	app := workloads.GRPCApp{Namespace: g.namespace, Name: g.name, Replicas: replicas, PreStopSleep: time.Second}
	var routerArgs []string
	var podCert, podKey []byte
	if podsTLS {
		// The pods' certificate names the Service as the router checks it
		// (<service>.<namespace>.svc); the router trusts it as its CA.
		podCert, podKey = testcerts.SelfSigned(t, g.name+"."+g.namespace+".svc")
		ca := filepath.Join(t.TempDir(), "pods-ca.pem")
		if err := os.WriteFile(ca, podCert, 0o600); err != nil {
			t.Fatal(err)
		}
		routerArgs = []string{"-backend-tls-ca-file", ca}
		app.TLSSecret = "echo-pod-tls"
	}
	w := newWorkloadEnv(t, routerArgs...)
	g.workloadEnv = w
	ensureNamespace(t, w.client, g.namespace)
	if podsTLS {
		podSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: g.namespace, Name: app.TLSSecret}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: podCert, corev1.TLSPrivateKeyKey: podKey}}
		if _, err := w.client.CoreV1().Secrets(g.namespace).Create(w.ctx(), podSecret, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		toTLS := path("/", prefix(), g.name)
		toTLS.Backend.Service.Port.Number = 443
		w.apply(ingress(g.namespace, g.name+"-pods-tls", "bulkhead", rule(podsTLSHost, toTLS)))
	}
	if err := workloads.CreateGRPC(w.ctx(), w.client, app); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := testcerts.SelfSigned(t, g.host)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: g.namespace, Name: "echo-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM}}
	if _, err := w.client.CoreV1().Secrets(g.namespace).Create(w.ctx(), secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ing := ingress(g.namespace, g.name, "bulkhead", rule(g.host, path("/", prefix(), g.name)))
	ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{g.host}, SecretName: "echo-tls"}}
	ing.Annotations = annotations
	w.apply(ing)
	w.awaitRollout(g.app())
	w.router.WaitReady(30 * time.Second)

	addr := strings.TrimPrefix(w.router.ProxyURL, "http://")
	var err error
	if g.h2c, err = grpcload.Dial(addr, g.host, nil); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	if g.tls, err = grpcload.Dial(addr, g.host, &tls.Config{ServerName: g.host, RootCAs: roots, MinVersion: tls.VersionTLS12}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.h2c.Close(); g.tls.Close() })
	g.expectAllPods(g.h2c, g.runningPods(g.app())...)
	return g
}

// app names the Deployment for the workloads helpers.
func (g *grpcEnv) app() workloads.App { return workloads.App{Namespace: g.namespace, Name: g.name} }

func (g *grpcEnv) callCtx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	g.t.Cleanup(cancel)
	return ctx
}

// expectAllPods awaits unary calls over conn being answered by every one
// of pods, and by no other.
func (g *grpcEnv) expectAllPods(conn *grpc.ClientConn, pods ...string) {
	g.t.Helper()
	seen := map[string]bool{}
	g.eventually(30*time.Second, fmt.Sprintf("unary calls answered by %v", pods), func() error {
		r, err := grpcload.Unary(g.callCtx(), conn, &testpb.SimpleRequest{})
		if err != nil {
			return err
		}
		if !slices.Contains(pods, r.Pod) {
			return fmt.Errorf("answered by %q, not one of %v", r.Pod, pods)
		}
		seen[r.Pod] = true
		if len(seen) < len(pods) {
			return fmt.Errorf("%w: seen %v", errNotYet, seen)
		}
		return nil
	})
}

// podControl posts a mode to a pod's control endpoint.
func (g *grpcEnv) podControl(pod, mode string) {
	g.t.Helper()
	p, err := g.client.CoreV1().Pods(g.namespace).Get(g.ctx(), pod, metav1.GetOptions{})
	if err != nil {
		g.t.Fatal(err)
	}
	resp, err := g.http.Post("http://"+p.Status.PodIP+":15000/mode?value="+mode, "", nil)
	if err != nil {
		g.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		g.t.Fatalf("mode %s on %s: %d", mode, pod, resp.StatusCode)
	}
}

func (g *grpcEnv) podIP(pod string) string {
	g.t.Helper()
	p, err := g.client.CoreV1().Pods(g.namespace).Get(g.ctx(), pod, metav1.GetOptions{})
	if err != nil {
		g.t.Fatal(err)
	}
	return p.Status.PodIP
}

// TestGRPCCalls: a Deployment of two gRPC pods (workloads.GRPCApp) behind
// an Ingress whose Service port says appProtocol kubernetes.io/h2c, called by real grpc-go
// clients over h2c and over TLS (the Ingress's spec.tls, ALPN h2), and
// behind a second Ingress to the Service's port with appProtocol https
// (TLS from the router to the pods, their certificate checked against
// -backend-tls-ca-file):
// unary and server-streaming calls reach the pods; the header metadata,
// the grpc-status, the pod's own trailer metadata and a status message
// the pod chose all arrive; a stream lasting four times the route's
// response-header timeout is not cut; the router counts the calls by
// grpc-status.
func TestGRPCCalls(t *testing.T) {
	t.Parallel()
	g := newGRPCEnv(t, 2, map[string]string{"bulkhead.io/response-header-timeout": "1s"}, true)
	pods := g.runningPods(g.app())
	g.expectAllPods(g.tls, pods...)
	// The second Ingress: h2c from the client, TLS (ALPN h2, the pod's
	// certificate checked) from the router to the pods' port 8443.
	toPodsTLS, err := grpcload.Dial(strings.TrimPrefix(g.router.ProxyURL, "http://"), podsTLSHost, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer toPodsTLS.Close()
	g.expectAllPods(toPodsTLS, pods...)
	for _, tc := range []struct {
		name string
		conn *grpc.ClientConn
	}{{"h2c", g.h2c}, {"TLS", g.tls}, {"TLS to the pods", toPodsTLS}} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := grpcload.Unary(g.callCtx(), tc.conn, &testpb.SimpleRequest{ResponseSize: 1000}, grpcload.TrailerKey, "unary-"+tc.name)
			if err != nil || !slices.Contains(pods, r.Pod) {
				t.Fatalf("unary: %v from %q", err, r.Pod)
			}
			if got := r.Trailer.Get(grpcload.TrailerKey); len(got) != 1 || got[0] != "unary-"+tc.name ||
				len(r.Trailer.Get(grpcload.PodKey)) != 1 || r.Header.Get(grpcload.PodKey)[0] != r.Pod {
				t.Errorf("unary: header %v, trailer %v", r.Header, r.Trailer)
			}
			// A status of the pod's choosing, with its message: trailers
			// through the router, not a status the router made up.
			_, err = grpcload.Unary(g.callCtx(), tc.conn, &testpb.SimpleRequest{
				ResponseStatus: &testpb.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "the pod says no"}})
			if s := status.Convert(err); s.Code() != codes.FailedPrecondition || s.Message() != "the pod says no" {
				t.Errorf("echoed status: %v", err)
			}
			// Streams: 50 messages of 2 KiB, then the trailers.
			r, err = grpcload.Stream(g.callCtx(), tc.conn, 50, 2048, time.Millisecond, nil, grpcload.TrailerKey, "stream-"+tc.name)
			if err != nil || r.Messages != 50 || r.Trailer.Get(grpcload.CountKey)[0] != "50" || r.Trailer.Get(grpcload.TrailerKey)[0] != "stream-"+tc.name {
				t.Errorf("stream: %v, %d messages, trailer %v", err, r.Messages, r.Trailer)
			}
			// Longer than the response-header timeout (1 s): 20 messages
			// 200 ms apart.
			start := time.Now()
			r, err = grpcload.Stream(g.callCtx(), tc.conn, 20, 10, 200*time.Millisecond, nil)
			t.Logf("a stream of 20 messages 200 ms apart took %s: %v, %d messages", time.Since(start).Round(time.Millisecond), err, r.Messages)
			if err != nil || r.Messages != 20 {
				t.Errorf("long stream: %v after %d messages", err, r.Messages)
			}
		})
	}
	for _, port := range []string{"80", "443"} {
		for _, code := range []string{"OK", "FAILED_PRECONDITION"} {
			sample := `bulkhead_upstream_grpc_responses_total{code="` + code + `",group="` + g.namespace + `/` + g.name + `:` + port + `"}`
			if n, ok := g.router.Metric(sample); !ok || n < 1 {
				t.Errorf("%s = %v (present %v); metrics:\n%s", sample, n, ok, grpcMetrics(g))
			}
		}
	}
}

func grpcMetrics(g *grpcEnv) string {
	_, body := g.router.Admin("/metrics")
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, "grpc") && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestGRPCFaults: three gRPC pods. One answers every call UNAVAILABLE
// (its health still SERVING, so it stays ready): the router counts the
// statuses, its breaker opens, and calls go to the two others. One is
// killed (kubectl delete --force) in the middle of a stream: that stream
// ends with an error, new calls succeed on the others. Then three
// rolling updates (see rollUnderLoad) under steady unary and streaming
// load: 0 calls end other than OK.
func TestGRPCFaults(t *testing.T) {
	t.Parallel()
	g := newGRPCEnv(t, 3, nil, false)
	pods := g.runningPods(g.app())

	// UNAVAILABLE opens the breaker.
	bad := pods[0]
	openSample := `bulkhead_upstream_breaker_state_changes_total{endpoint="` + g.podIP(bad) + `:8080",to="open"}`
	g.podControl(bad, "unavailable")
	load := grpcload.Start(g.h2c, grpcload.Options{Rate: 50})
	g.router.WaitFor(30*time.Second, "the breaker of the pod answering UNAVAILABLE to open", func() bool {
		n, _ := g.router.Metric(openSample)
		return n >= 1
	})
	// With the breaker open, calls go to the other two.
	before := load.Stop()
	t.Logf("until the breaker opened: %s", before.String())
	unavailable, _ := g.router.Metric(`bulkhead_upstream_grpc_responses_total{code="UNAVAILABLE",group="grpc/echo:80"}`)
	t.Logf("UNAVAILABLE answers counted by the router until then: %v", unavailable)
	if unavailable < 1 {
		t.Errorf("no UNAVAILABLE counted:\n%s", grpcMetrics(g))
	}
	for i := range 30 {
		r, err := grpcload.Unary(g.callCtx(), g.h2c, &testpb.SimpleRequest{})
		if err != nil || r.Pod == bad {
			t.Errorf("call %d with the breaker open: %v from %q", i, err, r.Pod)
		}
	}
	g.podControl(bad, "ok")

	// A pod killed mid-stream.
	stream := make(chan error, 1)
	podOf := make(chan string, 1)
	go func() {
		_, err := grpcload.Stream(g.callCtx(), g.h2c, 200, 10, 25*time.Millisecond, func(i int, h metadata.MD) {
			if i == 1 {
				podOf <- h.Get(grpcload.PodKey)[0]
			}
		})
		stream <- err
	}()
	victim := <-podOf
	g.kubectlRun(time.Minute, "-n", g.namespace, "delete", "pod", victim, "--grace-period=0", "--force")
	select {
	case err := <-stream:
		t.Logf("the stream from %s, killed: %v", victim, err)
		if status.Code(err) == codes.OK {
			t.Errorf("the stream of the killed pod ended OK")
		}
	case <-time.After(4 * time.Second): // the stream would last 5 s
		t.Fatalf("the stream of the killed pod did not end")
	}
	for i := range 20 {
		r, err := grpcload.Unary(g.callCtx(), g.h2c, &testpb.SimpleRequest{})
		if err != nil || r.Pod == victim {
			t.Errorf("call %d after the kill: %v from %q", i, err, r.Pod)
		}
	}
	g.awaitRollout(g.app())
	g.expectAllPods(g.h2c, g.runningPods(g.app())...)

	// Rolling updates under load: `kubectl rollout restart` with the 1 s
	// preStop sleep (routers learn that the pod is terminating while it
	// still serves), then the patch removing the preStop hook (itself a
	// rolling update of pods that have one), then `kubectl rollout
	// restart` of pods without it: SIGTERM at once, the pod answers
	// NOT_SERVING, sends GOAWAY and finishes its calls (GracefulStop).
	g.rollUnderLoad("rollout restart, 1 s preStop sleep", "rollout", "restart", "deployment/"+g.name)
	g.rollUnderLoad("patch removing the preStop hook", "patch", "deployment/"+g.name, "--type=json",
		`-p=[{"op":"remove","path":"/spec/template/spec/containers/0/lifecycle"}]`)
	g.rollUnderLoad("rollout restart, no preStop hook", "rollout", "restart", "deployment/"+g.name)
}

// rollUnderLoad runs a kubectl command that rolls the Deployment's pods
// under unary calls over h2c (50/s) and streams over TLS (5/s, 20
// messages 25 ms apart), awaits the rollout and fails the test unless
// every pod was replaced and every call ended OK.
func (g *grpcEnv) rollUnderLoad(what string, kubectl ...string) {
	g.t.Helper()
	before := g.runningPods(g.app())
	unary := grpcload.Start(g.h2c, grpcload.Options{Rate: 50})
	streams := grpcload.Start(g.tls, grpcload.Options{Kind: grpcload.StreamCalls, Rate: 5, StreamMessages: 20, StreamInterval: 25 * time.Millisecond})
	g.kubectlRun(time.Minute, append([]string{"-n", g.namespace}, kubectl...)...)
	g.awaitRollout(g.app())
	after := g.runningPods(g.app())
	for _, p := range after {
		if slices.Contains(before, p) {
			g.t.Fatalf("%s: pod %s survived", what, p)
		}
	}
	g.expectAllPods(g.h2c, after...)
	// A quick rollout can end before the load made its minimum: keep it
	// running on the new pods until it has, so a figure is never too
	// small to count.
	g.router.WaitFor(30*time.Second, "the load's minimum of 100 unary calls and 10 streams", func() bool {
		us, _ := unary.Snapshot()
		ss, _ := streams.Snapshot()
		return us >= 100 && ss >= 10
	})
	u, s := unary.Stop(), streams.Stop()
	g.t.Logf("%s, 3 gRPC pods: unary over h2c: %s", what, u.String())
	g.t.Logf("%s, 3 gRPC pods: streams over TLS: %s", what, s.String())
	if u.Sent < 100 || u.Failed != 0 {
		g.t.Errorf("%s: unary calls: %s", what, u.String())
	}
	if s.Sent < 10 || s.Failed != 0 {
		g.t.Errorf("%s: streams: %s", what, s.String())
	}
}
