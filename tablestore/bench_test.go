package tablestore

import (
	"os"
	"runtime"
	"slices"
	"testing"
)

// BenchmarkSave10k and BenchmarkLoad10k measure a 10,000-route table; the
// file size is reported as file-bytes.
func BenchmarkSave10k(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	t := bigTable(10_000)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Save(t); err != nil {
			b.Fatal(err)
		}
	}
	reportSize(b, s)
}

func BenchmarkLoad10k(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Save(bigTable(10_000)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Load(); err != nil {
			b.Fatal(err)
		}
	}
	reportSize(b, s)
}

// BenchmarkEncode10k is Save without the file system (no fsync).
func BenchmarkEncode10k(b *testing.B) {
	t := bigTable(10_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encode(t, fixedNow); err != nil {
			b.Fatal(err)
		}
	}
}

func reportSize(b *testing.B, s *Store) {
	fi, err := os.Stat(s.Path())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(fi.Size()), "file-bytes")
}

// BenchmarkSaveChanged10k is the Store's write after one route of 10,000
// changed (the translator hands over the same route objects for the
// others), and reports what the Store keeps between writes, after a GC.
func BenchmarkSaveChanged10k(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	t := bigTable(10_000)
	if err := s.Save(t); err != nil {
		b.Fatal(err)
	}
	routes := slices.Clone(t.Routes)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := routes[i%len(routes)]
		e := *r.Eskip
		r.Eskip = &e // a new object, as the translator makes for a changed route
		t.Routes = slices.Clone(routes)
		t.Routes[i%len(routes)] = r
		i++
		if err := s.Save(t); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	s.written = nil
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "kept-MiB")
	runtime.KeepAlive(t)
}
