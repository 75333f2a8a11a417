package main

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what one wrk run measured.
type wrkResult struct {
	Requests int64         `json:"requests"`
	RPS      float64       `json:"rps"`
	P50      time.Duration `json:"p50"`
	P75      time.Duration `json:"p75"`
	P90      time.Duration `json:"p90"`
	P99      time.Duration `json:"p99"`
	// SocketErrors sums wrk's connect, read, write and timeout errors.
	SocketErrors int64 `json:"socketErrors"`
	// Non2xx counts answers outside 2xx/3xx. A proxy answering errors
	// fast would look quick, so errors are reported next to the rates.
	Non2xx int64 `json:"non2xx"`
	// CPU is how busy each CPU was while wrk ran.
	CPU cpuUse `json:"cpu"`
	// ProxyCPU is the CPU time the proxy's processes used during the
	// run (zero for the pod measured directly).
	ProxyCPU time.Duration `json:"proxyCPUTime"`
}

// CPUPerRequest is the proxy's CPU time per request completed.
func (r wrkResult) CPUPerRequest() time.Duration {
	if r.Requests == 0 {
		return 0
	}
	return r.ProxyCPU / time.Duration(r.Requests)
}

// Errors is every request that did not get a 2xx or 3xx answer.
func (r wrkResult) Errors() int64 { return r.SocketErrors + r.Non2xx }

// wrkLoad is the shape of the throughput load, the same for every target.
type wrkLoad struct {
	Threads     int           `json:"threads"`
	Connections int           `json:"connections"`
	Duration    time.Duration `json:"duration"`
	CPU         int           `json:"cpu"`
}

// args is wrk's command line for url with the given Host header. wrk takes
// whole seconds; the configuration is validated to hold whole seconds.
func (l wrkLoad) args(d time.Duration, url, host string) []string {
	return []string{
		"-t", strconv.Itoa(l.Threads), "-c", strconv.Itoa(l.Connections),
		"-d", strconv.Itoa(int(d/time.Second)) + "s", "--latency",
		"-H", "Host: " + host, url,
	}
}

// String is the command line as a reader would type it.
func (l wrkLoad) String() string {
	return fmt.Sprintf("wrk -t%d -c%d -d%ds --latency", l.Threads, l.Connections, int(l.Duration/time.Second))
}

// runWrk runs wrk for d against url, pinned to the load CPU, and samples
// how busy the proxy and load CPUs were meanwhile.
func runWrk(ctx context.Context, l wrkLoad, proxyCPU int, d time.Duration, url, host string) (wrkResult, error) {
	args := append([]string{"-c", strconv.Itoa(l.CPU), "wrk"}, l.args(d, url, host)...)
	cmd := exec.CommandContext(ctx, "taskset", args...)
	before, err := readProcStat()
	if err != nil {
		return wrkResult{}, err
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s", url, err, out)
	}
	after, err := readProcStat()
	if err != nil {
		return wrkResult{}, err
	}
	r, err := parseWrk(string(out))
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w", url, err)
	}
	r.CPU = cpuUseBetween(before, after, proxyCPU, l.CPU)
	return r, nil
}

var (
	wrkRPS       = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)\s*$`)
	wrkRequests  = regexp.MustCompile(`(?m)^\s*([0-9]+) requests in `)
	wrkPercent   = regexp.MustCompile(`(?m)^\s+(50|75|90|99)%\s+([0-9.]+)(us|ms|s|m|h)\s*$`)
	wrkSocket    = regexp.MustCompile(`(?m)^\s*Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)\s*$`)
	wrkNon2xx    = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses: ([0-9]+)\s*$`)
	wrkTimeUnits = map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}
)

// parseWrk reads the report wrk prints with --latency. The rate, the
// request count and the 50th and 99th percentiles must be there; the error
// lines only appear when there were errors.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec line in wrk output:\n%s", out)
	}
	var err error
	if r.RPS, err = strconv.ParseFloat(m[1], 64); err != nil {
		return r, fmt.Errorf("wrk Requests/sec %q: %w", m[1], err)
	}
	m = wrkRequests.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no request count in wrk output:\n%s", out)
	}
	r.Requests, _ = strconv.ParseInt(m[1], 10, 64) // the pattern admits digits only
	for _, m := range wrkPercent.FindAllStringSubmatch(out, -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return r, fmt.Errorf("wrk latency %q: %w", m[2]+m[3], err)
		}
		d := time.Duration(v * float64(wrkTimeUnits[m[3]]))
		switch m[1] {
		case "50":
			r.P50 = d
		case "75":
			r.P75 = d
		case "90":
			r.P90 = d
		case "99":
			r.P99 = d
		}
	}
	if r.P50 == 0 || r.P99 == 0 {
		return r, fmt.Errorf("no latency distribution in wrk output (was --latency given?):\n%s", out)
	}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.SocketErrors += n
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return r, nil
}

// wrkVersion is the version in the first line of `wrk -v` ("wrk
// debian/4.1.0-3+b2 [epoll] Copyright ..."); wrk exits non-zero by design.
func wrkVersion(ctx context.Context) string {
	out, _ := exec.CommandContext(ctx, "wrk", "-v").CombinedOutput()
	line, _, _ := strings.Cut(string(out), "\n")
	line, _, _ = strings.Cut(line, " Copyright")
	return strings.TrimSpace(strings.TrimPrefix(line, "wrk "))
}
