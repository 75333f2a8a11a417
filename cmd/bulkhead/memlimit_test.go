package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
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
