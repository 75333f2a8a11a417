package main

import (
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zalando/skipper/eskip"
)

// wrkOutput is wrk 4.1's report with --latency, from a run with errors.
const wrkOutput = `Running 10s test @ http://127.0.0.1:18080/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.72ms    5.01ms  70.52ms   95.12%
    Req/Sec     9.21k   512.33    10.01k    71.00%
  Latency Distribution
     50%    3.21ms
     75%    3.90ms
     90%  812.00us
     99%    1.07s
  91584 requests in 10.00s, 71.37MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:   9158.04
Transfer/sec:      7.14MB
`

func TestParseWrk(t *testing.T) {
	got, err := parseWrk(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{
		Requests: 91584, RPS: 9158.04,
		P50: 3210 * time.Microsecond, P75: 3900 * time.Microsecond, P90: 812 * time.Microsecond, P99: 1070 * time.Millisecond,
		SocketErrors: 5, Non2xx: 7,
	}
	if got != want {
		t.Errorf("parseWrk:\n got %+v\nwant %+v", got, want)
	}
	if got.Errors() != 12 {
		t.Errorf("Errors() = %d, want 12", got.Errors())
	}
}

func TestParseWrkWithoutErrorLines(t *testing.T) {
	var clean []string
	for line := range strings.Lines(wrkOutput) {
		if !strings.Contains(line, "errors") && !strings.Contains(line, "Non-2xx") {
			clean = append(clean, line)
		}
	}
	got, err := parseWrk(strings.Join(clean, ""))
	if err != nil {
		t.Fatal(err)
	}
	if got.Errors() != 0 || got.RPS != 9158.04 {
		t.Errorf("got %+v, want no errors at 9158.04 req/s", got)
	}
}

func TestParseWrkRejectsIncompleteOutput(t *testing.T) {
	for name, out := range map[string]string{
		"no --latency": strings.Split(wrkOutput, "  Latency Distribution")[0] + "Requests/sec:   9158.04\n  91584 requests in 10.00s, 71.37MB read\n",
		"no rate":      strings.Split(wrkOutput, "Requests/sec")[0],
		"failed run":   "unable to connect to 127.0.0.1:1 Connection refused\n",
	} {
		if _, err := parseWrk(out); err == nil {
			t.Errorf("%s: parseWrk accepted it", name)
		}
	}
}

func TestWrkArgs(t *testing.T) {
	l := wrkLoad{Threads: 1, Connections: 32, Duration: 10 * time.Second, CPU: 1}
	got := l.args(10*time.Second, "http://127.0.0.1:1/", "bench.example")
	want := []string{"-t", "1", "-c", "32", "-d", "10s", "--latency", "-H", "Host: bench.example", "http://127.0.0.1:1/"}
	if !slices.Equal(got, want) {
		t.Errorf("args = %q, want %q", got, want)
	}
	if s := l.String(); s != "wrk -t1 -c32 -d10s --latency" {
		t.Errorf("String() = %q", s)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{7}, 7},
		{[]float64{9, 1, 5}, 5},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	in := []float64{3, 1, 2}
	median(in)
	if !slices.Equal(in, []float64{3, 1, 2}) {
		t.Errorf("median reordered its input: %v", in)
	}
}

func TestRotationPutsEveryTargetInEveryPosition(t *testing.T) {
	targets := []string{"a", "b", "c", "d"}
	first := map[string]bool{}
	for r := range len(targets) {
		order := rotation(targets, r)
		if got := slices.Sorted(slices.Values(order)); !slices.Equal(got, targets) {
			t.Fatalf("round %d: %v is not a permutation of %v", r, order, targets)
		}
		first[order[0]] = true
	}
	if len(first) != len(targets) {
		t.Errorf("over %d rounds only %v went first", len(targets), first)
	}
	if got := rotation(targets, 5); !slices.Equal(got, []string{"b", "c", "d", "a"}) {
		t.Errorf("round 5: %v", got)
	}
}

func TestSummarizeAndRatios(t *testing.T) {
	ms := time.Millisecond
	bulkhead := summarize("bulkhead", []wrkResult{
		{RPS: 1000, P50: 2 * ms, P99: 10 * ms},
		{RPS: 1200, P50: 3 * ms, P99: 30 * ms, Non2xx: 1},
		{RPS: 1100, P50: 1 * ms, P99: 20 * ms, SocketErrors: 2},
	})
	if bulkhead.RPS != 1100 || bulkhead.RPSMin != 1000 || bulkhead.RPSMax != 1200 ||
		bulkhead.P50 != 2*ms || bulkhead.P99 != 20*ms || bulkhead.Errors != 3 {
		t.Errorf("summary %+v", bulkhead)
	}
	nginx := summarize("nginx", []wrkResult{{RPS: 2200, P99: 10 * ms}})
	proxies := []summary{bulkhead, nginx}
	setRatios(proxies, bulkhead)
	if r := proxies[0].RPSRatio; r == nil || *r != 1 {
		t.Errorf("bulkhead's own ratio: %v", r)
	}
	if r := proxies[1].RPSRatio; r == nil || *r != 2 {
		t.Errorf("nginx req/s ratio %v, want 2", r)
	}
	if r := proxies[1].P99Ratio; r == nil || *r != 0.5 {
		t.Errorf("nginx p99 ratio %v, want 0.5", r)
	}
	if r := ratio(5, 0); r != nil {
		t.Errorf("ratio to zero = %v, want nil", *r)
	}
	if s := summarize("none", nil); s.RPS != 0 || s.Errors != 0 {
		t.Errorf("empty summary %+v", s)
	}
}

func TestCPUUse(t *testing.T) {
	before, err := parseProcStat("cpu  2 0 2 10 0 0 0 0 0 0\ncpu0 1 0 1 5 0 0 0 0 0 0\ncpu1 1 0 1 5 0 0 0 0 0 0\nintr 1 2 3\n")
	if err != nil {
		t.Fatal(err)
	}
	// CPU 0: 90 busy (user, system, softirq) of 100; CPU 1: 20 busy, 10
	// iowait, 10 stolen.
	after, err := parseProcStat("cpu0 61 0 21 15 0 0 10 0 0 0\ncpu1 11 0 11 65 10 0 0 10 0 0\n")
	if err != nil {
		t.Fatal(err)
	}
	got := cpuUseBetween(before, after, 0, 1)
	want := cpuUse{Proxy: 90, Load: 20, Steal: 5}
	if got != want {
		t.Errorf("cpuUseBetween = %+v, want %+v", got, want)
	}
	if _, err := parseProcStat("intr 1 2 3\n"); err == nil {
		t.Error("parseProcStat accepted a file without CPU lines")
	}
}

func TestFailures(t *testing.T) {
	f := faultResult{ByStatus: map[int]int{503: 2, 502: 12}, ByError: map[string]int{"connection reset": 1}}
	if got := f.Failures(); got != "502: 12, 503: 2, connection reset: 1" {
		t.Errorf("Failures() = %q", got)
	}
	if got := (faultResult{}).Failures(); got != "-" {
		t.Errorf("no failures: %q", got)
	}
}

func TestConfigValidation(t *testing.T) {
	if _, err := parseConfig(nil, io.Discard); err != nil && !strings.Contains(err.Error(), "CPU") {
		t.Errorf("defaults rejected: %v", err) // a one-CPU test machine may reject the CPUs only
	}
	for _, args := range [][]string{
		{"-peers", "bulkhead,envoy"},
		{"-duration", "1500ms"},
		{"-rounds", "0"},
		{"-proxy-cpu", "1", "-load-cpu", "1"},
		{"-fault-kill-after", "20s"},
		{"-throughput=false", "-fault=false", "-grpc=false"},
		{"-grpc-connections", "8", "-grpc-calls", "4"},
	} {
		if _, err := parseConfig(args, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

func testData(t *testing.T) configData {
	return configData{Dir: t.TempDir(), Listen: "127.0.0.1:18080", Backends: []string{"10.213.7.2:8080", "10.213.7.3:8080"}}
}

func TestTemplatesNameBothBackends(t *testing.T) {
	data := testData(t)
	for _, name := range []string{"nginx.conf.tmpl", "haproxy.cfg.tmpl", "routes.eskip.tmpl", "nginx-grpc.conf.tmpl", "haproxy-grpc.cfg.tmpl"} {
		out, err := renderConfig(name, data)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range data.Backends {
			if !strings.Contains(string(out), b) {
				t.Errorf("%s does not name backend %s:\n%s", name, b, out)
			}
		}
	}
}

func TestSkipperRoutesParse(t *testing.T) {
	out, err := renderConfig("routes.eskip.tmpl", testData(t))
	if err != nil {
		t.Fatal(err)
	}
	routes, err := eskip.Parse(string(out))
	if err != nil {
		t.Fatalf("skipper rejects the routes: %v\n%s", err, out)
	}
	if len(routes) != 1 || routes[0].BackendType != eskip.LBBackend || len(routes[0].LBEndpoints) != 2 {
		t.Errorf("want one load-balanced route to two endpoints, got %v", routes)
	}
}

// The peers themselves check their configurations, where installed
// (hack/install-deps.sh bench); the check starts nothing.
func TestPeersAcceptTheirConfigurations(t *testing.T) {
	data := testData(t)
	logOn := data
	logOn.AccessLog = filepath.Join(data.Dir, accessLogFile)
	for _, c := range []struct {
		program, tmpl string
		args          func(path string) []string
		accessLog     bool
	}{
		{"nginx", "nginx.conf.tmpl", func(path string) []string {
			return []string{"-t", "-q", "-p", data.Dir, "-e", filepath.Join(data.Dir, "error.log"), "-c", path}
		}, false},
		{"nginx", "nginx.conf.tmpl", func(path string) []string {
			return []string{"-t", "-q", "-p", data.Dir, "-e", filepath.Join(data.Dir, "error.log"), "-c", path}
		}, true},
		{"haproxy", "haproxy.cfg.tmpl", func(path string) []string { return []string{"-c", "-q", "-f", path} }, false},
		{"nginx", "nginx-grpc.conf.tmpl", func(path string) []string {
			return []string{"-t", "-q", "-p", data.Dir, "-e", filepath.Join(data.Dir, "error.log"), "-c", path}
		}, false},
		{"haproxy", "haproxy-grpc.cfg.tmpl", func(path string) []string { return []string{"-c", "-q", "-f", path} }, false},
	} {
		name := c.tmpl
		if c.accessLog {
			name += logSuffix
		}
		t.Run(name, func(t *testing.T) {
			bin, err := exec.LookPath(c.program)
			if err != nil {
				// make test installs both (hack/install-deps.sh peers); in
				// CI their absence is a failure, elsewhere a skip.
				if os.Getenv("CI") == "true" {
					t.Fatalf("%s not installed: %v (hack/install-deps.sh peers)", c.program, err)
				}
				t.Skipf("%s not installed (hack/install-deps.sh peers)", c.program)
			}
			d := data
			if c.accessLog {
				d = logOn
			}
			out, err := renderConfig(c.tmpl, d)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(out), "access_log off;"); c.tmpl == "nginx.conf.tmpl" && got == c.accessLog {
				t.Errorf("access log on: %v, but access_log off in the configuration: %v", c.accessLog, got)
			}
			path := filepath.Join(data.Dir, name+".conf")
			if err := os.WriteFile(path, out, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(bin, c.args(path)...).CombinedOutput(); err != nil {
				t.Errorf("%s rejects its configuration: %v\n%s", c.program, err, out)
			}
		})
	}
}

// TestLogRatios: a log-on proxy's rate is divided by the same proxy's
// with the log off; proxies without a log-off twin get none.
func TestLogRatios(t *testing.T) {
	// Round by round: the machine got slower in round 3, for both.
	round := func(rps float64) wrkResult {
		return wrkResult{RPS: rps, Requests: int64(rps), ProxyCPU: time.Second}
	}
	off := []wrkResult{round(10000), round(10000), round(4000)}
	on := []wrkResult{round(9300), round(9400), round(3700)}
	proxies := []summary{summarize("bulkhead", off), summarize("bulkhead+log", on), {Name: "haproxy", RPS: 12000},
		{Name: "skipper+log", RPS: 5000}}
	setLogRatios(proxies, peers)
	// Ratios per round 0.93, 0.94, 0.925: median 0.93. (The medians'
	// ratio, 9300/10000, would be the same here; with the load changing
	// between rounds it is not.) CPU per request is 1/rps: its ratios are
	// the inverses.
	if r := proxies[1].LogRatio; r == nil || *r != 0.93 {
		t.Errorf("bulkhead+log: ratio %v, want 0.93", r)
	}
	if r := proxies[1].LogCPURatio; r == nil || math.Abs(*r-10000.0/9300) > 1e-4 {
		t.Errorf("bulkhead+log: CPU ratio %s, want %v", ratioText(r), 10000.0/9300)
	}
	for _, i := range []int{0, 2, 3} { // log off, or its log-off twin did not run
		if proxies[i].LogRatio != nil {
			t.Errorf("%s: ratio %v, want none", proxies[i].Name, *proxies[i].LogRatio)
		}
	}
	rows := summaryRows("req/s", proxies, nil)
	if rows[0][7] != "req/s log on/off" || rows[2][7] != "0.93" || rows[1][7] != "-" {
		t.Errorf("table: %q", rows)
	}
}

func TestParsePidStat(t *testing.T) {
	// comm with a space and a parenthesis, as a process may name itself.
	line := "4242 (nginx: wor) er) S 4240 4240 4240 0 -1 4194624 800 0 0 0 1234 567 0 0 20 0 1 0 100 0 0\n"
	pgrp, ticks, ok := parsePidStat(line)
	if !ok || pgrp != 4240 || ticks != 1234+567 {
		t.Errorf("got pgrp %d ticks %d ok %v", pgrp, ticks, ok)
	}
	if _, _, ok := parsePidStat("4242 (short) S 1 2"); ok {
		t.Error("a truncated line was accepted")
	}
}

// TestGroupCPU: this test's own process group has used CPU, and more
// after a busy loop of a few clock ticks.
func TestGroupCPU(t *testing.T) {
	pgid := syscall.Getpgrp()
	before, err := groupCPU(pgid)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		after, err := groupCPU(pgid)
		if err != nil {
			t.Fatal(err)
		}
		if after >= before+3*clockTick {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process group %d: CPU %s then %s after spinning", pgid, before, after)
		}
		for i := 0; i < 1e6; i++ { // spin: CPU time to be counted
			_ = i * i
		}
	}
}
