package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cpuTimes are one CPU's counters from /proc/stat, in clock ticks.
type cpuTimes struct {
	Busy, Total, Steal uint64
}

// cpuUse is how busy the two CPUs were during one run, in percent: the
// proxy CPU near 100 means the proxy was the limit; the load CPU near 100
// would mean wrk and the pods were. Steal is time the hypervisor gave to
// other guests, which no pinning inside this machine can prevent.
type cpuUse struct {
	Proxy float64 `json:"proxyCPUBusyPercent"`
	Load  float64 `json:"loadCPUBusyPercent"`
	Steal float64 `json:"stealPercent"` // both CPUs together
}

// parseProcStat reads the per-CPU lines ("cpuN user nice system idle
// iowait irq softirq steal ...") of /proc/stat. Idle and iowait are not
// busy; steal counts toward the total but not toward busy.
func parseProcStat(data string) (map[int]cpuTimes, error) {
	cpus := map[int]cpuTimes{}
	for line := range strings.Lines(data) {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimPrefix(f[0], "cpu"))
		if err != nil {
			return nil, fmt.Errorf("/proc/stat line %q: %w", strings.TrimSpace(line), err)
		}
		var v [8]uint64
		for i := range v {
			if v[i], err = strconv.ParseUint(f[i+1], 10, 64); err != nil {
				return nil, fmt.Errorf("/proc/stat line %q: %w", strings.TrimSpace(line), err)
			}
		}
		user, nice, system, idle, iowait, irq, softirq, steal := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
		busy := user + nice + system + irq + softirq
		cpus[n] = cpuTimes{Busy: busy, Total: busy + idle + iowait + steal, Steal: steal}
	}
	if len(cpus) == 0 {
		return nil, fmt.Errorf("no per-CPU lines in /proc/stat")
	}
	return cpus, nil
}

func readProcStat() (map[int]cpuTimes, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, err
	}
	return parseProcStat(string(data))
}

// cpuUseBetween compares two samples.
func cpuUseBetween(before, after map[int]cpuTimes, proxyCPU, loadCPU int) cpuUse {
	pct := func(part, whole uint64) float64 {
		if whole == 0 {
			return 0
		}
		return 100 * float64(part) / float64(whole)
	}
	delta := func(cpu int) cpuTimes {
		a, b := after[cpu], before[cpu]
		return cpuTimes{Busy: a.Busy - b.Busy, Total: a.Total - b.Total, Steal: a.Steal - b.Steal}
	}
	p, l := delta(proxyCPU), delta(loadCPU)
	return cpuUse{Proxy: pct(p.Busy, p.Total), Load: pct(l.Busy, l.Total), Steal: pct(p.Steal+l.Steal, p.Total+l.Total)}
}

// clockTick is the unit of /proc's CPU times: USER_HZ, 100 on every Linux
// this runs on (sysconf(_SC_CLK_TCK) would need cgo).
const clockTick = 10 * time.Millisecond

// groupCPU is the CPU time (user and system) used so far by the processes
// of process group pgid: a proxy and its workers (nginx, HAProxy). Unlike
// the rate, it does not depend on how much of its CPU the proxy got: on
// a shared machine it is the steadier measure of what a request costs.
// A worker that exited is no longer counted; none exits during a run.
func groupCPU(pgid int) (time.Duration, error) {
	paths, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return 0, err
	}
	var ticks uint64
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // exited meanwhile
		}
		group, cpu, ok := parsePidStat(string(data))
		if ok && group == pgid {
			ticks += cpu
		}
	}
	return time.Duration(ticks) * clockTick, nil
}

// parsePidStat reads the process group and user+system ticks of one
// /proc/PID/stat line ("PID (comm) state ppid pgrp ... utime stime ...";
// comm may hold spaces and parentheses, so fields count from the last
// ')').
func parsePidStat(line string) (pgrp int, ticks uint64, ok bool) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(line[i+1:])
	if len(f) < 13 {
		return 0, 0, false
	}
	pgrp, err := strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, false
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return pgrp, utime + stime, true
}
