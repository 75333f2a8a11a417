package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	"github.com/bulkhead-router/bulkhead/internal/testpods"
)

// Config is what a command asks RunAll for.
type Config struct {
	// Run selects scenarios by name. Nil: all.
	Run *regexp.Regexp
	// Short selects the CI subset only.
	Short bool
	// Outage and Rate go to every environment (see Common).
	Outage time.Duration
	Rate   float64
	// Timeout bounds one scenario. Zero: 5 min.
	Timeout time.Duration
	// WorkDir keeps logs, control plane data and router state, one
	// directory per scenario; a scenario's directory is removed when it
	// passed, unless Keep. Empty: a temporary directory, removed when every
	// scenario passed, unless Keep.
	WorkDir string
	Keep    bool
	// Cluster, when set, runs the scenarios against a real cluster.
	Cluster *ClusterOptions
	// Log receives progress; Verbose also copies every scenario's own log
	// (router, pods, control plane) to it.
	Log     *slog.Logger
	Verbose bool
}

// Select returns the scenarios a name pattern and the short flag pick, in
// their order.
func Select[E Env](all []Scenario[E], run *regexp.Regexp, short bool) []Scenario[E] {
	var out []Scenario[E]
	for _, s := range all {
		if short && !s.Short {
			continue
		}
		if run != nil && !run.MatchString(s.Name) {
			continue
		}
		out = append(out, s)
	}
	return out
}

// RunAll runs the selected scenarios one after another, each in its own
// environment, and returns their outcomes.
func RunAll(ctx context.Context, cfg Config) ([]*Outcome, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	removeWork := false
	if cfg.WorkDir == "" {
		dir, err := os.MkdirTemp("", "bulkhead-chaos-")
		if err != nil {
			return nil, err
		}
		cfg.WorkDir, removeWork = dir, !cfg.Keep
	}

	var outcomes []*Outcome
	var err error
	if cfg.Cluster != nil {
		o := *cfg.Cluster
		o.Rate, o.Log = cfg.Rate, cfg.Log
		outcomes, err = runEach(ctx, cfg, Select(ClusterScenarios(o), cfg.Run, cfg.Short), NewCluster(o))
	} else {
		if err := testpods.CheckPreconditions(testpods.Options{}); err != nil {
			return nil, err
		}
		cfg.Log.Info("control plane binaries (built once, then cached)")
		bins, err := controlplane.EnsureBinaries(ctx, progressWriter{cfg.Log})
		if err != nil {
			return nil, err
		}
		newEnv := NewLocal(LocalOptions{Binaries: bins, Outage: cfg.Outage, Rate: cfg.Rate, Log: cfg.Log})
		outcomes, err = runEach(ctx, cfg, Select(LocalScenarios(), cfg.Run, cfg.Short), newEnv)
	}
	if err != nil {
		return outcomes, err
	}
	allPassed := !slices.ContainsFunc(outcomes, func(o *Outcome) bool { return o.Verdict() == "FAIL" })
	if removeWork && allPassed {
		os.RemoveAll(cfg.WorkDir)
	} else {
		cfg.Log.Info("logs and state kept", "dir", cfg.WorkDir)
	}
	return outcomes, nil
}

func runEach[E Env](ctx context.Context, cfg Config, scenarios []Scenario[E], newEnv func(testing.TB) (E, error)) ([]*Outcome, error) {
	if len(scenarios) == 0 {
		return nil, errors.New("no scenario matches")
	}
	var outcomes []*Outcome
	for _, s := range scenarios {
		if ctx.Err() != nil {
			break
		}
		o := &Outcome{}
		outcomes = append(outcomes, o)
		if s.Skip != "" {
			Run(nil, s, newEnv, o)
			cfg.Log.Info("skipped", "scenario", s.Name, "reason", s.Skip)
			continue
		}
		dir := filepath.Join(cfg.WorkDir, s.Name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return outcomes, err
		}
		logPath := filepath.Join(dir, "scenario.log")
		logFile, err := os.Create(logPath)
		if err != nil {
			return outcomes, err
		}
		var out io.Writer = logFile
		if cfg.Verbose {
			out = io.MultiWriter(logFile, os.Stderr)
		}
		cfg.Log.Info("running", "scenario", s.Name, "summary", s.Summary)
		t := runCommandT(ctx, s.Name, dir, out, cfg.Timeout, func(t testing.TB) { Run(t, s, newEnv, o) })
		logFile.Close()
		for _, f := range t.fatals {
			if !slices.Contains(o.Failures, f) {
				o.Failures = append([]string{f}, o.Failures...)
			}
		}
		if o.Skipped != "" {
			o.Skipped += ": " + logPath
		}
		if o.Verdict() == "FAIL" {
			o.Failures = slices.DeleteFunc(o.Failures, func(f string) bool { return f == "a step failed (see the log)" })
			o.Failures = append(o.Failures, "log: "+logPath)
		}
		cfg.Log.Info(o.Verdict(), "scenario", s.Name, "sent", o.Sent(), "failed", o.Failed(), "took", o.Took.Round(100*time.Millisecond))
		if o.Verdict() != "FAIL" && !cfg.Keep {
			// etcd's data alone is over 100 MB; keep only what explains a failure.
			os.RemoveAll(dir)
		}
	}
	return outcomes, nil
}

// progressWriter turns build progress lines into log lines.
type progressWriter struct{ log *slog.Logger }

func (w progressWriter) Write(p []byte) (int, error) {
	for line := range strings.SplitSeq(strings.TrimSpace(string(p)), "\n") {
		if line != "" {
			w.log.Info(line)
		}
	}
	return len(p), nil
}

// List prints the scenarios with their CI flag, summary and bound.
func List[E Env](w io.Writer, scenarios []Scenario[E]) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tSHORT\tWHAT HAPPENS\tBOUND")
	for _, s := range scenarios {
		short := ""
		if s.Short {
			short = "yes"
		}
		bound := s.Bound
		if s.Skip != "" {
			bound = "skipped: " + s.Skip
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, short, s.Summary, bound)
	}
	tw.Flush()
}
