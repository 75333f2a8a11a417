package loadgen

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestCountsSuccessesAndFailuresByKind(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "shop.example" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if n.Add(1)%4 == 0 {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	defer srv.Close()
	l := Start(Target{URL: srv.URL, Host: "shop.example"}, Options{Rate: 400})
	deadline := time.Now().Add(10 * time.Second)
	for sent, _ := l.Snapshot(); sent < 100; sent, _ = l.Snapshot() {
		if time.Now().After(deadline) {
			t.Fatal("load did not reach 100 requests")
		}
		time.Sleep(5 * time.Millisecond) // the generator runs on its own clock
	}
	r := l.Stop()
	if r.Sent != r.OK+r.Failed || r.Failed == 0 || r.OK == 0 {
		t.Fatalf("inconsistent counts: %s", r)
	}
	if r.ByStatus[http.StatusBadGateway] != r.Failed {
		t.Fatalf("502s not counted by status: %s", r)
	}
	if r.Percentile(50) <= 0 || r.Max() < r.Percentile(99) {
		t.Fatalf("latencies: %s", r)
	}
}

func TestConnectionErrorsAreFailures(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens any more
	l := Start(Target{URL: url}, Options{Rate: 200, Timeout: time.Second})
	deadline := time.Now().Add(10 * time.Second)
	for _, failed := l.Snapshot(); failed < 10; _, failed = l.Snapshot() {
		if time.Now().After(deadline) {
			t.Fatal("no failures recorded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r := l.Stop()
	if r.OK != 0 || r.ByError["connection refused"] != r.Failed {
		t.Fatalf("want only refused connections: %s", r)
	}
}
