package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	"github.com/bulkhead-router/bulkhead/internal/gatewaycrds"
	"github.com/bulkhead-router/bulkhead/internal/nodeagent"
	"github.com/bulkhead-router/bulkhead/internal/podnet"
)

const (
	proxyAddr  = "127.0.0.1:8080"
	healthAddr = "127.0.0.1:8081"
	adminAddr  = "127.0.0.1:9911"
	// The read-only metrics listener, on loopback here like everything else
	// of the demo.
	metricsAddr = "127.0.0.1:9912"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	for _, addr := range []string{proxyAddr, healthAddr, adminAddr, metricsAddr} {
		if err := portFree(addr); err != nil {
			return err
		}
	}
	if err := podnet.CheckPreconditions(true); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "bulkhead-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	step("starting the control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)")
	cp, err := controlplane.Start(ctx, controlplane.Options{Dir: filepath.Join(work, "controlplane"), Progress: os.Stdout, Controllers: true})
	if err != nil {
		return err
	}
	defer cp.Stop()
	kubectl := func(args ...string) error {
		cmd := exec.CommandContext(ctx, cp.Binaries().Kubectl, append([]string{"--kubeconfig", cp.Kubeconfig()}, args...)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		return cmd.Run()
	}

	step("starting the node agent: three Nodes whose pods are processes in network namespaces")
	agentLog := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	agent, err := nodeagent.Start(ctx, cp.Client(), nodeagent.Options{Logger: agentLog})
	if err != nil {
		return err
	}
	defer agent.Close()
	for _, n := range agent.Nodes() {
		fmt.Printf("  node %s (zone %s), pods from %s\n", n.Name, n.Zone, n.PodCIDR)
	}

	step("applying the example Deployments, Services, IngressClass and Ingresses (hack/demo/examples.yaml)")
	if err := kubectl("apply", "-f", "hack/demo/examples.yaml"); err != nil {
		return fmt.Errorf("kubectl apply: %w", err)
	}
	for _, d := range []string{"web", "api"} {
		if err := kubectl("-n", "demo", "rollout", "status", "deployment/"+d, "--timeout=180s"); err != nil {
			return fmt.Errorf("deployment demo/%s: %w", d, err)
		}
	}
	if err := kubectl("-n", "demo", "get", "pods", "-o", "wide"); err != nil {
		return err
	}

	step("TLS, HTTP/2 and gRPC: a self-signed certificate as Secret demo/demo-tls, a gRPC Deployment behind an Ingress with TLS, and an Ingress that redirects plain HTTP to https (hack/demo/tls-grpc.yaml)")
	certFile, keyFile, err := selfSigned(work, "secure.example", "grpc.example")
	if err != nil {
		return err
	}
	if err := kubectl("-n", "demo", "create", "secret", "tls", "demo-tls", "--cert", certFile, "--key", keyFile); err != nil {
		return fmt.Errorf("kubectl create secret: %w", err)
	}
	if err := kubectl("apply", "-f", "hack/demo/tls-grpc.yaml"); err != nil {
		return fmt.Errorf("kubectl apply: %w", err)
	}
	if err := kubectl("-n", "demo", "rollout", "status", "deployment/grpc", "--timeout=180s"); err != nil {
		return fmt.Errorf("deployment demo/grpc: %w", err)
	}

	step("installing the Gateway API CRDs (v1.6.3, from the Go module cache) and applying a GatewayClass, Gateway and HTTPRoute (hack/demo/gateway.yaml)")
	if _, err := gatewaycrds.Install(ctx, cp.RESTConfig()); err != nil {
		return fmt.Errorf("Gateway API CRDs: %w", err)
	}
	if err := kubectl("apply", "-f", "hack/demo/gateway.yaml"); err != nil {
		return fmt.Errorf("kubectl apply: %w", err)
	}

	step("starting bulkhead (bin/bulkhead); its log follows")
	router := exec.Command("bin/bulkhead",
		"-kubeconfig", cp.Kubeconfig(),
		"-address", proxyAddr, "-health-address", healthAddr, "-admin-address", adminAddr, "-metrics-address", metricsAddr,
		"-state-dir", filepath.Join(work, "state"),
		"-publish-address", "127.0.0.1",
		"-election-namespace", "default",
		// No load balancer to wait for here: Ctrl-C should stop at once.
		"-drain-delay", "0s",
	)
	router.Stdout, router.Stderr = os.Stderr, os.Stderr
	router.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := router.Start(); err != nil {
		return fmt.Errorf("starting bin/bulkhead (run make build first): %w", err)
	}
	routerDone := make(chan error, 1)
	go func() { routerDone <- router.Wait() }()
	defer func() {
		router.Process.Signal(syscall.SIGTERM)
		select {
		case <-routerDone:
		case <-time.After(40 * time.Second):
			router.Process.Kill()
		}
	}()
	if err := waitReady(ctx, routerDone); err != nil {
		return err
	}
	printTryThis(cp)

	restart := make(chan os.Signal, 1)
	signal.Notify(restart, syscall.SIGUSR1)
	for {
		select {
		case <-ctx.Done():
			step("stopping: bulkhead, pods, control plane")
			return nil
		case err := <-routerDone:
			return fmt.Errorf("bulkhead exited: %v", err)
		case <-restart:
			step("restarting kube-apiserver")
			if err := cp.RestartAPIServer(ctx); err != nil {
				fmt.Fprintf(os.Stderr, "restart failed: %v\n", err)
				continue
			}
			fmt.Printf("  kube-apiserver is back (pid %d)\n", cp.APIServerPID())
		}
	}
}

func step(s string) { fmt.Printf("\n==> %s\n", s) }

func proxyPort() string {
	_, port, _ := net.SplitHostPort(proxyAddr)
	return port
}

// selfSigned writes a self-signed certificate for names and its key to
// dir, for the demo's TLS Secret.
func selfSigned(dir string, names ...string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "demo-tls.crt"), filepath.Join(dir, "demo-tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}

func portFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s is in use (another demo or bulkhead running?): %w", addr, err)
	}
	return l.Close()
}

func waitReady(ctx context.Context, routerDone <-chan error) error {
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get("http://" + healthAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-routerDone:
			return fmt.Errorf("bulkhead exited before it was ready: %v", err)
		case <-deadline:
			return errors.New("bulkhead not ready after 60 s")
		case <-tick.C:
		}
	}
}

func printTryThis(cp *controlplane.ControlPlane) {
	fmt.Printf(`
==> bulkhead is ready. Try, in another terminal:

  # routes from the Ingresses (each answer is JSON naming the pod that served it)
  curl -s -H 'Host: shop.example' http://%[1]s/
  curl -s -H 'Host: shop.example' http://%[1]s/api/orders        # Prefix /api -> service api
  curl -s -H 'Host: shop.example' http://%[1]s/api/health        # Exact beats Prefix -> service web
  curl -s -H 'Host: eu.shop.example' http://%[1]s/               # wildcard host -> service api
  curl -s -H 'Host: anything.else' http://%[1]s/                 # defaultBackend (Ingress demo/fallback)
  curl -si -H 'Host: broken.example' http://%[1]s/               # 503: its Service does not exist
  curl -si -H 'Host: tuned.example' 'http://%[1]s/?sleep=3s'      # 504: 1 s per attempt, 2 retries (bulkhead.io/response-header-timeout)

  # TLS from an Ingress's Secret (SNI), HTTP/2 (h2c and over TLS), gRPC (hack/demo/tls-grpc.yaml)
  curl -sk --resolve secure.example:%[8]s:127.0.0.1 https://secure.example:%[8]s/          # self-signed: -k
  curl -si -H 'Host: secure.example' http://%[1]s/ | head -3                        # 308 to https (bulkhead.io/ssl-redirect)
  curl -s --http2-prior-knowledge -o /dev/null -w '%%{http_version}\n' -H 'Host: shop.example' http://%[1]s/   # 2: h2c
  curl -sk --http2 -o /dev/null -w '%%{http_version}\n' --resolve secure.example:%[8]s:127.0.0.1 https://secure.example:%[8]s/   # 2: ALPN h2
  go run ./hack/grpccall -addr %[1]s -authority grpc.example             # unary gRPC over h2c: pod, status, trailers
  go run ./hack/grpccall -addr %[1]s -authority grpc.example -stream 5   # server streaming
  go run ./hack/grpccall -addr %[1]s -authority grpc.example -tls        # gRPC over TLS
  %[5]s -n demo rollout restart deployment/grpc   # meanwhile: while go run ./hack/grpccall -n 20 ...; do :; done

  # the Gateway API (hack/demo/gateway.yaml): a 90/10 canary, a header, a redirect
  for i in $(seq 20); do curl -s -H 'Host: canary.example' http://%[1]s/ | grep -o '"service":"[a-z]*"'; done | sort | uniq -c
  curl -s -H 'Host: canary.example' -H 'X-Canary: always' http://%[1]s/   # -> service api
  curl -si -H 'Host: canary.example' http://%[1]s/old/page | head -3       # 301 to /new/page
  %[5]s -n demo get gateway,httproute                  # status written by bulkhead
  %[5]s -n demo patch httproute canary --type=json -p '[{"op":"replace","path":"/spec/rules/2/backendRefs/0/weight","value":0}]'   # all to api

  # the operator's view
  curl -s http://%[2]s/routes          # live table, each route with its Ingress or HTTPRoute
  curl -s http://%[2]s/problems        # what is skipped or answering 503, and why
  curl -s http://%[2]s/endpoints       # per backend: each pod's conditions, breaker, in-flight requests
  curl -s http://%[2]s/metrics | grep ^bulkhead_
  curl -s http://%[3]s/readyz          # the ALB health check

  # kubectl against the local API server
  export KUBECONFIG=%[4]s
  %[5]s get ingress -A                 # ADDRESS is written by bulkhead (-publish-address)
  %[5]s -n demo delete ingress broken  # routes follow within milliseconds

  # pods move; clients do not notice (run the curl loop below meanwhile)
  %[5]s -n demo get pods -o wide                         # processes in network namespaces on 3 Nodes
  %[5]s -n demo rollout restart deployment/web           # a rolling update by the real controllers
  %[5]s -n demo scale deployment/api --replicas=4
  %[5]s drain bulkhead-node-1 --ignore-daemonsets        # evicts its pods; then: uncordon bulkhead-node-1

  # the API server dies; traffic and readiness do not notice
  while sleep 0.2; do curl -s -o /dev/null -w '%%{http_code} ' -H 'Host: shop.example' http://%[1]s/; done
  kill -9 %[6]d                    # kube-apiserver
  kill -USR1 %[7]d                 # this demo restarts kube-apiserver

Ctrl-C here stops everything.
`, proxyAddr, adminAddr, healthAddr, cp.Kubeconfig(), cp.Binaries().Kubectl, cp.APIServerPID(), os.Getpid(), proxyPort())
}
