package main

import (
	"context"
	"fmt"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/loadgen"
)

// faultLoad is the shape of the fault run: open-loop GETs at a fixed rate
// (a failed request is counted, never retried by the client), one pod
// SIGKILLed once KillAfter's share of the requests has been sent.
type faultLoad struct {
	Rate      float64       `json:"rate"`
	Duration  time.Duration `json:"duration"`
	KillAfter time.Duration `json:"killAfter"`
}

func (f faultLoad) String() string {
	return fmt.Sprintf("%.0f GET/s for %s, open loop; one pod SIGKILLed after %s", f.Rate, f.Duration, f.KillAfter)
}

// faultResult is what one proxy's clients saw while a pod died.
type faultResult struct {
	Name     string         `json:"name"`
	Sent     int            `json:"sent"`
	OK       int            `json:"ok"`
	Failed   int            `json:"failed"`
	ByStatus map[int]int    `json:"byStatus,omitempty"`
	ByError  map[string]int `json:"byError,omitempty"`
	P99      time.Duration  `json:"p99"`
	Max      time.Duration  `json:"max"`
}

// Failures lists the failed requests by status, then by error kind, e.g.
// "502: 12, connection reset: 1"; "-" for none.
func (f faultResult) Failures() string {
	if b := loadgen.Breakdown(f.ByStatus, f.ByError); b != "" {
		return b
	}
	return "-"
}

func faultResultOf(name string, r *loadgen.Result) faultResult {
	return faultResult{Name: name, Sent: r.Sent, OK: r.OK, Failed: r.Failed,
		ByStatus: r.ByStatus, ByError: r.ByError, P99: r.Percentile(99), Max: r.Max()}
}

// faultRun puts steady load through a freshly started proxy in front of
// two fresh pods and SIGKILLs one pod mid-run. Nobody tells any proxy: the
// peers' configurations keep listing the dead pod, and so does bulkhead's
// EndpointSlice (a real endpoint controller lags too). Each proxy must
// notice by itself, with its own retries and health checks.
func (h *harness) faultRun(ctx context.Context, p peer) (faultResult, error) {
	up, err := startUpstream(ctx, h.pods, h.client, "fault", p.Name, p.Name+".fault.example")
	if err != nil {
		return faultResult{}, err
	}
	defer func() {
		for _, pod := range up.Pods {
			pod.Kill()
		}
	}()
	proc, url, err := h.startProxy(ctx, p, "fault-"+p.Name, up)
	if err != nil {
		return faultResult{}, err
	}
	defer proc.stop()

	load := loadgen.Start(loadgen.Target{URL: url, Host: up.Host}, loadgen.Options{Rate: h.cfg.Fault.Rate})
	// Counting requests rather than sleeping: the kill lands after the same
	// number of requests for every proxy, however busy the machine is.
	killAt := int(h.cfg.Fault.Rate * h.cfg.Fault.KillAfter.Seconds())
	total := int(h.cfg.Fault.Rate * h.cfg.Fault.Duration.Seconds())
	err = awaitSent(ctx, proc, load, killAt)
	if err == nil {
		err = up.Pods[0].Kill()
	}
	if err == nil {
		err = awaitSent(ctx, proc, load, total)
	}
	r := load.Stop()
	if err != nil {
		return faultResult{}, fmt.Errorf("fault run through %s: %w", p.Name, err)
	}
	return faultResultOf(p.Name, r), nil
}

// awaitSent waits until the load has sent n requests.
func awaitSent(ctx context.Context, p *process, load *loadgen.Load, n int) error {
	// Generous: the load is open loop, so only a stalled machine is slower
	// than n/rate.
	return awaitCondition(ctx, p, 10*time.Minute, 5*time.Millisecond, fmt.Sprintf("%d requests sent", n), func() error {
		if sent, _ := load.Snapshot(); sent < n {
			return fmt.Errorf("%d sent", sent)
		}
		return nil
	})
}
