package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	"github.com/bulkhead-router/bulkhead/internal/freeport"
	"github.com/bulkhead-router/bulkhead/internal/testpods"
)

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchpeers: %v\n", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "benchpeers: %v\n", err)
		os.Exit(1)
	}
}

// harness is what every proxy of a run shares: the control plane, the
// pods and the working directory.
type harness struct {
	cfg      config
	work     string
	programs programs
	cp       *controlplane.ControlPlane
	client   kubernetes.Interface
	pods     *testpods.Cluster
}

func run(cfg config) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	started := time.Now()
	rep := report{Date: started.UTC(), Machine: readMachine(), Load: cfg.Load, Rounds: cfg.Rounds, Warmup: cfg.Warmup,
		FaultLoad: cfg.Fault, ProxyCPU: cfg.ProxyCPU, GRPCLoad: cfg.GRPC}

	if err := testpods.CheckPreconditions(testpods.Options{}); err != nil {
		return err
	}
	progs, err := findPrograms(cfg.Bulkhead, cfg.Throughput)
	if err != nil {
		return err
	}
	// Built only when it runs: the gRPC round leaves it out, and a cold
	// build takes minutes.
	if (cfg.selected("skipper") && (cfg.Throughput || cfg.FaultRun)) || (cfg.selected("skipper"+logSuffix) && cfg.Throughput) {
		if progs.Skipper, err = ensureSkipper(ctx); err != nil {
			return err
		}
	}
	rep.Versions = versions(ctx, progs)
	// Only what runs is named.
	if progs.Skipper == "" {
		delete(rep.Versions, "skipper")
	}
	if !cfg.Throughput {
		delete(rep.Versions, "wrk")
	}
	rep.Versions["kubernetes (control plane)"] = controlplane.KubernetesVersion
	rep.Versions["go"] = runtime.Version()
	if cfg.BulkheadLabel != "" {
		rep.Versions["bulkhead"] = cfg.BulkheadLabel
	}
	if err := pinSelf(ctx, cfg.Load.CPU); err != nil {
		return err
	}

	work, err := os.MkdirTemp("", "bulkhead-benchpeers-")
	if err != nil {
		return err
	}
	// nginx's worker drops root and must still reach its temp directories.
	if err := os.Chmod(work, 0o755); err != nil {
		return err
	}
	if cfg.Keep {
		defer fmt.Fprintf(os.Stderr, "benchpeers: configurations and proxy logs kept in %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	h := &harness{cfg: cfg, work: work, programs: progs}

	step("starting the control plane (etcd, kube-apiserver)")
	h.cp, err = controlplane.Start(ctx, controlplane.Options{Dir: filepath.Join(work, "controlplane"), Progress: os.Stderr})
	if err != nil {
		return err
	}
	defer h.cp.Stop()
	h.client = h.cp.Client()
	podLog := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if h.pods, err = testpods.New(ctx, h.client, testpods.Options{Logger: podLog}); err != nil {
		return err
	}
	defer h.pods.Close()
	if err := createIngressClass(ctx, h.client); err != nil {
		return err
	}

	if cfg.Throughput {
		if rep.Throughput, rep.Baseline, err = h.throughput(ctx); err != nil {
			return err
		}
	}
	if cfg.FaultRun {
		for _, p := range cfg.selectedPeers() {
			if p.LogOf != "" {
				continue
			}
			step("fault run: " + p.Name + " (" + cfg.Fault.String() + ")")
			r, err := h.faultRun(ctx, p)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "  sent %d, failed %d (%s)\n", r.Sent, r.Failed, r.Failures())
			rep.Fault = append(rep.Fault, r)
		}
	}
	if cfg.GRPCRound {
		if rep.GRPC, rep.GRPCBaseline, err = h.grpcThroughput(ctx); err != nil {
			return err
		}
	}
	rep.Took = time.Since(started).Round(time.Second)
	rep.Machine.LoadAfter = loadAverage()
	return rep.write(os.Stdout, cfg)
}

// step prints a progress line; results go to stdout, progress to stderr.
func step(s string) { fmt.Fprintf(os.Stderr, "==> %s\n", s) }

// startProxy runs p in front of up on a free loopback port, pinned to the
// proxy CPU, and waits until both pods answer through it.
func (h *harness) startProxy(ctx context.Context, p peer, label string, up upstream) (*process, string, error) {
	ports, err := freeport.Get(1)
	if err != nil {
		return nil, "", err
	}
	dir := filepath.Join(h.work, label)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	in := instance{Dir: dir, CPU: h.cfg.ProxyCPU, Listen: fmt.Sprintf("127.0.0.1:%d", ports[0]),
		Upstream: up, Programs: h.programs, Kubeconfig: h.cp.Kubeconfig()}
	proc, err := p.Start(in)
	if err != nil {
		return nil, "", err
	}
	url := "http://" + in.Listen + "/"
	if err := awaitServing(ctx, proc, url, up); err != nil {
		proc.stop()
		return nil, "", err
	}
	return proc, url, nil
}

// target is one thing wrk measures: a proxy, or a pod directly.
type target struct {
	name string
	url  string
	host string
	proc *process // nil for the pod itself
	// accessLog is the file a log-on proxy writes its lines to.
	accessLog string
}

// baselineName is the row of wrk straight at one pod.
const baselineName = "no proxy (one pod)"

// throughput starts every proxy in front of the same two pods and runs
// the wrk rounds, rotating the order each round.
func (h *harness) throughput(ctx context.Context) ([]summary, *summary, error) {
	step("starting two pods and the Ingress bench/web (host bench.example)")
	up, err := startUpstream(ctx, h.pods, h.client, "bench", "web", "bench.example")
	if err != nil {
		return nil, nil, err
	}
	var targets []target
	defer func() {
		for _, t := range targets {
			if t.proc != nil {
				t.proc.stop()
			}
		}
	}()
	for _, p := range h.cfg.selectedPeers() {
		step(fmt.Sprintf("starting %s on CPU %d", p.Name, h.cfg.ProxyCPU))
		proc, url, err := h.startProxy(ctx, p, p.Name, up)
		if err != nil {
			return nil, nil, err
		}
		t := target{name: p.Name, url: url, host: up.Host, proc: proc}
		if p.LogOf != "" {
			t.accessLog = filepath.Join(h.work, p.Name, accessLogFile)
		}
		targets = append(targets, t)
	}
	if h.cfg.Baseline {
		targets = append(targets, target{name: baselineName, url: up.Pods[0].URL("/"), host: up.Host})
	}

	// Every request wrk completed, warm-up included: a log-on proxy's
	// file must hold at least as many lines.
	sent := map[string]int64{}
	measure := func(t target, d time.Duration) (wrkResult, error) {
		if t.proc != nil {
			select {
			case <-t.proc.exited():
				return wrkResult{}, t.proc.exitError("idle between runs")
			default:
			}
		}
		var cpuBefore time.Duration
		if t.proc != nil {
			var err error
			if cpuBefore, err = groupCPU(t.proc.cmd.Process.Pid); err != nil {
				return wrkResult{}, err
			}
		}
		r, err := runWrk(ctx, h.cfg.Load, h.cfg.ProxyCPU, d, t.url, t.host)
		if err != nil {
			return r, err
		}
		sent[t.name] += r.Requests
		if t.proc != nil {
			after, err := groupCPU(t.proc.cmd.Process.Pid)
			if err != nil {
				return r, err
			}
			r.ProxyCPU = after - cpuBefore
		}
		return r, nil
	}
	results, err := measureRounds(h.cfg, targets, func(t target) string { return t.name }, measure, h.cfg.Load.Duration, "", "req/s", "errors")
	if err != nil {
		return nil, nil, err
	}

	if h.cfg.Profile != "" {
		for _, t := range targets {
			if t.name == "bulkhead" {
				if err := profileUnderLoad(ctx, h.cfg, t, h.cfg.Profile); err != nil {
					return nil, nil, fmt.Errorf("profile: %w", err)
				}
			}
		}
	}

	var proxies []summary
	var baseline *summary
	for _, t := range targets {
		s := summarize(t.name, results[t.name])
		if t.proc == nil {
			baseline = &s
			continue
		}
		if t.accessLog != "" {
			al, err := checkAccessLog(t, sent[t.name])
			if err != nil {
				return nil, nil, err
			}
			s.AccessLog = &al
		}
		proxies = append(proxies, s)
	}
	for _, s := range proxies {
		if s.Name == "bulkhead" {
			setRatios(proxies, s)
			break
		}
	}
	setLogRatios(proxies, h.cfg.selectedPeers())
	return proxies, baseline, nil
}

// checkAccessLog stops a log-on proxy (so that it writes what it holds:
// nginx's buffer, bulkhead's queue) and counts the lines of its file,
// which must be no fewer than the requests wrk completed through it: a
// log that dropped lines would flatter its throughput. bulkhead counts
// what it dropped in a metric, read before it stops.
func checkAccessLog(t target, sent int64) (accessLogCheck, error) {
	c := accessLogCheck{File: t.accessLog, Requests: sent}
	if t.proc.admin != "" {
		dropped, err := adminMetric(t.proc.admin, "bulkhead_access_log_dropped_total")
		if err != nil {
			return c, fmt.Errorf("%s: %w", t.name, err)
		}
		c.Dropped = &dropped
	}
	t.proc.stop()
	f, err := os.Open(t.accessLog)
	if err != nil {
		return c, fmt.Errorf("%s access log: %w", t.name, err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		c.Lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
		c.Bytes += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return c, fmt.Errorf("%s access log: %w", t.name, err)
		}
	}
	fmt.Fprintf(os.Stderr, "  %s access log: %d lines (%.0f bytes each) for %d requests wrk completed\n",
		t.name, c.Lines, float64(c.Bytes)/float64(max(c.Lines, 1)), c.Requests)
	if c.Lines < c.Requests {
		return c, fmt.Errorf("%s access log %s: %d lines for %d requests: lines were lost", t.name, t.accessLog, c.Lines, c.Requests)
	}
	return c, nil
}

// adminMetric reads the sum of a metric's samples (all label values) from
// bulkhead's admin endpoint.
func adminMetric(admin, name string) (float64, error) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum float64
	found := false
	for line := range strings.Lines(string(body)) {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(rest)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %q", name, line)
		}
		sum += v
		found = true
	}
	if !found {
		return 0, fmt.Errorf("no metric %s on http://%s/metrics", name, admin)
	}
	return sum, nil
}

// profileUnderLoad runs wrk at bulkhead for the round duration while its
// profiler records CPU for all but the first and last second.
func profileUnderLoad(ctx context.Context, cfg config, t target, out string) error {
	step("profiling bulkhead under the same load: " + out)
	secs := int(cfg.Load.Duration.Seconds()) - 2
	if secs < 1 {
		secs = 1
	}
	got := make(chan error, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet,
			fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", t.proc.admin, secs), nil)
		if err != nil {
			got <- err
			return
		}
		<-time.After(time.Second) // into the steady part of the run
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			got <- fmt.Errorf("profiler answered %s", resp.Status)
			return
		}
		f, err := os.Create(out)
		if err != nil {
			got <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		got <- errors.Join(err, f.Close())
	}()
	if _, err := runWrk(ctx, cfg.Load, cfg.ProxyCPU, cfg.Load.Duration, t.url, t.host); err != nil {
		return err
	}
	return <-got
}
