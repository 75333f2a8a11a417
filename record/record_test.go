package record

import (
	"net/http/httptest"
	"testing"
	"time"
)

func TestAttemptsAndHeaderTime(t *testing.T) {
	start := time.Unix(100, 0)
	r := &Request{Start: start}
	if r.HeaderTime() != 0 || r.Retries() != 0 {
		t.Fatal("an empty record has no header time and no retries")
	}
	for i := range 6 { // past the inline storage
		a := r.AddAttempt("10.0.0.1:80", "closed", start.Add(time.Duration(i)*time.Second))
		a.Duration = 100 * time.Millisecond
		a.Error = ErrReset
	}
	if len(r.Attempts) != 6 || r.Retries() != 5 {
		t.Fatalf("%d attempts, %d retries", len(r.Attempts), r.Retries())
	}
	if r.HeaderTime() != 0 {
		t.Fatal("the last attempt got no answer: no header time")
	}
	r.Attempts[5].Status, r.Attempts[5].Error = 200, ""
	if got, want := r.HeaderTime(), 5*time.Second+100*time.Millisecond; got != want {
		t.Fatalf("header time %s, want %s", got, want)
	}
	r.Reset()
	if len(r.Attempts) != 0 || !r.Start.IsZero() {
		t.Fatal("Reset left data")
	}
}

func TestEnsure(t *testing.T) {
	req := httptest.NewRequest("GET", "/", nil)
	if FromContext(req.Context()) != nil {
		t.Fatal("a new request has no record")
	}
	now := time.Now()
	r1, req1 := Ensure(req, now)
	if r1 == nil || FromContext(req1.Context()) != r1 || !r1.Start.Equal(now) {
		t.Fatal("Ensure did not attach a new record")
	}
	r2, req2 := Ensure(req1, now.Add(time.Second))
	if r2 != r1 || req2 != req1 {
		t.Fatal("Ensure replaced an existing record")
	}
}
