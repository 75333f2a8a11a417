package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/grpcload"
	"github.com/bulkhead-router/bulkhead/internal/loadgen"
)

// Scenario is one named fault, injected while steady load runs through the
// router. E is the environment it runs in (*Local or *Cluster).
type Scenario[E Env] struct {
	// Name selects the scenario (-run) and names its row in the table.
	Name string
	// Summary says in one line what happens (docs/CHAOS.md says more).
	Summary string
	// Bound is the pass criterion in words, printed with the result.
	Bound string
	// Short puts the scenario in the CI subset (-short, go test).
	Short bool
	// Skip, when set, is why the scenario cannot run (yet). It is reported
	// as skipped with this reason, never as passed.
	Skip string
	// Loads are the request streams during the fault. Empty: GETs only.
	Loads []LoadSpec
	// TakeOutAfter makes the readiness prober behave as an ALB: after this
	// many consecutive failed probes (100 ms apart) it takes the router
	// out of service and stops sending it requests. 0: never (the load
	// runs on whatever /readyz says).
	TakeOutAfter int
	// Setup builds what the scenario needs, before the load starts.
	Setup func(E) error
	// Fault injects the fault and waits for the recovery, under load.
	Fault func(E) error
	// Check verifies what must hold after the load stopped (optional).
	Check func(E, *Outcome) error
	// Judge decides whether the outcome is within Bound. Nil: ZeroFailures.
	Judge func(E, *Outcome) error
}

// LoadSpec is one stream of requests.
type LoadSpec struct {
	Method string // default GET
	Path   string // default "/"
	// Share of the environment's rate for this stream. Zero: 1.
	Share float64
}

func (l LoadSpec) withDefaults() LoadSpec {
	if l.Method == "" {
		l.Method = http.MethodGet
	}
	if l.Path == "" {
		l.Path = "/"
	}
	if l.Share == 0 {
		l.Share = 1
	}
	return l
}

// Env is an environment scenarios run in. Its Common part is what the
// runner needs: where to send load and what to report.
type Env interface {
	common() *Common
}

// Common is the part of every environment the runner uses.
type Common struct {
	T   testing.TB
	Log *slog.Logger
	// Outage is how long a fault lasts where the scenario defines it by
	// time (an API server outage, a flapping pod).
	Outage time.Duration
	// Rate is the steady load in requests per second (before Share).
	Rate float64
	// Target is where the load goes; Setup may set it.
	Target Target

	mu    sync.Mutex
	notes []string
}

func (c *Common) common() *Common { return c }

// Target is where load is sent.
type Target struct {
	// URL is the router's base URL, e.g. http://127.0.0.1:PORT.
	URL string
	// Host is the Host header the Ingress matches.
	Host string
	// ReadyURL is polled every 100 ms during the load to check the router
	// never reports unready (what an ALB health check would see). Empty: not
	// watched (a real cluster's router readiness is the ALB's business).
	ReadyURL string
}

// Note records a measurement to print with the result.
func (c *Common) Note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.mu.Lock()
	c.notes = append(c.notes, msg)
	c.mu.Unlock()
	c.Log.Info(msg)
}

// Context ends when the scenario must stop (timeout, interrupt).
func (c *Common) Context() context.Context { return c.T.Context() }

// Hold waits d: the defined duration of a fault, not a wait for a
// condition. It returns early with an error if the scenario is stopped.
func (c *Common) Hold(d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-c.Context().Done():
		return c.Context().Err()
	}
}

// Await polls check every 25 ms until it returns nil, and returns the last
// error after timeout. Everything here is observed from outside (another
// process's metrics, answers), so polling is the only way to wait.
func (c *Common) Await(timeout time.Duration, what string, check func() error) error {
	ctx, cancel := context.WithTimeout(c.Context(), timeout)
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if stopped := c.Context().Err(); stopped != nil {
				return fmt.Errorf("%s: stopped while waiting (%w): %w", what, stopped, err)
			}
			return fmt.Errorf("%s: not after %s: %w", what, timeout, err)
		case <-tick.C:
		}
	}
}

// Outcome is what one scenario did.
type Outcome struct {
	Scenario string
	Bound    string
	// Skipped is the reason a scenario did not run.
	Skipped string
	Loads   []LoadResult
	// Probes and Unready count the readiness probes during the load and
	// those that did not answer 200.
	Probes, Unready int64
	// TakenOut is when the ALB stand-in stopped the load (TakeOutAfter),
	// zero if it did not.
	TakenOut time.Time
	Notes    []string
	// Failures say why the scenario failed: a step that went wrong or the
	// bound exceeded.
	Failures []string
	Took     time.Duration
}

// LoadResult is one stream's result.
type LoadResult struct {
	Method string
	Path   string
	Rate   float64
	*loadgen.Result
	// GRPC, for a stream of gRPC calls, is its own result: Result then
	// carries its counts (failed calls by gRPC code in ByError) and the
	// latencies are GRPC's.
	GRPC *grpcload.Result
}

// percentile is the stream's p-th percentile latency.
func (l LoadResult) percentile(p float64) time.Duration {
	if l.GRPC != nil {
		return l.GRPC.Percentile(p)
	}
	return l.Result.Percentile(p)
}

// Passed reports whether the scenario ran and stayed within its bound.
func (o *Outcome) Passed() bool { return o.Skipped == "" && len(o.Failures) == 0 }

// Verdict is PASS, FAIL or SKIP.
func (o *Outcome) Verdict() string {
	switch {
	case o.Skipped != "":
		return "SKIP"
	case len(o.Failures) > 0:
		return "FAIL"
	default:
		return "PASS"
	}
}

// Sent is the number of requests of all streams.
func (o *Outcome) Sent() int {
	n := 0
	for _, l := range o.Loads {
		n += l.Sent
	}
	return n
}

// Failed is the number of failed requests of all streams.
func (o *Outcome) Failed() int {
	n := 0
	for _, l := range o.Loads {
		n += l.Failed
	}
	return n
}

func (o *Outcome) fail(format string, args ...any) {
	o.Failures = append(o.Failures, fmt.Sprintf(format, args...))
}

// ZeroFailures is the default bound: load was sent, no request failed,
// and the router never reported unready.
func ZeroFailures[E Env](_ E, o *Outcome) error {
	var errs []string
	for _, l := range o.Loads {
		if l.Sent == 0 {
			errs = append(errs, l.Method+": no requests sent")
		}
		if l.Failed > 0 {
			errs = append(errs, fmt.Sprintf("%s: %d of %d failed (%s)", l.Method, l.Failed, l.Sent, failedBy(l.Result)))
		}
	}
	if o.Unready > 0 {
		errs = append(errs, fmt.Sprintf("/readyz not 200 in %d of %d probes", o.Unready, o.Probes))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// failedBy lists failures by status and error kind, e.g. "502: 3, timeout: 1".
func failedBy(r *loadgen.Result) string {
	if r == nil {
		return ""
	}
	return loadgen.Breakdown(r.ByStatus, r.ByError)
}
