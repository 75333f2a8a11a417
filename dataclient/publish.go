package dataclient

import (
	"errors"
	"time"

	"github.com/zalando/skipper/eskip"

	"github.com/bulkhead-router/bulkhead/routing"
)

// published is one applied table; immutable once made. Tables that differ
// only in their endpoints share the routes, their version and the
// sentinel: skipper is given a table only when its routes changed.
type published struct {
	version   uint64 // of the routes
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

// newPublished makes the published form of table; it keeps prev's routes
// (and version) when they are the same.
func newPublished(prev *published, source string, savedAt time.Time, table routing.Table) *published {
	p := &published{source: source, appliedAt: time.Now(), savedAt: savedAt, table: table}
	if prev != nil && sameRoutes(prev, table.Routes) {
		p.version, p.routes, p.byID = prev.version, prev.routes, prev.byID
		return p
	}
	p.version = 1
	if prev != nil {
		p.version = prev.version + 1
	}
	p.routes = make([]*eskip.Route, 0, len(table.Routes)+1)
	for i := range table.Routes {
		p.routes = append(p.routes, table.Routes[i].Eskip)
	}
	p.routes = append(p.routes, versionSentinel(p.version))
	p.byID = make(map[string]*eskip.Route, len(p.routes))
	for _, r := range p.routes {
		p.byID[r.Id] = r
	}
	return p
}

// sameRoutes reports whether routes are prev's (the sentinel aside).
func sameRoutes(prev *published, routes []routing.Route) bool {
	if len(prev.routes) != len(routes)+1 {
		return false
	}
	for i := range routes {
		old := prev.routes[i]
		if old != routes[i].Eskip && (old.Id != routes[i].Eskip.Id || !eskip.Eq(old, routes[i].Eskip)) {
			return false
		}
	}
	return true
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
		if cur != nil && (last == nil || cur.version != last.version) {
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
	if c.delivered == nil || c.delivered.version != p.version {
		c.metrics.routeUpdates.Inc()
	}
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
		if old, ok := prev.byID[r.Id]; !ok || old != r && !eskip.Eq(old, r) {
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
	var unused map[string][]string
	for v, keys := range c.unusedAfter {
		if v > version {
			continue
		}
		delete(c.unusedAfter, v)
		for _, k := range keys {
			if _, named := c.current.table.Backend(k); !named {
				if unused == nil {
					unused = map[string][]string{}
				}
				unused[k.String()] = nil
			}
		}
	}
	c.mu.Unlock()
	if len(unused) > 0 && c.o.Endpoints != nil {
		c.o.Endpoints.SetEndpoints(unused)
	}
	for _, t := range live {
		c.metrics.convergence.Observe(max(now.Sub(t), 0).Seconds())
	}
}
