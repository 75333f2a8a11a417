package chaos

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints one row per load stream of every outcome: requests
// sent, failed (by status or error kind), p50, p99 and max latency, and the
// verdict; then each scenario's bound, notes and failures.
func WriteTable(w io.Writer, outcomes []*Outcome) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tLOAD\tSENT\tFAILED\tFAILED BY\tP50\tP99\tMAX\tRESULT")
	for _, o := range outcomes {
		if len(o.Loads) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t%s\n", o.Scenario, o.Verdict())
			continue
		}
		for i, l := range o.Loads {
			name, verdict := o.Scenario, o.Verdict()
			if i > 0 {
				name, verdict = "", ""
			}
			by := failedBy(l.Result)
			if by == "" {
				by = "-"
			}
			load := l.Method
			if l.Path != "/" {
				load += " " + l.Path
			}
			fmt.Fprintf(tw, "%s\t%s %g/s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", name, load, l.Rate, l.Sent, l.Failed, by,
				ms(l.percentile(50)), ms(l.percentile(99)), ms(l.percentile(100)), verdict)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, o := range outcomes {
		WriteDetails(w, o)
	}
}

// WriteDetails prints a scenario's verdict, bound, notes and failures.
func WriteDetails(w io.Writer, o *Outcome) {
	if o.Skipped != "" {
		fmt.Fprintf(w, "%s: SKIP: %s\n", o.Scenario, o.Skipped)
		return
	}
	fmt.Fprintf(w, "%s: %s in %s; bound: %s\n", o.Scenario, o.Verdict(), o.Took.Round(100*time.Millisecond), o.Bound)
	if o.Probes > 0 {
		fmt.Fprintf(w, "    readiness: %d probes, %d not 200\n", o.Probes, o.Unready)
	}
	for _, n := range o.Notes {
		fmt.Fprintf(w, "    %s\n", n)
	}
	for _, l := range o.Loads {
		for kind, first := range l.First {
			fmt.Fprintf(w, "    %s: first %s error: %s\n", l.Method, kind, first)
		}
	}
	for _, f := range o.Failures {
		fmt.Fprintf(w, "    FAILED: %s\n", strings.ReplaceAll(f, "\n", "\n      "))
	}
}

// Summary is one line: counts and wall time.
func Summary(outcomes []*Outcome, took time.Duration) string {
	var passed, failed, skipped int
	for _, o := range outcomes {
		switch o.Verdict() {
		case "PASS":
			passed++
		case "FAIL":
			failed++
		default:
			skipped++
		}
	}
	return fmt.Sprintf("%d scenarios: %d passed, %d failed, %d skipped; wall time %s",
		len(outcomes), passed, failed, skipped, took.Round(time.Second))
}

// ms formats a latency in milliseconds with useful precision.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0fms", v)
	case v >= 10:
		return fmt.Sprintf("%.1fms", v)
	default:
		return fmt.Sprintf("%.2fms", v)
	}
}
