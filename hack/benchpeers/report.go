package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// report is everything a run measured, and on what.
type report struct {
	Date       time.Time         `json:"date"`
	Took       time.Duration     `json:"took"`
	Machine    machine           `json:"machine"`
	Versions   map[string]string `json:"versions"`
	ProxyCPU   int               `json:"proxyCPU"`
	Load       wrkLoad           `json:"load"`
	Rounds     int               `json:"rounds"`
	Warmup     time.Duration     `json:"warmup"`
	Throughput []summary         `json:"throughput,omitempty"`
	Baseline   *summary          `json:"baseline,omitempty"`
	FaultLoad  faultLoad         `json:"faultLoad"`
	Fault      []faultResult     `json:"fault,omitempty"`
	// The gRPC round (grpc.go): its load, the proxies and one pod
	// directly; "req/s" there is OK calls per second, "errors" failed
	// calls.
	GRPCLoad     grpcLoad  `json:"grpcLoad"`
	GRPC         []summary `json:"grpc,omitempty"`
	GRPCBaseline *summary  `json:"grpcBaseline,omitempty"`
}

type machine struct {
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpuModel"`
	Kernel     string `json:"kernel"`
	LoadBefore string `json:"loadAverageBefore"`
	LoadAfter  string `json:"loadAverageAfter"`
}

// readMachine describes the host. It runs before this program pins itself,
// so NumCPU still counts every CPU it may use.
func readMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), LoadBefore: loadAverage()}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// loadAverage is the 1, 5 and 15 minute load of the machine: other work
// on a shared machine shows here.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f us", float64(d)/float64(time.Microsecond)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func ratioText(r *float64) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", *r)
}

// write prints the tables to w and, if asked, the JSON and Markdown files.
func (r report) write(w io.Writer, cfg config) error {
	r.writeText(w)
	if cfg.JSONPath != "" {
		data, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(cfg.JSONPath, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	if cfg.Markdown != "" {
		var b strings.Builder
		r.writeMarkdown(&b)
		if err := os.WriteFile(cfg.Markdown, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (r report) header() []string {
	names := make([]string, 0, len(r.Versions))
	for n := range r.Versions {
		names = append(names, n)
	}
	sort.Strings(names)
	var vs []string
	for _, n := range names {
		vs = append(vs, n+" "+r.Versions[n])
	}
	return []string{
		fmt.Sprintf("machine: %d CPUs (%s), kernel %s; load average %s before, %s after",
			r.Machine.CPUs, r.Machine.CPUModel, r.Machine.Kernel, r.Machine.LoadBefore, r.Machine.LoadAfter),
		"versions: " + strings.Join(vs, "; "),
		fmt.Sprintf("pinning: proxy under test alone on CPU %d (one worker/thread/P); wrk, pods, control plane on CPU %d",
			r.ProxyCPU, r.Load.CPU),
		fmt.Sprintf("run took %s", r.Took),
	}
}

func (r report) throughputTitle() string {
	return fmt.Sprintf("throughput: %s, %d interleaved rounds (order rotated), warm-up %s; medians across rounds",
		r.Load, r.Rounds, r.Warmup)
}

func (r report) throughputRows() [][]string { return summaryRows("req/s", r.Throughput, r.Baseline) }

func (r report) grpcTitle() string {
	return fmt.Sprintf("gRPC round: %s, %d interleaved rounds (order rotated), warm-up %s; medians across rounds",
		r.GRPCLoad, r.Rounds, r.Warmup)
}

func (r report) grpcRows() [][]string { return summaryRows("calls/s", r.GRPC, r.GRPCBaseline) }

// summaryRows is a throughput table: the proxies, then the baseline.
func summaryRows(unit string, proxies []summary, baseline *summary) [][]string {
	rows := [][]string{{"proxy", unit, unit + " range", "p50", "p99", unit + " vs bulkhead", "p99 vs bulkhead", unit + " log on/off",
		"proxy CPU per call", "CPU per call log on/off", "errors", "proxy CPU busy", "load CPU busy", "steal"}}
	add := func(s summary) {
		cpu := "-"
		if s.CPUPerRequest > 0 {
			cpu = us(s.CPUPerRequest)
		}
		rows = append(rows, []string{s.Name, fmt.Sprintf("%.0f", s.RPS), fmt.Sprintf("%.0f-%.0f", s.RPSMin, s.RPSMax),
			ms(s.P50), ms(s.P99), ratioText(s.RPSRatio), ratioText(s.P99Ratio), ratioText(s.LogRatio),
			cpu, ratioText(s.LogCPURatio), fmt.Sprint(s.Errors),
			fmt.Sprintf("%.0f%%", s.CPU.Proxy), fmt.Sprintf("%.0f%%", s.CPU.Load), fmt.Sprintf("%.1f%%", s.CPU.Steal)})
	}
	for _, s := range proxies {
		add(s)
	}
	if baseline != nil {
		add(*baseline)
	}
	return rows
}

// accessLogRows are the log-on proxies' files: as many lines as requests
// (or more: the start checks), so no figure is flattered by lost lines.
func (r report) accessLogRows() [][]string {
	rows := [][]string{{"proxy", "lines in its file", "requests wrk completed", "bytes per line", "dropped (metric)"}}
	for _, s := range r.Throughput {
		if c := s.AccessLog; c != nil {
			dropped := "-"
			if c.Dropped != nil {
				dropped = fmt.Sprintf("%.0f", *c.Dropped)
			}
			rows = append(rows, []string{s.Name, fmt.Sprint(c.Lines), fmt.Sprint(c.Requests),
				fmt.Sprintf("%.0f", float64(c.Bytes)/float64(max(c.Lines, 1))), dropped})
		}
	}
	if len(rows) == 1 {
		return nil
	}
	return rows
}

const accessLogTitle = "access logs: each log-on proxy's file after the rounds (every request logged, warm-up included)"

func (r report) faultTitle() string {
	return "fault run: " + r.FaultLoad.String() + "; each proxy fresh, in front of two fresh pods"
}

func (r report) faultRows() [][]string {
	rows := [][]string{{"proxy", "sent", "ok", "failed", "failed by status / error", "p99", "max"}}
	for _, f := range r.Fault {
		rows = append(rows, []string{f.Name, fmt.Sprint(f.Sent), fmt.Sprint(f.OK), fmt.Sprint(f.Failed), f.Failures(), ms(f.P99), ms(f.Max)})
	}
	return rows
}

func (r report) writeText(w io.Writer) {
	for _, line := range r.header() {
		fmt.Fprintln(w, line)
	}
	table := func(title string, rows [][]string) {
		fmt.Fprintf(w, "\n%s\n", title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, row := range rows {
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		tw.Flush()
	}
	if len(r.Throughput) > 0 {
		table(r.throughputTitle(), r.throughputRows())
		if rows := r.accessLogRows(); rows != nil {
			table(accessLogTitle, rows)
		}
	}
	if len(r.Fault) > 0 {
		table(r.faultTitle(), r.faultRows())
	}
	if len(r.GRPC) > 0 {
		table(r.grpcTitle(), r.grpcRows())
	}
}

func (r report) writeMarkdown(w io.Writer) {
	for _, line := range r.header() {
		fmt.Fprintf(w, "- %s\n", line)
	}
	table := func(title string, rows [][]string) {
		fmt.Fprintf(w, "\n%s\n\n", title)
		for i, row := range rows {
			fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
			if i == 0 {
				fmt.Fprintf(w, "|%s\n", strings.Repeat(" --- |", len(row)))
			}
		}
	}
	if len(r.Throughput) > 0 {
		table(r.throughputTitle(), r.throughputRows())
		if rows := r.accessLogRows(); rows != nil {
			table(accessLogTitle, rows)
		}
	}
	if len(r.Fault) > 0 {
		table(r.faultTitle(), r.faultRows())
	}
	if len(r.GRPC) > 0 {
		table(r.grpcTitle(), r.grpcRows())
	}
}
