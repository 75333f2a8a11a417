package tablestore

import (
	"os"
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
