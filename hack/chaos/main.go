package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"syscall"
	"time"

	"github.com/bulkhead-router/bulkhead/chaos"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runPattern := fs.String("run", "", "run only the scenarios whose name matches this regular expression")
	short := fs.Bool("short", false, "run only the CI subset (a few fast scenarios, under 2 minutes)")
	list := fs.Bool("list", false, "list the scenarios, their bounds and the CI subset, and exit")
	outage := fs.Duration("outage", 10*time.Second, "how long a timed fault lasts (API server outage, flapping pod, held deletion)")
	rate := fs.Float64("rate", 50, "steady load in requests per second (POST streams run at half of it)")
	timeout := fs.Duration("timeout", 5*time.Minute, "bound on one scenario")
	workDir := fs.String("workdir", "", "directory for logs and state, one subdirectory per scenario, kept for failed scenarios; empty: a temporary one")
	keep := fs.Bool("keep", false, "keep the logs and state of scenarios that passed too")
	verbose := fs.Bool("v", false, "copy every scenario's own log (router, pods, control plane) to stderr")
	kubeconfig := fs.String("kubeconfig", "", "real-cluster mode: path of a kubeconfig (its current context)")
	namespace := fs.String("namespace", "", "real-cluster mode: namespace of the Deployment")
	deployment := fs.String("deployment", "echo", "real-cluster mode: the Deployment behind the Ingress")
	routerURL := fs.String("router-url", "", "real-cluster mode: where clients reach bulkhead, e.g. http://my-alb.example or http://NODE:8080")
	host := fs.String("host", "echo.example.com", "real-cluster mode: Host header the Ingress matches")
	path := fs.String("path", "/", "real-cluster mode: request path")
	settle := fs.Duration("settle", 5*time.Minute, "real-cluster mode: bound on each wait for the Deployment to recover")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "chaos: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var pattern *regexp.Regexp
	if *runPattern != "" {
		var err error
		if pattern, err = regexp.Compile(*runPattern); err != nil {
			fmt.Fprintf(stderr, "chaos: -run: %v\n", err)
			return 2
		}
	}
	if *outage <= 0 || *rate <= 0 || *timeout <= 0 || *settle <= 0 {
		fmt.Fprintln(stderr, "chaos: -outage, -rate, -timeout and -settle must be positive")
		return 2
	}
	var cluster *chaos.ClusterOptions
	if *kubeconfig != "" || *namespace != "" || *routerURL != "" {
		if *kubeconfig == "" || *namespace == "" || *routerURL == "" {
			fmt.Fprintln(stderr, "chaos: real-cluster mode needs -kubeconfig, -namespace and -router-url together")
			return 2
		}
		cluster = &chaos.ClusterOptions{Kubeconfig: *kubeconfig, Namespace: *namespace, Deployment: *deployment,
			RouterURL: *routerURL, Host: *host, Path: *path, Settle: *settle}
	}
	if *list {
		if cluster != nil {
			chaos.List(stdout, chaos.ClusterScenarios(*cluster))
		} else {
			chaos.List(stdout, chaos.LocalScenarios())
		}
		return 0
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	start := time.Now()
	outcomes, err := chaos.RunAll(ctx, chaos.Config{
		Run: pattern, Short: *short, Outage: *outage, Rate: *rate, Timeout: *timeout,
		WorkDir: *workDir, Keep: *keep, Cluster: cluster, Log: log, Verbose: *verbose,
	})
	if len(outcomes) > 0 {
		fmt.Fprintln(stdout)
		chaos.WriteTable(stdout, outcomes)
		fmt.Fprintln(stdout, chaos.Summary(outcomes, time.Since(start)))
	}
	if err != nil {
		fmt.Fprintf(stderr, "chaos: %v\n", err)
		return 1
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "chaos: interrupted")
		return 1
	}
	for _, o := range outcomes {
		if o.Verdict() == "FAIL" {
			return 1
		}
	}
	return 0
}
