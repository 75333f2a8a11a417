package dataclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zalando/skipper/eskip"
	skrouting "github.com/zalando/skipper/routing"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/bulkhead-router/bulkhead/internal/logging"
	"github.com/bulkhead-router/bulkhead/routing"
)

// Options configure New.
type Options struct {
	// Client reads the cluster.
	Client kubernetes.Interface
	// Translate are the translation options (the controller name).
	Translate routing.Options
	// Log receives problems (each logged once, when it appears) and
	// lifecycle lines. Nil: discarded.
	Log *slog.Logger
	// Registerer takes the metrics. Nil: not registered.
	Registerer prometheus.Registerer
	// HoldOff is how long the rebuild waits after a change for more changes.
	// Zero: 10 ms.
	HoldOff time.Duration
	// MaxDelay bounds the hold-off under a continuous stream of changes.
	// Zero: 100 ms.
	MaxDelay time.Duration
	// OnTable, if set, is called from the rebuild goroutine with every new
	// table (the status writer and the admin view follow it). It must not
	// block for long.
	OnTable func(routing.Table)
}

// Client is the Kubernetes route source. Create it with New, start it with
// Run, and give it to skipper as a DataClient.
type Client struct {
	o       Options
	log     *slog.Logger
	metrics *metrics
	watch   *watcher

	mu          sync.Mutex
	current     *published    // nil until the first table after sync
	newTable    chan struct{} // closed and replaced when current changes
	delivered   *published    // what skipper has been given
	undelivered []time.Time   // change times in tables not yet given to skipper
	inFlight    map[uint64][]time.Time
	closed      chan struct{}
	closeOnce   sync.Once
	lastProbs   []routing.Problem
}

var (
	_ skrouting.DataClient      = (*Client)(nil)
	_ skrouting.NamedDataClient = (*Client)(nil)
)

// published is one table as handed to skipper; immutable once made.
type published struct {
	version uint64
	table   routing.Table
	routes  []*eskip.Route          // the table's routes plus the version sentinel
	byID    map[string]*eskip.Route // the same, by ID
}

// New prepares the informers. Nothing runs until Run.
func New(o Options) *Client {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.HoldOff == 0 {
		o.HoldOff = 10 * time.Millisecond
	}
	if o.MaxDelay == 0 {
		o.MaxDelay = 100 * time.Millisecond
	}
	c := &Client{
		o:        o,
		log:      o.Log,
		metrics:  newMetrics(o.Registerer),
		newTable: make(chan struct{}),
		inFlight: map[uint64][]time.Time{},
		closed:   make(chan struct{}),
	}
	c.watch = newWatcher(o.Client, c.metrics)
	return c
}

// Name identifies this client in skipper's logs and metrics.
func (c *Client) Name() string { return "kubernetes" }

// Run watches the cluster and rebuilds the table on changes until ctx ends.
// It returns an error only if the caches never sync before ctx ends.
func (c *Client) Run(ctx context.Context) error {
	c.watch.start(ctx)
	start := time.Now()
	if !c.watch.waitForSync(ctx) {
		return fmt.Errorf("kubernetes caches did not sync: %w", ctx.Err())
	}
	c.metrics.synced.Set(1)
	c.log.Info("kubernetes caches synced", "after", time.Since(start).Round(time.Millisecond))
	// The first build reads the synced caches, so the signals of the initial
	// listing are covered by it: drop them rather than build twice.
	select {
	case <-c.watch.changed:
	default:
	}
	c.rebuild()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.watch.changed:
		}
		if !c.holdOff(ctx) {
			return nil
		}
		c.rebuild()
	}
}

// holdOff waits until no change has arrived for HoldOff, or MaxDelay has
// passed since the first one. It returns false if ctx ended.
func (c *Client) holdOff(ctx context.Context) bool {
	deadline := time.Now().Add(c.o.MaxDelay)
	timer := time.NewTimer(c.o.HoldOff)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-c.watch.changed:
			left := time.Until(deadline)
			if left <= 0 {
				return true
			}
			timer.Reset(min(c.o.HoldOff, left))
		}
	}
}

// rebuild translates the current caches and publishes the result.
func (c *Client) rebuild() {
	start := time.Now()
	changes := c.watch.takeChanges()
	table := routing.Translate(c.watch.snapshot(), c.o.Translate)
	c.metrics.rebuild.Observe(time.Since(start).Seconds())
	c.metrics.routes.Set(float64(len(table.Routes)))
	c.metrics.lastUpdate.Set(float64(time.Now().UnixNano()) / 1e9)
	c.logProblems(table.Problems)

	c.mu.Lock()
	version := uint64(1)
	if c.current != nil {
		version = c.current.version + 1
	}
	c.current = newPublished(version, table)
	c.undelivered = append(c.undelivered, changes...)
	close(c.newTable)
	c.newTable = make(chan struct{})
	c.mu.Unlock()

	c.log.Debug("route table rebuilt", "version", version, "routes", len(table.Routes),
		"problems", len(table.Problems), "duration", time.Since(start))
	if c.o.OnTable != nil {
		c.o.OnTable(table)
	}
}

func newPublished(version uint64, table routing.Table) *published {
	routes := make([]*eskip.Route, 0, len(table.Routes)+1)
	for i := range table.Routes {
		routes = append(routes, table.Routes[i].Eskip)
	}
	routes = append(routes, versionSentinel(version))
	byID := make(map[string]*eskip.Route, len(routes))
	for _, r := range routes {
		byID[r.Id] = r
	}
	return &published{version: version, table: table, routes: routes, byID: byID}
}

// logProblems logs problems that appeared and those that went away, once
// each, rather than every problem on every rebuild.
func (c *Client) logProblems(current []routing.Problem) {
	previous := c.lastProbs
	c.metrics.setProblems(previous, current)
	for _, p := range current {
		if !slices.Contains(previous, p) {
			c.log.Warn("object not fully routed: "+p.Message, logging.KeyKind, p.Kind,
				logging.KeyNamespace, p.Namespace, logging.KeyName, p.Name, "reason", string(p.Reason))
		}
	}
	for _, p := range previous {
		if !slices.Contains(current, p) {
			c.log.Info("problem resolved", logging.KeyKind, p.Kind,
				logging.KeyNamespace, p.Namespace, logging.KeyName, p.Name, "reason", string(p.Reason))
		}
	}
	c.lastProbs = current
}

// errNotSynced is what skipper gets until there is a table: an error keeps
// skipper's current table, where an empty success would wipe it.
var errNotSynced = errors.New(NotSyncedMessage)

// NotSyncedMessage is the text of the error LoadAll returns before the
// first table, so the caller can treat that expected error quietly.
const NotSyncedMessage = "kubernetes route source has not synced yet"

// LoadAll returns the whole current table. Before there is one it waits
// (about a second at most) for the first, then fails with errNotSynced:
// skipper retries a failed LoadAll on every poll tick, and the tick is
// short so that updates go live fast, so failing at once would spin.
func (c *Client) LoadAll() ([]*eskip.Route, error) {
	timeout := time.NewTimer(loadUpdateWait)
	defer timeout.Stop()
	for {
		c.mu.Lock()
		if c.current != nil {
			c.deliverLocked(c.current)
			routes := c.current.routes
			c.mu.Unlock()
			return routes, nil
		}
		wait := c.newTable
		c.mu.Unlock()
		select {
		case <-wait:
		case <-timeout.C:
			return nil, errNotSynced
		case <-c.closed:
			return nil, errNotSynced
		}
	}
}

// loadUpdateWait bounds how long LoadAll and LoadUpdate wait for a table,
// so skipper's poll loop still turns over (and can notice its shutdown).
const loadUpdateWait = time.Second

// LoadUpdate waits for a newer table than skipper has (at most about a
// second) and returns the routes that changed and the IDs that were deleted.
func (c *Client) LoadUpdate() ([]*eskip.Route, []string, error) {
	timeout := time.NewTimer(loadUpdateWait)
	defer timeout.Stop()
	for {
		c.mu.Lock()
		cur, last, wait := c.current, c.delivered, c.newTable
		if cur != nil && cur != last {
			changed, deleted := diff(last, cur)
			c.deliverLocked(cur)
			c.mu.Unlock()
			return changed, deleted, nil
		}
		c.mu.Unlock()
		select {
		case <-wait:
		case <-timeout.C:
			return nil, nil, nil
		case <-c.closed:
			return nil, nil, nil
		}
	}
}

func (c *Client) deliverLocked(p *published) {
	c.delivered = p
	if len(c.undelivered) > 0 {
		c.inFlight[p.version] = append(c.inFlight[p.version], c.undelivered...)
		c.undelivered = nil
	}
}

// diff returns the routes of cur that are new or different from prev, and
// the IDs of prev that cur no longer has.
func diff(prev, cur *published) (changed []*eskip.Route, deleted []string) {
	if prev == nil {
		return cur.routes, nil
	}
	for _, r := range cur.routes {
		if old, ok := prev.byID[r.Id]; !ok || !eskip.Eq(old, r) {
			changed = append(changed, r)
		}
	}
	for _, r := range prev.routes {
		if _, ok := cur.byID[r.Id]; !ok {
			deleted = append(deleted, r.Id)
		}
	}
	return changed, deleted
}

// Table returns the newest table and whether there is one yet.
func (c *Client) Table() (routing.Table, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current == nil {
		return routing.Table{}, false
	}
	return c.current.table, true
}

// Close releases a LoadUpdate that is waiting, so skipper can shut down.
func (c *Client) Close() {
	c.closeOnce.Do(func() { close(c.closed) })
}

// tableLive is called (by the sentinel post-processor) when skipper has
// installed the table with this version: every change it contains is live.
func (c *Client) tableLive(version uint64) {
	now := time.Now()
	c.mu.Lock()
	var live []time.Time
	for v, times := range c.inFlight {
		if v <= version {
			live = append(live, times...)
			delete(c.inFlight, v)
		}
	}
	c.mu.Unlock()
	for _, t := range live {
		c.metrics.convergence.Observe(max(now.Sub(t), 0).Seconds())
	}
}

// Ingresses lists the cached Ingresses (all classes). They are shared with
// the informer and must not be modified.
func (c *Client) Ingresses() []*networkingv1.Ingress {
	objs := c.watch.ingresses.GetStore().List()
	out := make([]*networkingv1.Ingress, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*networkingv1.Ingress))
	}
	return out
}
