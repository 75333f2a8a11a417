package chaos

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bulkhead-router/bulkhead/internal/grpcload"
	"github.com/bulkhead-router/bulkhead/internal/loadgen"
	"github.com/bulkhead-router/bulkhead/internal/nodeagent"
	"github.com/bulkhead-router/bulkhead/internal/testcerts"
	"github.com/bulkhead-router/bulkhead/internal/workloads"
	"github.com/bulkhead-router/bulkhead/upstream"
)

// GRPCHost is the host of the gRPC Deployment's Ingress (h2c and TLS).
const GRPCHost = "grpc.chaos.example"

// grpcScenarios move the pods of a gRPC Deployment (the node agent's
// grpc-echo, reached over h2c through its Service port's appProtocol)
// while gRPC calls run through the router beside the HTTP load of one
// hand-made pod, which stays untouched (the runner's load is HTTP; the
// gRPC calls are this scenario's own, counted by gRPC status).
func grpcScenarios() []Scenario[*Local] {
	return []Scenario[*Local]{{
		Name: "grpc-rolling-update",
		Summary: "`kubectl rollout restart` of a Deployment of 3 gRPC pods (grpc-echo, Service port appProtocol kubernetes.io/h2c, " +
			"1s preStop sleep, GracefulStop on SIGTERM) under unary calls over h2c and server-streaming calls (20 messages 25ms apart) " +
			"over TLS from the Ingress's spec.tls, with grpc-go clients; GETs to an HTTP pod beside it",
		Bound: "0 calls ending other than OK (a stream: every message and status OK); 0 failed GETs; /readyz always 200; every pod replaced",
		Setup: func(e *Local) error {
			if err := e.Start(StartOptions{Pods: 1}); err != nil {
				return err
			}
			return e.startGRPC(workloads.GRPCApp{Namespace: Namespace, Name: "grpc", Replicas: 3, PreStopSleep: time.Second})
		},
		Fault: func(e *Local) error {
			unary := grpcload.Start(e.grpc.h2c, grpcload.Options{Rate: e.Rate})
			streams := grpcload.Start(e.grpc.tls, grpcload.Options{Kind: grpcload.StreamCalls, Rate: e.Rate / 10,
				StreamMessages: 20, StreamInterval: 25 * time.Millisecond})
			err := e.rollGRPC()
			u, s := unary.Stop(), streams.Stop()
			e.grpc.loads = []LoadResult{
				grpcLoadResult("gRPC unary (h2c)", e.Rate, u),
				grpcLoadResult("gRPC stream (TLS)", e.Rate/10, s),
			}
			return err
		},
		Check: func(e *Local, o *Outcome) error {
			o.Loads = append(o.Loads, e.grpc.loads...)
			_, err := e.noteMetrics(upstream.MetricRetries, upstream.MetricGRPCResponses,
				upstream.MetricGRPCResponses+`{code="UNAVAILABLE",group="`+Namespace+`/grpc:80"}`)
			return err
		},
	}}
}

// grpcState is a Local's gRPC Deployment and clients.
type grpcState struct {
	app      workloads.GRPCApp
	h2c, tls *grpc.ClientConn
	loads    []LoadResult
}

// startGRPC starts the controllers and the node agent, creates app with an
// Ingress for GRPCHost (TLS from a self-signed Secret the clients trust),
// waits for its rollout and for every pod to answer through the router.
func (e *Local) startGRPC(app workloads.GRPCApp) error {
	ctx, cancel := context.WithTimeout(e.Context(), 3*time.Minute)
	defer cancel()
	if err := e.CP.StartControllers(ctx); err != nil {
		return err
	}
	e.Agent = nodeagent.ForTest(e.T, e.Client, nodeagent.Options{Logger: e.Log.With("component", "nodeagent")})
	if err := workloads.CreateGRPC(ctx, e.Client, app); err != nil {
		return err
	}
	certPEM, keyPEM := testcerts.SelfSigned(e.T, GRPCHost)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: app.Namespace, Name: app.Name + "-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM}}
	if _, err := e.Client.CoreV1().Secrets(app.Namespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return err
	}
	ing := Ingress(app.Name, GRPCHost, app.Name)
	ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{GRPCHost}, SecretName: secret.Name}}
	if err := e.Apply(ing); err != nil {
		return err
	}
	if err := workloads.AwaitRollout(ctx, e.Client, app.Namespace, app.Name); err != nil {
		return err
	}
	addr := strings.TrimPrefix(e.Router.ProxyURL, "http://")
	h2c, err := grpcload.Dial(addr, GRPCHost, nil)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	tlsConn, err := grpcload.Dial(addr, GRPCHost, &tls.Config{ServerName: GRPCHost, RootCAs: roots, MinVersion: tls.VersionTLS12})
	if err != nil {
		h2c.Close()
		return err
	}
	e.T.Cleanup(func() { h2c.Close(); tlsConn.Close() })
	e.grpc = &grpcState{app: app, h2c: h2c, tls: tlsConn}
	return e.expectGRPCPods()
}

// expectGRPCPods waits until unary calls over h2c and TLS are answered by
// every running pod of the gRPC Deployment and by no other.
func (e *Local) expectGRPCPods() error {
	a := e.grpc.app.App()
	pods, _, err := workloads.RunningPods(e.Context(), e.Client, a.Namespace, a.Selector())
	if err != nil {
		return err
	}
	for _, conn := range []*grpc.ClientConn{e.grpc.h2c, e.grpc.tls} {
		seen := map[string]bool{}
		if err := e.Await(30*time.Second, fmt.Sprintf("gRPC calls answered by %v", pods), func() error {
			ctx, cancel := context.WithTimeout(e.Context(), 5*time.Second)
			defer cancel()
			r, err := grpcload.Unary(ctx, conn, &testpb.SimpleRequest{})
			if err != nil {
				return err
			}
			if !slices.Contains(pods, r.Pod) {
				return notYet("answered by %q", r.Pod)
			}
			seen[r.Pod] = true
			if len(seen) < len(pods) {
				return notYet("seen %v", seen)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// rollGRPC is `kubectl rollout restart` of the gRPC Deployment, awaited
// until every pod is new and answers.
func (e *Local) rollGRPC() error {
	a := e.grpc.app.App()
	before, _, err := workloads.RunningPods(e.Context(), e.Client, a.Namespace, a.Selector())
	if err != nil {
		return err
	}
	if _, err := e.Kubectl(time.Minute, "-n", a.Namespace, "rollout", "restart", "deployment/"+a.Name); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(e.Context(), 3*time.Minute)
	defer cancel()
	if err := workloads.AwaitRollout(ctx, e.Client, a.Namespace, a.Name); err != nil {
		return err
	}
	after, _, err := workloads.RunningPods(e.Context(), e.Client, a.Namespace, a.Selector())
	if err != nil {
		return err
	}
	for _, p := range after {
		if slices.Contains(before, p) {
			return fmt.Errorf("pod %s survived the rollout restart", p)
		}
	}
	if len(after) == 0 {
		return errors.New("no gRPC pod after the rollout")
	}
	e.Note("gRPC pods %v replaced by %v", before, after)
	return e.expectGRPCPods()
}

// grpcLoadResult reports a gRPC load as a load stream: failed calls by
// gRPC code in ByError, and its latencies.
func grpcLoadResult(name string, rate float64, r *grpcload.Result) LoadResult {
	byError := map[string]int{}
	for code, n := range r.ByCode {
		byError[code] = n
	}
	return LoadResult{Method: name, Path: "/", Rate: rate,
		Result: &loadgen.Result{Sent: r.Sent, OK: r.OK, Failed: r.Failed, ByError: byError, First: r.First},
		GRPC:   r}
}
