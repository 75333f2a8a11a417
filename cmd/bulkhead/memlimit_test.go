package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

func TestSetMemoryLimitFromTheCgroup(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	dir := t.TempDir()
	file := filepath.Join(dir, "memory.max")
	log := slog.New(slog.DiscardHandler)
	for _, c := range []struct {
		content string
		want    int64
	}{
		{"536870912\n", 483183820}, // 512 MiB -> 90%
		{"max\n", 0},
		{"garbage", 0},
	} {
		if err := os.WriteFile(file, []byte(c.content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := setMemoryLimit(log, file); got != c.want {
			t.Errorf("%q: limit %d, want %d", c.content, got, c.want)
		}
		if c.want > 0 && debug.SetMemoryLimit(-1) != c.want {
			t.Errorf("%q: the runtime's limit is %d, want %d", c.content, debug.SetMemoryLimit(-1), c.want)
		}
	}
	if got := setMemoryLimit(log, filepath.Join(dir, "missing")); got != 0 {
		t.Errorf("no cgroup file: limit %d", got)
	}
	t.Setenv("GOMEMLIMIT", "100MiB")
	if got := setMemoryLimit(log, file); got != 0 {
		t.Errorf("GOMEMLIMIT set: limit %d, want the operator's left alone", got)
	}
}

func TestGCPercentFromTheLiveHeap(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 100},
		{6 << 20, 100},
		{12 << 20, 100}, // never above Go's default
		{13 << 20, 92},  // 1,000 Ingresses
		{24 << 20, 50},
		{75 << 20, 16}, // 10,000 Ingresses
		{120 << 20, 10},
		{1 << 30, 10}, // never below minGCPercent
	} {
		if got := gcPercent(c.live); got != c.want {
			t.Errorf("live heap %d MiB: GOGC %d, want %d", c.live>>20, got, c.want)
		}
	}
}

// The GOGC follows the live heap from one collection to the next, not
// only now and then: with 48 MiB live it goes down to give 12 MiB of
// headroom, and back up to Go's default once that is garbage, each within
// a few collections.
func TestGCTunedAfterEachCollection(t *testing.T) {
	if os.Getenv("GOGC") != "" {
		t.Skip("GOGC is set: the operator's choice is left alone")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	tuning.Do(tuneGC)
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/gogc:percent"}}
	// settles collects until the GOGC is the one for the live heap, for at
	// most 100 collections, and returns it.
	settles := func() (live uint64, gogc int) {
		for range 100 {
			runtime.GC()
			runtime.Gosched() // the finalizer goroutine
			metrics.Read(sample)
			live, gogc = sample[0].Value.Uint64(), int(sample[1].Value.Uint64())
			if gogc == gcPercent(live) {
				return live, gogc
			}
		}
		t.Fatalf("GOGC %d after 100 collections, want %d for a live heap of %d MiB", gogc, gcPercent(live), live>>20)
		return 0, 0
	}
	ballast := make([]byte, 48<<20)
	for i := range ballast {
		ballast[i] = byte(i) // touched, so that nothing is lazily elided
	}
	if live, gogc := settles(); live < 48<<20 || gogc > 26 {
		t.Errorf("with the ballast: live %d MiB, GOGC %d", live>>20, gogc)
	}
	runtime.KeepAlive(ballast)
	ballast = nil
	if live, gogc := settles(); gogc < 80 {
		t.Errorf("without the ballast: live %d MiB, GOGC %d", live>>20, gogc)
	}
}
