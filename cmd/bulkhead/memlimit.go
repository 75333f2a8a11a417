package main

import (
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// memoryLimitShare is the part of the container's memory limit the Go
// runtime aims to stay under: the collector works harder as the heap nears
// it, rather than letting garbage grow to twice the live heap and the
// kernel end the process.
const memoryLimitShare = 0.9

// setMemoryLimit gives the Go runtime a soft memory limit of
// memoryLimitShare of the cgroup's (v2: memory.max), unless GOMEMLIMIT is
// set or there is no limit. It returns the limit set, 0 for none.
func setMemoryLimit(log *slog.Logger, cgroupFile string) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0 // the operator's choice; the runtime has read it
	}
	data, err := os.ReadFile(cgroupFile)
	if err != nil {
		return 0
	}
	max, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil || max <= 0 { // "max": no limit
		return 0
	}
	limit := int64(float64(max) * memoryLimitShare)
	debug.SetMemoryLimit(limit)
	log.Info("Go memory limit set from the container's", "container_bytes", max, "go_bytes", limit)
	return limit
}
