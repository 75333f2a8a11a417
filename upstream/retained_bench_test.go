package upstream

import (
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkRetained10k reports the live heap the upstream layer keeps for
// 10,000 backends of 3 endpoints each (their SetEndpoints lists) and a
// BackendFilterName filter per backend (one route each), as the router
// has them at 10,000 Ingresses, in bytes per backend.
func BenchmarkRetained10k(b *testing.B) {
	const n = 10_000
	update := make(map[string][]string, n)
	for i := range n {
		update[fmt.Sprintf("team-%02d/app-%05d:80", i%50, i)] = []string{
			fmt.Sprintf("10.%d.%d.1:8080", i/250, i%250), fmt.Sprintf("10.%d.%d.2:8080", i/250, i%250), fmt.Sprintf("10.%d.%d.3:8080", i/250, i%250)}
	}
	keys := make([]string, 0, n)
	for k := range update {
		keys = append(keys, k)
	}
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		u, err := New(Config{}, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		u.SetEndpoints(update)
		spec := u.BackendSpec()
		fs := make([]any, len(keys))
		for i, k := range keys {
			if fs[i], err = spec.CreateFilter([]any{k}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "retained-B/backend")
		runtime.KeepAlive(u)
		runtime.KeepAlive(fs)
	}
}
