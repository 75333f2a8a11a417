package dataclient

import (
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
)

// BenchmarkRetainedHeap builds the client's state at 10,000 Ingresses
// (benchClient's cluster) and reports the live heap after a GC. The fake
// clientset's object tracker holds a whole copy of every object, so the
// figure is an upper bound; with BULKHEAD_HEAP_PROFILE set, a heap profile
// is written there for a per-package view (go tool pprof
// -sample_index=inuse_space -focus dataclient).
func BenchmarkRetainedHeap(b *testing.B) {
	defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
	runtime.MemProfileRate = 4096
	for b.Loop() {
		c, _, _, _ := benchClient(b, 10_000)
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		b.ReportMetric(float64(m.HeapAlloc)/(1<<20), "live-MiB")
		if path := os.Getenv("BULKHEAD_HEAP_PROFILE"); path != "" {
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
		runtime.KeepAlive(c)
	}
}
