package chaos

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/loadgen"
)

// Run performs one scenario in t and fills o: environment, Setup, load,
// Fault, load stopped, Check, Judge. o is filled as far as the scenario
// got even when a helper ends it with t.Fatal (which leaves Run through
// runtime.Goexit), so callers read o after t's goroutine has finished
// (after t.Run returns, or after RunAll's goroutine ends).
func Run[E Env](t testing.TB, s Scenario[E], newEnv func(testing.TB) (E, error), o *Outcome) {
	start := time.Now()
	o.Scenario, o.Bound = s.Name, s.Bound
	if s.Skip != "" {
		o.Skipped = s.Skip
		return
	}
	var c *Common
	defer func() {
		o.Took = time.Since(start)
		if c != nil {
			c.mu.Lock()
			o.Notes = append([]string(nil), c.notes...)
			c.mu.Unlock()
		}
		if t.Failed() && len(o.Failures) == 0 {
			o.fail("a step failed (see the log)")
		}
		if t.Skipped() && !t.Failed() {
			// A host that cannot run pods (outside CI): not a pass.
			o.Skipped = "skipped by the environment (see the log)"
		}
	}()
	fail := func(format string, args ...any) {
		o.fail(format, args...)
		t.Errorf(format, args...)
	}

	env, err := newEnv(t)
	if err != nil {
		fail("environment: %v", err)
		return
	}
	c = env.common()
	if s.Setup != nil {
		c.Log.Info("setup")
		if err := s.Setup(env); err != nil {
			fail("setup: %v", err)
			return
		}
	}
	specs := s.Loads
	if len(specs) == 0 {
		specs = []LoadSpec{{}}
	}
	l := startLoads(c, specs, s.TakeOutAfter)
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			l.stop(o)
		}
	}
	defer stop()
	if err := l.warm(c); err != nil {
		fail("load: %v", err)
		return
	}
	c.Log.Info("fault")
	faultErr := s.Fault(env)
	stop()
	if faultErr != nil {
		fail("fault: %v", faultErr)
	}
	if s.Check != nil && faultErr == nil {
		if err := s.Check(env, o); err != nil {
			fail("check: %v", err)
		}
	}
	judge := s.Judge
	if judge == nil {
		judge = ZeroFailures[E]
	}
	if err := judge(env, o); err != nil {
		fail("bound: %v", err)
	}
}

// running is the load of one scenario and its readiness prober.
type running struct {
	specs []LoadSpec
	rates []float64
	loads []*loadgen.Load

	quit    chan struct{}
	done    sync.WaitGroup
	probes  atomic.Int64
	unready atomic.Int64

	takeOutAfter int
	takenOut     atomic.Pointer[time.Time]
}

func startLoads(c *Common, specs []LoadSpec, takeOutAfter int) *running {
	r := &running{quit: make(chan struct{}), takeOutAfter: takeOutAfter}
	for _, s := range specs {
		s = s.withDefaults()
		rate := c.Rate * s.Share
		r.specs = append(r.specs, s)
		r.rates = append(r.rates, rate)
		r.loads = append(r.loads, loadgen.Start(
			loadgen.Target{Method: s.Method, URL: c.Target.URL + s.Path, Host: c.Target.Host},
			loadgen.Options{Rate: rate}))
	}
	if c.Target.ReadyURL != "" {
		r.done.Add(1)
		go r.probe(c.Target.ReadyURL)
	}
	return r
}

// probe asks for readiness every 100 ms, as an ALB health check would
// (more often, to catch short flips).
func (r *running) probe(url string) {
	defer r.done.Done()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	consecutive := 0
	for {
		select {
		case <-r.quit:
			return
		case <-tick.C:
		}
		r.probes.Add(1)
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if err == nil && resp.StatusCode == http.StatusOK {
			consecutive = 0
			continue
		}
		r.unready.Add(1)
		if consecutive++; r.takeOutAfter > 0 && consecutive == r.takeOutAfter {
			// Out of service: no new requests; those in flight finish.
			now := time.Now()
			r.takenOut.Store(&now)
			for _, l := range r.loads {
				l.Stop()
			}
			return
		}
	}
}

// warm waits until every stream has had answers, so the fault hits a
// router that is already carrying traffic.
func (r *running) warm(c *Common) error {
	return c.Await(30*time.Second, "load flowing", func() error {
		for i, l := range r.loads {
			sent, _ := l.Snapshot()
			if float64(sent) < r.rates[i]/2 {
				return errors.New("not yet")
			}
		}
		return nil
	})
}

func (r *running) stop(o *Outcome) {
	close(r.quit)
	r.done.Wait()
	for i, l := range r.loads {
		o.Loads = append(o.Loads, LoadResult{Method: r.specs[i].Method, Path: r.specs[i].Path, Rate: r.rates[i], Result: l.Stop()})
	}
	o.Probes, o.Unready = r.probes.Load(), r.unready.Load()
	if t := r.takenOut.Load(); t != nil {
		o.TakenOut = *t
	}
}

// errNotYet is what a polled condition returns while it does not hold.
var errNotYet = errors.New("not yet")

// notYet is errNotYet with detail.
func notYet(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errNotYet, fmt.Sprintf(format, args...))
}
