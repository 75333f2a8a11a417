package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"
)

// config is the command line, parsed and validated once.
type config struct {
	Rounds   int
	Warmup   time.Duration
	Load     wrkLoad
	ProxyCPU int
	Fault    faultLoad
	Bulkhead string
	// BulkheadLabel names the bulkhead build in the report; empty: the
	// repository's commit.
	BulkheadLabel string
	Peers         []string
	Throughput    bool
	FaultRun      bool
	// GRPCRound runs the gRPC round (grpc.go) with the GRPC load.
	GRPCRound bool
	GRPC      grpcLoad
	Baseline  bool
	JSONPath  string
	Markdown  string
	Keep      bool
	// Profile, when set, is where a CPU profile of bulkhead under the
	// same wrk load is written, after the rounds.
	Profile string
}

func parseConfig(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("benchpeers", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "usage: go run ./hack/benchpeers [flags]   (as root, from the repository; see docs/BENCHMARKS.md)\n\n")
		fs.PrintDefaults()
	}
	fs.IntVar(&c.Rounds, "rounds", 5, "throughput rounds; each runs every proxy once, in an order rotated per round")
	fs.DurationVar(&c.Load.Duration, "duration", 10*time.Second, "length of each wrk run (whole seconds)")
	fs.DurationVar(&c.Warmup, "warmup", 3*time.Second, "one wrk run per proxy before the rounds, not counted (whole seconds; 0: none)")
	fs.IntVar(&c.Load.Connections, "connections", 32, "wrk keep-alive connections, the same for every proxy")
	fs.IntVar(&c.Load.Threads, "threads", 1, "wrk threads")
	fs.IntVar(&c.ProxyCPU, "proxy-cpu", 0, "CPU the proxy under test runs on, alone")
	fs.IntVar(&c.Load.CPU, "load-cpu", 1, "CPU for wrk, the pods, the control plane and this program")
	fs.Float64Var(&c.Fault.Rate, "fault-rate", 200, "fault run: GET requests per second (open loop)")
	fs.DurationVar(&c.Fault.Duration, "fault-duration", 15*time.Second, "fault run: how long the load lasts")
	fs.DurationVar(&c.Fault.KillAfter, "fault-kill-after", 5*time.Second, "fault run: when one pod is SIGKILLed, counted in requests sent (rate × this)")
	fs.StringVar(&c.Bulkhead, "bulkhead", "bin/bulkhead", "bulkhead binary (make build)")
	fs.StringVar(&c.BulkheadLabel, "bulkhead-label", "", "how the report names the bulkhead build (default: this repository's commit)")
	peerList := fs.String("peers", "bulkhead,bulkhead+log,nginx,nginx+log,haproxy,skipper,skipper+log",
		"proxies to run, comma-separated; ratios need bulkhead; NAME+log is NAME with its access log on, to a file (the throughput round only)")
	fs.BoolVar(&c.Throughput, "throughput", true, "run the throughput rounds")
	fs.BoolVar(&c.FaultRun, "fault", true, "run the fault runs")
	fs.BoolVar(&c.GRPCRound, "grpc", true, "run the gRPC round: unary calls through bulkhead, nginx (grpc_pass) and HAProxy (proto h2) to two grpc-echo pods over h2c")
	fs.IntVar(&c.GRPC.Connections, "grpc-connections", 4, "gRPC round: HTTP/2 connections of the load, the same for every target")
	fs.IntVar(&c.GRPC.Calls, "grpc-calls", 32, "gRPC round: calls in flight, spread over the connections")
	fs.DurationVar(&c.GRPC.Duration, "grpc-duration", 10*time.Second, "gRPC round: length of each run")
	fs.BoolVar(&c.Baseline, "baseline", true, "also run wrk straight at one pod in every round: the ceiling of the load side")
	fs.StringVar(&c.JSONPath, "json", "", "also write the results as JSON to this file (durations in nanoseconds)")
	fs.StringVar(&c.Markdown, "markdown", "", "also write the result tables as Markdown to this file (for docs/BENCHMARKS.md)")
	fs.StringVar(&c.Profile, "profile", "", "after the rounds, write a CPU profile of bulkhead under the same load to this file (go tool pprof -top FILE)")
	fs.BoolVar(&c.Keep, "keep", false, "keep the working directory (configurations and proxy logs) and print its path")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c.Peers = strings.Split(*peerList, ",")
	return c, c.validate()
}

func (c config) validate() error {
	var errs []error
	known := make([]string, len(peers))
	for i, p := range peers {
		known[i] = p.Name
	}
	for _, name := range c.Peers {
		if !slices.Contains(known, name) {
			errs = append(errs, fmt.Errorf("-peers: unknown proxy %q (known: %s)", name, strings.Join(known, ", ")))
		}
	}
	if c.Rounds < 1 {
		errs = append(errs, errors.New("-rounds must be at least 1"))
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
		min  time.Duration
	}{{"-duration", c.Load.Duration, time.Second}, {"-warmup", c.Warmup, 0}} {
		if d.v < d.min || d.v%time.Second != 0 {
			errs = append(errs, fmt.Errorf("%s %s: wrk takes whole seconds, at least %s", d.flag, d.v, d.min))
		}
	}
	if c.Load.Connections < 1 || c.Load.Threads < 1 || c.Load.Threads > c.Load.Connections {
		errs = append(errs, errors.New("-connections and -threads must be positive, with no more threads than connections"))
	}
	if cpus := runtime.NumCPU(); c.ProxyCPU == c.Load.CPU || c.ProxyCPU < 0 || c.Load.CPU < 0 ||
		c.ProxyCPU >= cpus || c.Load.CPU >= cpus {
		errs = append(errs, fmt.Errorf("-proxy-cpu %d and -load-cpu %d must be two different CPUs of the %d this program may use",
			c.ProxyCPU, c.Load.CPU, cpus))
	}
	if c.Fault.Rate <= 0 || c.Fault.KillAfter <= 0 || c.Fault.Duration <= c.Fault.KillAfter {
		errs = append(errs, errors.New("-fault-rate must be positive and -fault-kill-after between 0 and -fault-duration"))
	}
	if !c.Throughput && !c.FaultRun && !c.GRPCRound {
		errs = append(errs, errors.New("-throughput=false, -fault=false and -grpc=false leave nothing to run"))
	}
	if c.GRPC.Connections < 1 || c.GRPC.Calls < c.GRPC.Connections || c.GRPC.Duration < time.Second {
		errs = append(errs, errors.New("-grpc-connections must be positive, -grpc-calls at least as many, -grpc-duration at least 1s"))
	}
	return errors.Join(errs...)
}

// selected reports whether -peers names the proxy.
func (c config) selected(name string) bool { return slices.Contains(c.Peers, name) }

// selectedPeers are the proxies of -peers, in the order of peers.
func (c config) selectedPeers() []peer {
	var out []peer
	for _, p := range peers {
		if slices.Contains(c.Peers, p.Name) {
			out = append(out, p)
		}
	}
	return out
}
