package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// rotation is the order in which targets run in round r: the list turned
// left by r, so each target runs in every position across rounds and none
// always goes first (into a cold machine) or last (after the others
// heated it).
func rotation[T any](targets []T, round int) []T {
	n := len(targets)
	out := make([]T, 0, n)
	for i := range n {
		out = append(out, targets[(i+round)%n])
	}
	return out
}

// median of the values; 0 for none. An even count takes the mean of the
// middle two.
func median(values []float64) float64 {
	if len(values) == 0 {
		return 0
	}
	s := slices.Clone(values)
	slices.Sort(s)
	mid := len(s) / 2
	if len(s)%2 == 1 {
		return s[mid]
	}
	return (s[mid-1] + s[mid]) / 2
}

func medianDuration(values []time.Duration) time.Duration {
	f := make([]float64, len(values))
	for i, v := range values {
		f[i] = float64(v)
	}
	return time.Duration(median(f))
}

// summary is one target's throughput across rounds.
type summary struct {
	Name   string      `json:"name"`
	Rounds []wrkResult `json:"rounds"`
	// Medians across rounds. Each is the median of its own column, so P99
	// need not come from the same round as RPS.
	RPS    float64       `json:"rps"`
	RPSMin float64       `json:"rpsMin"`
	RPSMax float64       `json:"rpsMax"`
	P50    time.Duration `json:"p50"`
	P99    time.Duration `json:"p99"`
	Errors int64         `json:"errors"` // summed over rounds
	CPU    cpuUse        `json:"cpu"`    // medians
	// CPUPerRequest is the median of the proxy's CPU time per request
	// (zero for the pod measured directly).
	CPUPerRequest time.Duration `json:"cpuPerRequest"`
	// Ratios to bulkhead's medians; nil when bulkhead did not run, and for
	// the no-proxy baseline.
	RPSRatio *float64 `json:"rpsRatioToBulkhead,omitempty"`
	P99Ratio *float64 `json:"p99RatioToBulkhead,omitempty"`
	// LogRatio, for a proxy run with its access log on, is its request
	// rate over the same proxy's with the log off, the median of the
	// rounds' ratios (pairedRatios): 0.93 means the log cost 7% of
	// throughput.
	LogRatio *float64 `json:"rpsRatioLogOnToOff,omitempty"`
	// LogCPURatio is its CPU per request over the log-off proxy's, paired
	// by round likewise: 1.05 means the log cost 5% more CPU per request.
	LogCPURatio *float64 `json:"cpuPerRequestRatioLogOnToOff,omitempty"`
	// AccessLog is what a log-on proxy wrote.
	AccessLog *accessLogCheck `json:"accessLog,omitempty"`
}

// accessLogCheck is what a log-on proxy's file held after the rounds.
type accessLogCheck struct {
	File     string `json:"file"`
	Lines    int64  `json:"lines"`
	Bytes    int64  `json:"bytes"`
	Requests int64  `json:"requests"` // completed by wrk through it, warm-up included
	// Dropped is bulkhead_access_log_dropped_total (bulkhead only).
	Dropped *float64 `json:"dropped,omitempty"`
}

// summarize reduces one target's rounds to medians.
func summarize(name string, rounds []wrkResult) summary {
	s := summary{Name: name, Rounds: rounds}
	if len(rounds) == 0 {
		return s
	}
	rps := make([]float64, len(rounds))
	var p50, p99 []time.Duration
	var proxyCPU, loadCPU, steal []float64
	var perReq []time.Duration
	for i, r := range rounds {
		perReq = append(perReq, r.CPUPerRequest())
		rps[i] = r.RPS
		p50 = append(p50, r.P50)
		p99 = append(p99, r.P99)
		proxyCPU = append(proxyCPU, r.CPU.Proxy)
		loadCPU = append(loadCPU, r.CPU.Load)
		steal = append(steal, r.CPU.Steal)
		s.Errors += r.Errors()
	}
	s.CPU = cpuUse{Proxy: median(proxyCPU), Load: median(loadCPU), Steal: median(steal)}
	s.RPS = median(rps)
	s.RPSMin, s.RPSMax = slices.Min(rps), slices.Max(rps)
	s.P50, s.P99 = medianDuration(p50), medianDuration(p99)
	s.CPUPerRequest = medianDuration(perReq)
	return s
}

// ratio is a/b, or nil when b is zero (nothing to compare with).
func ratio(a, b float64) *float64 {
	if b == 0 {
		return nil
	}
	r := a / b
	return &r
}

// setRatios fills each proxy's ratios to the reference summary (bulkhead):
// a request-rate ratio above 1 means the peer served more than bulkhead, a
// p99 ratio above 1 means its tail was slower.
func setRatios(proxies []summary, ref summary) {
	for i := range proxies {
		proxies[i].RPSRatio = ratio(proxies[i].RPS, ref.RPS)
		proxies[i].P99Ratio = ratio(float64(proxies[i].P99), float64(ref.P99))
	}
}

// setLogRatios gives each log-on proxy its request rate over the same
// proxy's with the log off, when both ran.
func setLogRatios(proxies []summary, ps []peer) {
	byName := map[string]summary{}
	for _, s := range proxies {
		byName[s.Name] = s
	}
	for _, p := range ps {
		if p.LogOf == "" {
			continue
		}
		for i := range proxies {
			if off, ok := byName[p.LogOf]; ok && proxies[i].Name == p.Name {
				proxies[i].LogRatio, proxies[i].LogCPURatio = pairedRatios(proxies[i].Rounds, off.Rounds)
			}
		}
	}
}

// pairedRatios are the medians, over rounds, of on's rate and CPU per
// request over off's in the same round. The two run next to each other
// in every round (neighbours in the list, so in the rotation too): when
// the machine's other load changes during a run, each round's pair saw
// the same machine, whereas the ratio of two medians compares rounds of
// different loads (a run whose load fell halfway gave 1.28 for the rate
// that way, 0.94 paired).
func pairedRatios(on, off []wrkResult) (rps, cpu *float64) {
	var rr, cr []float64
	for i := range min(len(on), len(off)) {
		if off[i].RPS > 0 {
			rr = append(rr, on[i].RPS/off[i].RPS)
		}
		if c := off[i].CPUPerRequest(); c > 0 {
			cr = append(cr, float64(on[i].CPUPerRequest())/float64(c))
		}
	}
	if len(rr) > 0 {
		m := median(rr)
		rps = &m
	}
	if len(cr) > 0 {
		m := median(cr)
		cpu = &m
	}
	return rps, cpu
}

// measureRounds measures every target for d in each of cfg.Rounds rounds,
// in an order rotated per round (so no target always runs first, on a
// cold or a warm machine), after a warm-up of cfg.Warmup per target that
// is not counted; it prints each measurement and returns them by name.
// kind prefixes the round's name ("gRPC "), unit and errors name the
// figures ("req/s", "errors").
func measureRounds[T any](cfg config, targets []T, name func(T) string, measure func(T, time.Duration) (wrkResult, error),
	d time.Duration, kind, unit, errors string) (map[string][]wrkResult, error) {
	if cfg.Warmup > 0 {
		step(fmt.Sprintf("%swarm-up: %s per target, not counted", kind, cfg.Warmup))
		for _, t := range targets {
			if _, err := measure(t, cfg.Warmup); err != nil {
				return nil, err
			}
		}
	}
	results := map[string][]wrkResult{}
	for r := range cfg.Rounds {
		order := rotation(targets, r)
		names := make([]string, len(order))
		for i, t := range order {
			names[i] = name(t)
		}
		step(fmt.Sprintf("%sround %d/%d: %s", kind, r+1, cfg.Rounds, strings.Join(names, ", ")))
		for _, t := range order {
			res, err := measure(t, d)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(os.Stderr, "  %-20s %8.0f %s  p50 %s  p99 %s  %s %d  CPU busy: proxy %.0f%%, load %.0f%%; steal %.1f%%; proxy CPU per call %s\n",
				name(t), res.RPS, unit, ms(res.P50), ms(res.P99), errors, res.Errors(), res.CPU.Proxy, res.CPU.Load, res.CPU.Steal, us(res.CPUPerRequest()))
			results[name(t)] = append(results[name(t)], res)
		}
	}
	return results, nil
}
