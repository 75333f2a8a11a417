package upstream

import (
	"net/http"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/record"
)

// withRecord gives a request a record, as the access log does.
func withRecord(rec *record.Request) func(*http.Request) {
	return func(r *http.Request) { slotOf(r).rec = rec }
}

func TestRecordRetriedAttempts(t *testing.T) {
	log := &hitLog{}
	u, _ := newUpstream(t, Config{})
	dead, b := deadAddr(t), newBackend(t, 200, log)
	install(u, []string{dead, b.addr()})
	rt := wrap(u, newTransport(t))
	rec := &record.Request{Start: time.Now()}
	resp, err := do(t, rt, "GET", dead, nil, withRecord(rec))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	if len(rec.Attempts) != 2 || rec.Retries() != 1 {
		t.Fatalf("attempts %+v", rec.Attempts)
	}
	first, second := rec.Attempts[0], rec.Attempts[1]
	if first.Endpoint != dead || first.Error != record.ErrConnect || first.Status != 0 || first.Breaker != "closed" {
		t.Errorf("first attempt %+v", first)
	}
	if second.Endpoint != b.addr() || second.Status != 200 || second.Error != "" || second.Duration <= 0 {
		t.Errorf("second attempt %+v", second)
	}
	if rec.Stop != "" || rec.HeaderTime() <= 0 {
		t.Errorf("stop %q, header time %s", rec.Stop, rec.HeaderTime())
	}
}

func TestRecordStopReasons(t *testing.T) {
	t.Run("not-retryable", func(t *testing.T) {
		u, _ := newUpstream(t, Config{})
		a, b := newBackend(t, 503, &hitLog{}), newBackend(t, 200, &hitLog{})
		install(u, []string{a.addr(), b.addr()})
		rec := &record.Request{}
		resp, err := do(t, wrap(u, newTransport(t)), "POST", a.addr(), []byte("x"), withRecord(rec))
		if err != nil || resp.StatusCode != 503 {
			t.Fatalf("%v %v", resp, err)
		}
		if len(rec.Attempts) != 1 || rec.Attempts[0].Status != 503 || rec.Stop != record.StopNotRetryable {
			t.Fatalf("attempts %+v, stop %q", rec.Attempts, rec.Stop)
		}
	})
	t.Run("max-retries", func(t *testing.T) {
		u, _ := newUpstream(t, Config{MaxRetries: 1})
		a, b, c := newBackend(t, 503, &hitLog{}), newBackend(t, 503, &hitLog{}), newBackend(t, 503, &hitLog{})
		install(u, []string{a.addr(), b.addr(), c.addr()})
		rec := &record.Request{}
		if _, err := do(t, wrap(u, newTransport(t)), "GET", a.addr(), nil, withRecord(rec)); err != nil {
			t.Fatal(err)
		}
		if len(rec.Attempts) != 2 || rec.Stop != record.StopMaxRetries {
			t.Fatalf("attempts %+v, stop %q", rec.Attempts, rec.Stop)
		}
	})
	t.Run("budget", func(t *testing.T) {
		u, _ := newUpstream(t, Config{Budget: BudgetConfig{MinPerSecond: -1}})
		a, b := newBackend(t, 503, &hitLog{}), newBackend(t, 503, &hitLog{})
		install(u, []string{a.addr(), b.addr()})
		rt := wrap(u, newTransport(t))
		// A budget of 20% of requests and no minimum: the first request
		// finds it empty.
		rec := &record.Request{}
		if _, err := do(t, rt, "GET", a.addr(), nil, withRecord(rec)); err != nil {
			t.Fatal(err)
		}
		if len(rec.Attempts) != 1 || rec.Stop != record.StopBudget {
			t.Fatalf("attempts %+v, stop %q", rec.Attempts, rec.Stop)
		}
	})
	t.Run("success: no stop", func(t *testing.T) {
		u, _ := newUpstream(t, Config{})
		a := newBackend(t, 404, &hitLog{})
		install(u, []string{a.addr()})
		rec := &record.Request{}
		if _, err := do(t, wrap(u, newTransport(t)), "GET", a.addr(), nil, withRecord(rec)); err != nil {
			t.Fatal(err)
		}
		if len(rec.Attempts) != 1 || rec.Attempts[0].Status != 404 || rec.Stop != "" {
			t.Fatalf("attempts %+v, stop %q", rec.Attempts, rec.Stop)
		}
	})
}

func TestRecordBreakerSkip(t *testing.T) {
	u, _ := newUpstream(t, Config{})
	a, b := newBackend(t, 200, &hitLog{}), newBackend(t, 200, &hitLog{})
	install(u, []string{a.addr(), b.addr()})
	openBreaker(u, a.addr())
	rec := &record.Request{}
	// Pinned on a (as if balanced before its breaker opened): skipped.
	resp, err := do(t, wrap(u, newTransport(t)), "GET", a.addr(), nil, withRecord(rec))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	if rec.BreakerSkips != 1 || len(rec.Attempts) != 1 || rec.Attempts[0].Endpoint != b.addr() {
		t.Fatalf("skips %d, attempts %+v", rec.BreakerSkips, rec.Attempts)
	}
}

// tracerCalls counts what an AttemptTracer is told and sets a header.
type tracerCalls struct{ starts, ends int }

func (c *tracerCalls) StartAttempt(out *http.Request, a *record.Attempt) {
	c.starts++
	out.Header.Set("X-Attempt-Endpoint", a.Endpoint)
}
func (c *tracerCalls) EndAttempt(*record.Attempt) { c.ends++ }

func TestRecordTracerSetsAttemptHeaders(t *testing.T) {
	log := &hitLog{}
	u, _ := newUpstream(t, Config{})
	a, b := newBackend(t, 503, log), newBackend(t, 200, log)
	install(u, []string{a.addr(), b.addr()})
	calls := &tracerCalls{}
	rec := &record.Request{Tracer: calls}
	if _, err := do(t, wrap(u, newTransport(t)), "GET", a.addr(), nil, withRecord(rec)); err != nil {
		t.Fatal(err)
	}
	if calls.starts != 2 || calls.ends != 2 {
		t.Fatalf("tracer told of %d starts, %d ends", calls.starts, calls.ends)
	}
	for i, h := range log.headers {
		if got := h.Get("X-Attempt-Endpoint"); got != log.hosts[i] {
			t.Errorf("attempt %d to %s carried %q", i, log.hosts[i], got)
		}
	}
}
