package main

import (
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
)

// memoryLimitShare is the part of the container's memory limit the Go
// runtime aims to stay under: the collector works harder as the heap nears
// it, rather than letting garbage grow to twice the live heap and the
// kernel end the process.
const memoryLimitShare = 0.9

// Unless GOGC is set, the collector's headroom (the garbage the heap may
// gather before a collection) is gcHeadroom, as a share of the live heap
// between minGCPercent and Go's default 100: a small router keeps about
// Go's default, which costs it little memory, and a large one no longer
// doubles its heap. At 10,000 Ingresses (about 75 MiB live) GOGC=100 let
// the heap grow to twice that, most of the router's 312 MiB resident; the
// price of less headroom is CPU where the router allocates. 12 MiB, down
// from 24, once an Ingress change allocated half as much (tables hold
// routes by pointer): the collector runs about as often per change as
// before, and the RSS at 10,000 is about 10 MiB lower (166.9 → 156.4 MiB
// in one run each; 8 MiB gave no less RSS and more CPU per change: the
// free room in partly used spans grew instead). The README's Measured
// section has the figures.
const (
	gcHeadroom   = 12 << 20
	minGCPercent = 10
)

// gcPercent is the GOGC that gives a live heap of that many bytes
// gcHeadroom, within [minGCPercent, 100].
func gcPercent(live uint64) int {
	if live == 0 {
		return 100
	}
	return int(min(100, max(minGCPercent, uint64(gcHeadroom)*100/live)))
}

var tuning sync.Once

// tuneGC sets the GOGC for the live heap the last collection marked, and
// again after every collection for the life of the process. Once a second
// was too late at start: the heap grows from nothing to its full size in
// under a second there, all of it at Go's default (at 10,000 Ingresses the
// heap's goal was 159 MiB when the router became ready, for a live heap of
// 75), and the memory taken then stayed with the process until the
// scavenger returned it, in pieces.
func tuneGC() {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	last := -1
	var tune func()
	tune = func() {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			if p := gcPercent(sample[0].Value.Uint64()); p != last {
				debug.SetGCPercent(p)
				last = p
			}
		}
		// The next collection finds this garbage and runs its finalizer
		// (on the runtime's finalizer goroutine, one at a time).
		runtime.SetFinalizer(&gcSentinel{}, func(*gcSentinel) { tune() })
	}
	tune()
}

// gcSentinel is what tuneGC's finalizer hangs on: garbage once made, and
// an object of its own (a pointer field keeps it out of the tiny
// allocator's shared blocks, where a live neighbour would keep it, and a
// zero-sized one is not allocated at all).
type gcSentinel struct{ _ *int }

// setMemoryLimit sets the Go runtime's memory settings: GOGC from the live
// heap (tuneGC) unless GOGC is set, and a soft memory limit of
// memoryLimitShare of the cgroup's (v2: memory.max), unless GOMEMLIMIT is
// set or there is no limit. It returns the limit set, 0 for none.
func setMemoryLimit(log *slog.Logger, cgroupFile string) int64 {
	if os.Getenv("GOGC") == "" { // else the operator's choice; the runtime has read it
		tuning.Do(tuneGC)
	}
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
