package dataclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/zalando/skipper/eskip"
	skrouting "github.com/zalando/skipper/routing"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"

	"github.com/bulkhead-router/bulkhead/internal/logging"
	"github.com/bulkhead-router/bulkhead/routing"
)

// Options configure New.
type Options struct {
	// Connector reaches the API server. Either it or Client is required.
	Connector Connector
	// Client is a fixed client (tests with a fake clientset): informers are
	// never restarted on new connections.
	Client kubernetes.Interface
	// Translate are the translation options (the controller name).
	Translate routing.Options
	// Store keeps the last applied table on local disk. Nil: none.
	Store TableStore
	// SyncTimeout is how long a start waits for the API server before
	// serving the stored table; an API server that does not answer at all
	// is given up on at once. Zero: 5 s.
	SyncTimeout time.Duration
	// Guard holds back updates that remove too much at once.
	Guard GuardOptions
	// Heartbeat is how often a connected client checks that the API
	// server is still there. Zero: 5 s.
	Heartbeat time.Duration
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
	// OnTable, if set, is called from the rebuild goroutine with every
	// applied table (the status writer follows it). It must not block long.
	OnTable func(routing.Table)
}

// TableStore is where the last applied table is kept across restarts.
type TableStore interface {
	// Load returns the stored table and when it was saved.
	Load() (routing.Table, time.Time, error)
	// Offer hands over a newly applied table; it must not block.
	Offer(routing.Table)
}

// Where the applied table came from.
const (
	SourceAPIServer = "apiserver"
	SourceSnapshot  = "snapshot"
)

// Client is the Kubernetes route source. Create it with New, start it with
// Run, and give it to skipper as a DataClient.
type Client struct {
	o       Options
	log     *slog.Logger
	metrics *metrics
	conn    Connector
	changed chan struct{} // size 1: a rebuild is wanted
	lost    chan struct{} // size 1: the watch reported an error
	confirm chan struct{} // size 1: an operator confirmed a held update
	guard   *guard        // used by the rebuild goroutine only

	mu          sync.Mutex
	watch       *watcher // nil until Run
	stopWatch   context.CancelFunc
	watchGen    chan struct{} // closed and replaced when another watcher is installed
	current     *published    // the applied table; nil until there is one
	newTable    chan struct{} // closed and replaced when current changes
	delivered   *published    // what skipper has been given
	undelivered []time.Time   // change times in tables not yet given to skipper
	inFlight    map[uint64][]time.Time
	holdView    []HeldObject // what the guard holds, for Status; nil when nothing
	api         connState
	closed      chan struct{}
	closeOnce   sync.Once
	lastProbs   []routing.Problem
	nodeAddrs   []netip.Addr // set by SetNodeAddresses; nil: o.Translate's
}

var (
	_ skrouting.DataClient      = (*Client)(nil)
	_ skrouting.NamedDataClient = (*Client)(nil)
)

// published is one applied table; immutable once made.
type published struct {
	version   uint64
	source    string
	appliedAt time.Time
	savedAt   time.Time // for a snapshot: when it was written
	table     routing.Table
	// snap is the objects the table was built from (held ones included);
	// nil for a table loaded from disk.
	snap   *routing.Snapshot
	routes []*eskip.Route          // the table's routes plus the version sentinel
	byID   map[string]*eskip.Route // the same, by ID
}

// connState is what the client knows of its API server.
type connState struct {
	connected bool
	since     time.Time // of the current state
	lastSync  time.Time
	lastError string
}

// New prepares the client. Nothing runs until Run.
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
	if o.SyncTimeout == 0 {
		o.SyncTimeout = 5 * time.Second
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = 5 * time.Second
	}
	o.Guard = o.Guard.withDefaults()
	conn := o.Connector
	if conn == nil {
		conn = staticConnector{client: o.Client}
	}
	c := &Client{
		o:        o,
		log:      o.Log,
		conn:     conn,
		changed:  make(chan struct{}, 1),
		lost:     make(chan struct{}, 1),
		confirm:  make(chan struct{}, 1),
		newTable: make(chan struct{}),
		inFlight: map[uint64][]time.Time{},
		closed:   make(chan struct{}),
		api:      connState{since: time.Now()},
		watchGen: make(chan struct{}),
		guard:    newGuard(o.Guard),
	}
	c.metrics = newMetrics(o.Registerer, c)
	return c
}

// Name identifies this client in skipper's logs and metrics.
func (c *Client) Name() string { return "kubernetes" }

// Run watches the cluster and keeps the table until ctx ends.
//
// At start it waits for the informers to sync. If the API server does not
// answer, or does not sync within SyncTimeout, it serves the stored table
// (if there is one) and keeps trying. A lost connection never touches the
// table; when the API server is back after an outage, the informers are
// restarted on fresh connections rather than left to client-go's reflector
// backoff, which grows to 30 s.
func (c *Client) Run(ctx context.Context) error {
	go c.supervise(ctx)
	if err := c.startWatcher(ctx); err != nil {
		return err
	}
	if !c.initialSync(ctx) {
		return nil
	}
	for {
		// A hold ends on its own clock: nothing that happens meanwhile
		// moves it.
		var holdExpiry <-chan time.Time
		var holdTimer *time.Timer
		if next := c.guard.nextRelease(); !next.IsZero() {
			holdTimer = time.NewTimer(time.Until(next))
			holdExpiry = holdTimer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.changed:
			if !c.holdOff(ctx) {
				return nil
			}
			c.rebuild()
		case <-holdExpiry:
			c.rebuild() // the guard releases what is due
		case <-c.confirm:
			c.guard.confirm = true
			c.rebuild()
		}
		if holdTimer != nil {
			holdTimer.Stop()
		}
	}
}

// initialSync waits for the first sync, serving the stored table meanwhile
// when the API server is out of reach. It returns false if ctx ended.
func (c *Client) initialSync(ctx context.Context) bool {
	probeCtx, cancel := context.WithTimeout(ctx, c.o.SyncTimeout)
	defer cancel()
	if err := c.conn.Probe(probeCtx); err != nil {
		if ctx.Err() != nil {
			return false
		}
		c.log.Warn("API server unreachable at start; serving the stored table until it answers", logging.KeyError, err)
		c.setConnected(false, err.Error())
		c.useSnapshot()
		c.noteLost(err)
	} else if !c.currentWatcher().waitForSync(probeCtx) {
		if ctx.Err() != nil {
			return false
		}
		c.log.Warn("API server did not sync in time; serving the stored table until it does", "sync_timeout", c.o.SyncTimeout)
		c.setConnected(false, "not synced within the sync timeout")
		c.useSnapshot()
		c.noteLost(errors.New("not synced within the sync timeout"))
	} else {
		c.synced()
		return true
	}
	// Wait for a sync of the current watcher, or of one the supervisor
	// installs instead.
	for {
		c.mu.Lock()
		w, swapped := c.watch, c.watchGen
		c.mu.Unlock()
		wctx, stop := context.WithCancel(ctx)
		go func() {
			select {
			case <-swapped:
				stop()
			case <-wctx.Done():
			}
		}()
		ok := w.waitForSync(wctx)
		stop()
		if ctx.Err() != nil {
			return false
		}
		if ok && w == c.currentWatcher() {
			c.synced()
			return true
		}
	}
}

// synced is the first sync: the first table from the API server.
func (c *Client) synced() {
	c.metrics.synced.Set(1)
	c.setConnected(true, "")
	c.log.Info("kubernetes caches synced")
	// The first build reads the synced caches, so the signals of the
	// initial listing are covered by it: drop them rather than build twice.
	select {
	case <-c.changed:
	default:
	}
	c.rebuild()
}

func (c *Client) currentWatcher() *watcher {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watch
}

// startWatcher starts informers on a fresh client and installs them.
func (c *Client) startWatcher(ctx context.Context) error {
	w, stop, err := c.newStartedWatcher(ctx)
	if err != nil {
		return err
	}
	c.install(w, stop)
	return nil
}

func (c *Client) newStartedWatcher(ctx context.Context) (*watcher, context.CancelFunc, error) {
	client, err := c.conn.NewClient()
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	w := newWatcher(client, c.metrics, c.changed, c.noteLost)
	wctx, stop := context.WithCancel(ctx)
	w.start(wctx)
	return w, stop, nil
}

// install makes w the current watcher and stops the previous one.
func (c *Client) install(w *watcher, stop context.CancelFunc) {
	c.mu.Lock()
	old := c.stopWatch
	c.watch, c.stopWatch = w, stop
	close(c.watchGen)
	c.watchGen = make(chan struct{})
	c.mu.Unlock()
	if old != nil {
		old()
	}
}

// reconnectSyncTimeout bounds the relist of restarted informers.
const reconnectSyncTimeout = time.Minute

// supervise restarts the informers on fresh connections when the API
// server is back after an outage. Probes back off (jittered, capped at 2 s)
// while it is away, so its return is noticed within about 2 s; client-go's
// own reflector backoff would wait up to 30 s.
func (c *Client) supervise(ctx context.Context) {
	heartbeat := time.NewTicker(c.o.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.lost:
		case <-heartbeat.C:
			if !c.isConnected() {
				continue // not synced yet, or already handled
			}
			hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := c.conn.Alive(hctx)
			cancel()
			if err == nil {
				continue
			}
		}
		failures, ok := c.probeUntilUp(ctx)
		if !ok {
			return
		}
		if failures == 0 && c.isConnected() {
			continue // the watch failed but the server answers: client-go retries at once
		}
		w, stop, err := c.newStartedWatcher(ctx)
		if err == nil {
			sctx, cancel := context.WithTimeout(ctx, reconnectSyncTimeout)
			if !w.waitForSync(sctx) {
				err = errors.New("restarted informers did not sync within " + reconnectSyncTimeout.String())
			}
			cancel()
		}
		if err != nil {
			if stop != nil {
				stop()
			}
			c.log.Warn("reconnecting to the API server failed; retrying", logging.KeyError, err)
			c.noteLost(err)
			continue
		}
		w.inheritGone(c.currentWatcher())
		c.install(w, stop)
		outage := c.setConnected(true, "")
		c.metrics.reconnects.Inc()
		c.log.Info("reconnected to the API server; informers restarted", "outage", outage.Round(time.Millisecond))
		c.signal() // rebuild from the fresh caches
	}
}

// probeUntilUp probes with backoff until the API server answers, and
// returns how many probes failed; false if ctx ended.
func (c *Client) probeUntilUp(ctx context.Context) (int, bool) {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(200*time.Millisecond),
		backoff.WithMultiplier(1.6),
		backoff.WithRandomizationFactor(0.3),
		backoff.WithMaxInterval(2*time.Second),
		backoff.WithMaxElapsedTime(0), // never give up
	)
	failures := 0
	for {
		err := c.conn.Probe(ctx)
		if err == nil {
			return failures, true
		}
		if ctx.Err() != nil {
			return failures, false
		}
		failures++
		if failures == 1 {
			c.setConnected(false, err.Error())
		}
		select {
		case <-ctx.Done():
			return failures, false
		case <-time.After(b.NextBackOff()):
		}
	}
}

// noteLost hears a failed list or watch and wakes the supervisor. An
// expired resource version is client-go's normal relist, not an outage.
func (c *Client) noteLost(err error) {
	if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		return
	}
	select {
	case c.lost <- struct{}{}:
	default:
	}
}

// setConnected records the API server's state, logs transitions, and
// returns how long the previous state lasted.
func (c *Client) setConnected(connected bool, why string) time.Duration {
	now := time.Now()
	c.mu.Lock()
	prev := c.api
	if connected {
		c.api.lastSync = now
		c.api.lastError = ""
	} else {
		c.api.lastError = why
	}
	if prev.connected != connected {
		c.api.connected, c.api.since = connected, now
	}
	c.mu.Unlock()
	if connected {
		c.metrics.connected.Set(1)
		c.metrics.lastSync.Set(float64(now.UnixNano()) / 1e9)
	} else {
		c.metrics.connected.Set(0)
		if prev.connected {
			c.log.Warn("lost the API server; the current table keeps serving", logging.KeyError, why)
		}
	}
	return now.Sub(prev.since)
}

func (c *Client) isConnected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.api.connected
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
		case <-c.changed:
			left := time.Until(deadline)
			if left <= 0 {
				return true
			}
			timer.Reset(min(c.o.HoldOff, left))
		}
	}
}

// rebuild translates the current caches and applies the result, with the
// removals the deletion guard holds kept in it.
func (c *Client) rebuild() {
	start := time.Now()
	w := c.currentWatcher()
	if !w.hasSynced() {
		return // a restarted watcher still listing: keep what we have
	}
	changes := w.takeChanges()
	gone := w.takeGone()
	live := w.snapshot()
	opts := c.translateOptions()
	table := routing.Translate(live, opts)
	snap := live
	c.mu.Lock()
	cur := c.current
	c.mu.Unlock()
	if cur != nil {
		d := c.guard.plan(guardInput{
			now: start, served: cur.table, servedSnap: cur.snap, live: live, candidate: table,
			gone: gone, unannounced: cur.source == SourceSnapshot,
		})
		c.reportGuard(d)
		if c.guard.holding() {
			snap = c.guard.overlay(live)
			table = c.guard.keepRoutes(routing.Translate(snap, opts))
		}
	}
	c.metrics.rebuild.Observe(time.Since(start).Seconds())
	c.logProblems(table.Problems)
	c.mu.Lock()
	c.undelivered = append(c.undelivered, changes...)
	c.mu.Unlock()
	c.apply(table, SourceAPIServer, time.Time{}, snap)
	c.log.Debug("route table rebuilt", "routes", len(table.Routes), "problems", len(table.Problems), "duration", time.Since(start))
}

// reportGuard logs, counts and publishes what the guard decided.
func (c *Client) reportGuard(d guardDecision) {
	if len(d.held) > 0 {
		c.metrics.holds.Inc()
		first := d.held[0]
		c.log.Warn("deletion guard: holding removals it cannot explain as one user's act; additions and changes are applied, "+
			"the held objects are served as before",
			"held", describe(d.held), "since", first.since.UTC().Format(time.RFC3339), "until", first.until.UTC().Format(time.RFC3339),
			"window_ingresses", d.window[kindIngress], "window_services", d.window[kindService],
			"confirm", "POST /guard/confirm on the admin endpoint")
	}
	if len(d.released) > 0 {
		why := "hold period over"
		if d.confirmed {
			why = "confirmed by an operator"
		}
		c.metrics.released.WithLabelValues(releaseLabel(d.confirmed)).Add(float64(len(d.released)))
		c.log.Warn("deletion guard: applying held removals", "why", why, "removed", describe(d.released))
	}
	if len(d.back) > 0 {
		c.metrics.released.WithLabelValues("back").Add(float64(len(d.back)))
		c.log.Info("deletion guard: held objects are back in the cluster; no longer held", "back", describe(d.back))
	}
	held := c.guard.heldList()
	view := make([]HeldObject, 0, len(held))
	counts := map[string]int{}
	for _, h := range held {
		counts[h.ref.Kind]++
		view = append(view, HeldObject{
			Kind: h.ref.Kind, Namespace: h.ref.Namespace, Name: h.ref.Name,
			Since: h.since, ReleaseAt: h.until, Announced: h.announced, Routes: len(h.routes),
		})
	}
	for _, kind := range []string{kindIngress, kindService} {
		c.metrics.heldObjects.WithLabelValues(kind).Set(float64(counts[kind]))
	}
	if len(view) > 0 {
		c.metrics.holding.Set(1)
	} else {
		c.metrics.holding.Set(0)
		view = nil
	}
	c.mu.Lock()
	c.holdView = view
	c.mu.Unlock()
}

func releaseLabel(confirmed bool) string {
	if confirmed {
		return "confirmed"
	}
	return "expired"
}

// ConfirmHold applies every held removal now. It reports whether anything
// was held.
func (c *Client) ConfirmHold() bool {
	c.mu.Lock()
	holding := len(c.holdView) > 0
	c.mu.Unlock()
	if !holding {
		return false
	}
	select {
	case c.confirm <- struct{}{}:
	default:
	}
	return true
}

// apply makes table the current one.
func (c *Client) apply(table routing.Table, source string, savedAt time.Time, snap *routing.Snapshot) {
	c.mu.Lock()
	version := uint64(1)
	if c.current != nil {
		version = c.current.version + 1
	}
	c.current = newPublished(version, source, savedAt, table)
	c.current.snap = snap
	close(c.newTable)
	c.newTable = make(chan struct{})
	c.mu.Unlock()

	c.metrics.routes.Set(float64(len(table.Routes)))
	c.metrics.lastUpdate.Set(float64(time.Now().UnixNano()) / 1e9)
	c.metrics.setSource(source)
	if source == SourceAPIServer && c.o.Store != nil {
		c.o.Store.Offer(table)
	}
	if c.o.OnTable != nil {
		c.o.OnTable(table)
	}
}

// useSnapshot applies the stored table, if there is one and nothing better.
func (c *Client) useSnapshot() {
	if c.o.Store == nil {
		c.log.Warn("no state directory configured: nothing to serve until the API server answers")
		return
	}
	table, savedAt, err := c.o.Store.Load()
	if err != nil {
		c.log.Warn("no usable stored table: not ready until the API server answers", logging.KeyError, err)
		return
	}
	c.mu.Lock()
	have := c.current != nil
	c.mu.Unlock()
	if have {
		return
	}
	c.log.Info("serving the stored table", "routes", len(table.Routes), "saved_at", savedAt.UTC().Format(time.RFC3339), "age", time.Since(savedAt).Round(time.Second))
	c.apply(table, SourceSnapshot, savedAt, nil)
}

func (c *Client) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// SetNodeAddresses replaces routing.Options.NodeAddresses (the node's
// addresses, at which endpoints are refused) and rebuilds the table when
// they changed. The node watch calls it; the rebuild goroutine reads them.
func (c *Client) SetNodeAddresses(addrs []netip.Addr) {
	addrs = slices.Clone(addrs)
	if addrs == nil {
		addrs = []netip.Addr{}
	}
	c.mu.Lock()
	changed := c.nodeAddrs == nil || !slices.Equal(c.nodeAddrs, addrs)
	c.nodeAddrs = addrs
	c.mu.Unlock()
	if changed {
		c.signal()
	}
}

// translateOptions are Options.Translate with the latest node addresses.
func (c *Client) translateOptions() routing.Options {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.o.Translate
	if c.nodeAddrs != nil {
		o.NodeAddresses = c.nodeAddrs
	}
	return o
}

func newPublished(version uint64, source string, savedAt time.Time, table routing.Table) *published {
	routes := make([]*eskip.Route, 0, len(table.Routes)+1)
	for i := range table.Routes {
		routes = append(routes, table.Routes[i].Eskip)
	}
	routes = append(routes, versionSentinel(version))
	byID := make(map[string]*eskip.Route, len(routes))
	for _, r := range routes {
		byID[r.Id] = r
	}
	return &published{version: version, source: source, appliedAt: time.Now(), savedAt: savedAt, table: table, routes: routes, byID: byID}
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
	w := c.currentWatcher()
	if w == nil {
		return nil
	}
	objs := w.ingresses.GetStore().List()
	out := make([]*networkingv1.Ingress, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*networkingv1.Ingress))
	}
	return out
}
