package dataclient

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/logging"
	"github.com/bulkhead-router/bulkhead/routing"
)

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
