package tablestore

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// TestSaveWithAFIFOInPlaceOfTheSnapshot: a FIFO put where the snapshot was
// between two writes. The next write reads the file it wrote back (to
// reuse its JSON); it must not wait for a writer to the FIFO forever,
// holding the Store, but write the whole table over it, which then loads.
func TestSaveWithAFIFOInPlaceOfTheSnapshot(t *testing.T) {
	h := newHarness(t, Options{Now: func() time.Time { return fixedNow }})
	tbl := fullTable()
	if err := h.Save(tbl); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(h.Path()); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(h.Path(), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Save(tbl) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Save: %v", err)
		}
	case <-time.After(3 * time.Second):
		// Unblock the reader so the test can end.
		if f, err := os.OpenFile(h.Path(), os.O_WRONLY, 0); err == nil {
			f.Close()
		}
		<-done
		t.Fatal("Save blocked for 3 s reading a FIFO in the snapshot's place")
	}
	got, _, err := h.Load()
	if err != nil || len(got.Routes) != len(tbl.Routes) {
		t.Fatalf("after writing over the FIFO: %d routes, %v", len(got.Routes), err)
	}
}
