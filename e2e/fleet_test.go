package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	"github.com/bulkhead-router/bulkhead/internal/loadgen"
	"github.com/bulkhead-router/bulkhead/internal/testrouter"
)

// fleetRelistSpread is the routers' -apiserver-relist-spread in the fleet test.
const fleetRelistSpread = 4 * time.Second

// TestFleetOutageResumesOrSpreadsRelists runs three routers against one API
// server whose audit log records every list and watch of the kinds bulkhead
// reads, under steady load on every router:
//
//   - the API server is frozen (SIGSTOP) until every router counts it as
//     lost, then thawed: it kept its watch cache, so every watch resumes
//     from its resourceVersion and no router lists anything again;
//   - the API server is SIGKILLed and restarted: each router resumes what
//     the new server allows and relists the rest, at most once per kind,
//     no earlier than the random moment it drew and logged, while it keeps
//     serving its table;
//
// after each, a change made right after the return is served by every
// router, and no request of the load fails.
func TestFleetOutageResumesOrSpreadsRelists(t *testing.T) {
	t.Parallel()
	e := newEnvOn(t, controlplane.ForTestWith(t, controlplane.Options{Audit: true}))
	e.ingressClass("bulkhead", false)
	e.startPods("fleet", "web", 1)
	e.apply(ingress("fleet", "web", "bulkhead", rule("web.example", path("/", prefix(), "web"))))
	routers := make([]*testrouter.Router, 3)
	var loads []*loadgen.Load
	for i := range routers {
		routers[i] = testrouter.Start(t, testrouter.Options{Kubeconfig: e.cp.Kubeconfig(),
			Args: []string{"-apiserver-relist-spread", fleetRelistSpread.String()}})
	}
	for _, r := range routers {
		r.WaitReady(30 * time.Second)
		e.router = r
		e.expectPod("web.example", "/", "web", "")
		loads = append(loads, loadgen.Start(loadgen.Target{URL: r.ProxyURL + "/", Host: "web.example"}, loadgen.Options{Rate: 20}))
	}
	awaitAll := func(connected bool) {
		t.Helper()
		for _, r := range routers {
			e.router = r
			e.awaitConnected(connected, 30*time.Second)
		}
	}
	// serveEverywhere creates an Ingress and awaits every router serving it.
	serveEverywhere := func(name string) time.Duration {
		t.Helper()
		written := time.Now()
		e.apply(ingress("fleet", name, "bulkhead", rule(name+".example", path("/", prefix(), "web"))))
		for _, r := range routers {
			e.router = r
			e.eventually(30*time.Second, name+" served by every router", func() error {
				a, err := e.get(name+".example", "/")
				if err != nil {
					return err
				}
				if a.status != 200 || a.echo.Service != "web" {
					return fmt.Errorf("got %d", a.status)
				}
				return nil
			})
		}
		return time.Since(written)
	}
	fromRouters := func(from int64) (full, streamed, resumed int, first time.Time) {
		t.Helper()
		events, _, err := e.cp.AuditEvents(from)
		if err != nil {
			t.Fatalf("audit log: %v", err)
		}
		for _, ev := range events {
			if !strings.HasPrefix(ev.UserAgent, "bulkhead") {
				continue
			}
			switch {
			case ev.FullList():
				full++
				if ev.StreamingList() {
					streamed++
				}
				if first.IsZero() || ev.Received.Before(first) {
					first = ev.Received
				}
			case ev.Verb == "watch":
				resumed++
			}
		}
		return full, streamed, resumed, first
	}

	// 1. Frozen and thawed: the server kept its history.
	mark := e.cp.AuditLogSize()
	if err := e.cp.FreezeAPIServer(); err != nil {
		t.Fatal(err)
	}
	awaitAll(false)
	if err := e.cp.ThawAPIServer(); err != nil {
		t.Fatal(err)
	}
	thawed := time.Now()
	live := serveEverywhere("after-freeze")
	awaitAll(true)
	// Watches come back on their own schedule and the audit log is written
	// asynchronously: give every router's watches a moment to show up.
	full, _, resumed, _ := fromRouters(mark)
	for deadline := time.Now().Add(15 * time.Second); resumed < len(routers)*4 && time.Now().Before(deadline); {
		<-time.After(100 * time.Millisecond) // polling the audit log file; nothing to wait on
		full, _, resumed, _ = fromRouters(mark)
	}
	t.Logf("after a freeze: a change live on every router %s after the write; %d watches resumed, %d full lists", live.Round(time.Millisecond), resumed, full)
	if full != 0 {
		t.Errorf("after a freeze the routers listed %d times; every watch should have resumed", full)
	}
	if resumed < len(routers)*4 {
		t.Errorf("after a freeze %d watches resumed, want at least one per kind and router (%d)", resumed, len(routers)*4)
	}

	// 2. Killed and restarted: each router resumes what the new server
	// allows and relists the rest, each at its own moment. client-go
	// counts a watch that ends within a second of its start without an
	// event as failed and relists: the watches resumed above must be older
	// than that when the server dies, as they are in a real outage.
	<-time.After(time.Until(thawed.Add(1500 * time.Millisecond)))
	mark = e.cp.AuditLogSize()
	logMarks := make([]int, len(routers))
	for i, r := range routers {
		logMarks[i] = len(r.Log())
	}
	if err := e.cp.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	awaitAll(false)
	if err := e.cp.StartAPIServer(context.Background()); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	live = serveEverywhere("after-restart")
	awaitAll(true)
	// The moments the routers drew, from their log lines: when each
	// noticed the server's return plus its delay.
	var earliest, latest time.Time
	for i, r := range routers {
		at, delay := reconnectLine(t, r.Log()[logMarks[i]:])
		if delay < 0 || delay >= fleetRelistSpread {
			t.Errorf("router %d drew a relist delay of %s, want within [0, %s)", i, delay, fleetRelistSpread)
		}
		m := at.Add(delay)
		if earliest.IsZero() || m.Before(earliest) {
			earliest = m
		}
		if m.After(latest) {
			latest = m
		}
	}
	// Lists come at the routers' moments (and the reflector's backoff of
	// about a second after a 410): count them once all are past.
	<-time.After(time.Until(latest.Add(4 * time.Second)))
	full2, streamed2, resumed2, first := fromRouters(mark)
	t.Logf("after a restart: a change live on every router %s after the write; %d full lists (%d streamed) and %d watches resumed; the first list %s after the server was ready, the routers' moments from %s to %s after",
		live.Round(time.Millisecond), full2, streamed2, resumed2, first.Sub(back).Round(time.Millisecond),
		earliest.Sub(back).Round(time.Millisecond), latest.Sub(back).Round(time.Millisecond))
	if full2 > 0 && first.Before(earliest.Add(-100*time.Millisecond)) { // one machine's clock for the log and the audit
		t.Errorf("a router listed at %s, before any router's drawn moment %s", first.Format(time.StampMilli), earliest.Format(time.StampMilli))
	}
	if full2 > len(routers)*4 {
		t.Errorf("%d full lists after the restart, want at most one per kind and router (%d): a relist loop", full2, len(routers)*4)
	}
	if full2+resumed2 < len(routers)*4 {
		t.Errorf("%d full lists and %d resumed watches after the restart, want every kind of every router back (%d)", full2, resumed2, len(routers)*4)
	}
	for i, l := range loads {
		r := l.Stop()
		if r.Failed != 0 || r.Sent == 0 {
			t.Errorf("router %d: %d of %d requests failed: %s", i, r.Failed, r.Sent, r)
		}
	}
}

var reconnectRE = regexp.MustCompile(`time=(\S+) .*msg="reconnected to the API server; watches resume[^"]*".* relist_delay=(\S+)`)

// reconnectLine finds the router's reconnect log line: when it noticed the
// server's return and the relist delay it drew.
func reconnectLine(t *testing.T, log string) (time.Time, time.Duration) {
	t.Helper()
	m := reconnectRE.FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no reconnect line with a relist delay in the router's log")
	}
	at, err := time.Parse(time.RFC3339Nano, m[1])
	if err != nil {
		t.Fatalf("reconnect line time %q: %v", m[1], err)
	}
	d, err := time.ParseDuration(m[2])
	if err != nil {
		t.Fatalf("relist delay %q: %v", m[2], err)
	}
	return at, d
}
