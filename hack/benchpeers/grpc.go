package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/bulkhead-router/bulkhead/internal/freeport"
	"github.com/bulkhead-router/bulkhead/internal/grpcload"
	"github.com/bulkhead-router/bulkhead/internal/podnet"
)

// The gRPC round: the same two grpc-echo pods (internal/testpods/grpcecho,
// grpc-go's own server over h2c) behind bulkhead (an Ingress to a Service
// whose port says appProtocol kubernetes.io/h2c), nginx (grpc_pass) and
// HAProxy (proto h2 on both sides); the load is unary calls from grpc-go
// clients of this program (grpcload.Saturate: a fixed number of calls in
// flight over a fixed number of HTTP/2 connections, back to back), since
// wrk speaks only HTTP/1.1. Stock skipper is left out: it has no HTTP/2
// listener for clients.

const (
	grpcNamespace = "grpcbench"
	grpcService   = "echo"
	grpcHost      = "grpc.bench.example"
	grpcPort      = 8080
	grpcEchoPkg   = "github.com/bulkhead-router/bulkhead/internal/testpods/grpcecho"
)

// grpcLoad is the shape of the gRPC load, the same for every target.
type grpcLoad struct {
	Connections int           `json:"connections"`
	Calls       int           `json:"callsInFlight"`
	Duration    time.Duration `json:"duration"`
}

func (l grpcLoad) String() string {
	return fmt.Sprintf("grpc-go unary calls (100 B answers), %d in flight over %d HTTP/2 connections, %s per run",
		l.Calls, l.Connections, l.Duration)
}

// grpcPods are the two grpc-echo pods, in network namespaces of their
// own podnet host.
type grpcPods struct {
	net     *podnet.Host
	spawner *podnet.Spawner
	release func()
	pods    []podnet.Pod
	procs   []*podnet.Process
	Names   []string
	Addrs   []string
}

func startGRPCPods(ctx context.Context, log *slog.Logger) (*grpcPods, error) {
	g := &grpcPods{spawner: podnet.NewSpawner()}
	var err error
	if g.net, err = podnet.NewHost(ctx, podnet.NewTool(), log); err != nil {
		return nil, err
	}
	bin, release, err := podnet.BuildProgram(ctx, log, grpcEchoPkg)
	if err != nil {
		g.close()
		return nil, err
	}
	g.release = release
	for i := range 2 {
		name := fmt.Sprintf("%s-%d", grpcService, i)
		pn, err := g.net.AddPod(ctx, i+2, name)
		if err != nil {
			g.close()
			return nil, err
		}
		g.pods = append(g.pods, pn)
		addr := netip.AddrPortFrom(pn.IP, grpcPort).String()
		control := netip.AddrPortFrom(pn.IP, 15000).String()
		cmd := exec.Command(g.net.Tool().Path(), "netns", "exec", pn.Netns, bin, "-listen", addr, "-control", control, "-pod", name)
		out := podnet.NewOutput(log.With("pod", name))
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := g.spawner.Start(cmd); err != nil {
			g.close()
			return nil, err
		}
		g.procs = append(g.procs, podnet.Watch(cmd, out))
		g.Names, g.Addrs = append(g.Names, name), append(g.Addrs, addr)
		if err := awaitReady(ctx, "http://"+control+"/ready"); err != nil {
			g.close()
			return nil, fmt.Errorf("grpc-echo pod %s: %w", name, err)
		}
	}
	return g, nil
}

// awaitReady polls a pod's readiness endpoint: the pod is a process of
// its own, there is nothing to wait on but its answer.
func awaitReady(ctx context.Context, url string) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after 30s: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (g *grpcPods) close() {
	for _, p := range g.procs {
		p.Kill()
		<-p.Exited()
	}
	if g.net != nil {
		for _, pn := range g.pods {
			g.net.RemovePod(context.Background(), pn)
		}
		g.net.TearDown(context.Background())
	}
	if g.release != nil {
		g.release()
	}
	g.spawner.Stop()
}

// publishGRPC writes what bulkhead reads: the Service (appProtocol
// kubernetes.io/h2c), its EndpointSlice with both pods ready, an Ingress
// for grpcHost.
func (h *harness) publishGRPC(ctx context.Context, g *grpcPods) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: grpcNamespace}}
	if _, err := h.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return err
	}
	h2c := "kubernetes.io/h2c"
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: grpcNamespace, Name: grpcService},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 80, TargetPort: intstr.FromInt32(grpcPort),
			Protocol: corev1.ProtocolTCP, AppProtocol: &h2c}}}}
	if _, err := h.client.CoreV1().Services(grpcNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	ready, name, port, proto := true, "grpc", int32(grpcPort), corev1.ProtocolTCP
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: grpcNamespace, Name: grpcService + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: grpcService}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto, AppProtocol: &h2c}},
	}
	for _, pn := range g.pods {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{pn.IP.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	if _, err := h.client.DiscoveryV1().EndpointSlices(grpcNamespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		return err
	}
	prefix, class := networkingv1.PathTypePrefix, ingressClass
	ing := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: grpcNamespace, Name: grpcService},
		Spec: networkingv1.IngressSpec{IngressClassName: &class, Rules: []networkingv1.IngressRule{{Host: grpcHost,
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/", PathType: &prefix, Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
					Name: grpcService, Port: networkingv1.ServiceBackendPort{Number: 80}}}}}}}}}},
	}
	_, err := h.client.NetworkingV1().Ingresses(grpcNamespace).Create(ctx, ing, metav1.CreateOptions{})
	return err
}

// grpcPeers are the proxies of the gRPC round.
var grpcPeers = []peer{
	{Name: "bulkhead", Start: func(in instance) (*process, error) { return startBulkhead(in, false) }},
	{Name: "nginx", Start: func(in instance) (*process, error) {
		conf, err := writeGRPCConfig(in, "nginx-grpc.conf.tmpl", "nginx.conf")
		if err != nil {
			return nil, err
		}
		return startPinned("nginx", filepath.Join(in.Dir, "nginx.out"), in.CPU, nil,
			in.Programs.Nginx, "-p", in.Dir, "-e", filepath.Join(in.Dir, "error.log"), "-c", conf)
	}},
	{Name: "haproxy", Start: func(in instance) (*process, error) {
		conf, err := writeGRPCConfig(in, "haproxy-grpc.cfg.tmpl", "haproxy.cfg")
		if err != nil {
			return nil, err
		}
		return startPinned("haproxy", filepath.Join(in.Dir, "haproxy.out"), in.CPU, nil, in.Programs.HAProxy, "-db", "-f", conf)
	}},
}

// grpcBackends are the pods' addresses for the peers' templates, set once
// the pods run.
var grpcBackends []string

func writeGRPCConfig(in instance, tmpl, file string) (string, error) {
	data, err := renderConfig(tmpl, configData{Dir: in.Dir, Listen: in.Listen, Backends: grpcBackends})
	if err != nil {
		return "", err
	}
	path := filepath.Join(in.Dir, file)
	return path, os.WriteFile(path, data, 0o644)
}

// grpcTarget is one thing the gRPC load measures.
type grpcTarget struct {
	name  string
	proc  *process // nil: a pod directly
	conns []*grpc.ClientConn
}

// grpcThroughput runs the gRPC round: every proxy of -peers that speaks
// HTTP/2 to clients, side by side in front of the same two pods, measured
// in rotated rounds like the HTTP round, plus one pod directly.
func (h *harness) grpcThroughput(ctx context.Context) ([]summary, *summary, error) {
	step("gRPC round: starting two grpc-echo pods and the Ingress grpcbench/echo (host " + grpcHost + ", appProtocol kubernetes.io/h2c)")
	g, err := startGRPCPods(ctx, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return nil, nil, err
	}
	defer g.close()
	grpcBackends = g.Addrs
	if err := h.publishGRPC(ctx, g); err != nil {
		return nil, nil, err
	}
	var targets []grpcTarget
	defer func() {
		for _, t := range targets {
			for _, c := range t.conns {
				c.Close()
			}
			if t.proc != nil {
				t.proc.stop()
			}
		}
	}()
	dial := func(addr string) ([]*grpc.ClientConn, error) {
		var conns []*grpc.ClientConn
		for range h.cfg.GRPC.Connections {
			c, err := grpcload.Dial(addr, grpcHost, nil)
			if err != nil {
				return conns, err
			}
			conns = append(conns, c)
		}
		return conns, nil
	}
	for _, p := range grpcPeers {
		if !h.cfg.selected(p.Name) {
			continue
		}
		step(fmt.Sprintf("gRPC round: starting %s on CPU %d", p.Name, h.cfg.ProxyCPU))
		ports, err := freeport.Get(1)
		if err != nil {
			return nil, nil, err
		}
		dir := filepath.Join(h.work, "grpc-"+p.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, nil, err
		}
		in := instance{Dir: dir, CPU: h.cfg.ProxyCPU, Listen: fmt.Sprintf("127.0.0.1:%d", ports[0]), Programs: h.programs, Kubeconfig: h.cp.Kubeconfig()}
		proc, err := p.Start(in)
		if err != nil {
			return nil, nil, err
		}
		conns, err := dial(in.Listen)
		targets = append(targets, grpcTarget{name: p.Name, proc: proc, conns: conns})
		if err != nil {
			return nil, nil, err
		}
		if err := awaitCondition(ctx, proc, proxyStartLimit, 20*time.Millisecond, p.Name+" to serve both gRPC pods", grpcSeesPods(conns[0], g.Names)); err != nil {
			return nil, nil, err
		}
	}
	if h.cfg.Baseline {
		conns, err := dial(g.Addrs[0])
		targets = append(targets, grpcTarget{name: baselineName, conns: conns})
		if err != nil {
			return nil, nil, err
		}
	}
	measure := func(t grpcTarget, d time.Duration) (wrkResult, error) {
		if t.proc != nil {
			select {
			case <-t.proc.exited():
				return wrkResult{}, t.proc.exitError("idle between runs")
			default:
			}
		}
		before, err := readProcStat()
		if err != nil {
			return wrkResult{}, err
		}
		r := grpcload.Saturate(t.conns, h.cfg.GRPC.Calls, d, grpcload.Options{Timeout: 5 * time.Second})
		after, err := readProcStat()
		if err != nil {
			return wrkResult{}, err
		}
		return wrkResult{Requests: int64(r.OK), RPS: r.Throughput(), P50: r.Percentile(50), P75: r.Percentile(75),
			P90: r.Percentile(90), P99: r.Percentile(99), Non2xx: int64(r.Failed),
			CPU: cpuUseBetween(before, after, h.cfg.ProxyCPU, h.cfg.Load.CPU)}, nil
	}
	results, err := measureRounds(h.cfg, targets, func(t grpcTarget) string { return t.name }, measure, h.cfg.GRPC.Duration, "gRPC ", "calls/s", "failed")
	if err != nil {
		return nil, nil, err
	}
	var proxies []summary
	var baseline *summary
	for _, t := range targets {
		s := summarize(t.name, results[t.name])
		if t.proc == nil {
			baseline = &s
			continue
		}
		proxies = append(proxies, s)
	}
	for _, s := range proxies {
		if s.Name == "bulkhead" {
			setRatios(proxies, s)
			break
		}
	}
	return proxies, baseline, nil
}

// grpcSeesPods is the start condition of a gRPC target: unary calls
// through it answered by every pod.
func grpcSeesPods(conn *grpc.ClientConn, pods []string) func() error {
	seen := map[string]bool{}
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		r, err := grpcload.Unary(ctx, conn, &testpb.SimpleRequest{})
		if err != nil {
			return err
		}
		seen[r.Pod] = true
		for _, p := range pods {
			if !seen[p] {
				return fmt.Errorf("pod %s not seen yet", p)
			}
		}
		return nil
	}
}
