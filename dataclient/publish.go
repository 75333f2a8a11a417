package dataclient

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zalando/skipper/eskip"
	skrouting "github.com/zalando/skipper/routing"

	"github.com/bulkhead-router/bulkhead/routing"
)

// published is one applied table; immutable once made. Its routes are
// split into shards (routing.RouteShard), one skipper table each: a change
// gives skipper only the shards whose routes changed. Tables that differ
// only in their endpoints share the shards and the version: skipper is
// given a table only when its routes changed.
type published struct {
	version   uint64 // of the routes: bumped when any shard's routes change
	source    string
	appliedAt time.Time
	savedAt   time.Time // for a snapshot: when it was written
	// table is the applied table; when patched is set, its Backends are
	// an earlier table's list, with the right keys in the right places
	// but not these endpoints: read them with endpointsAt, or the whole
	// table with fullTable.
	table routing.Table
	// patched are the endpoints endpoint-only rebuilds changed since the
	// last table with a Backends list of its own, by place in that list
	// (an endpoint-only rebuild changes no key). Copying a list of 10,000
	// backends on every endpoint change was most of the change's garbage.
	patched map[int][]routing.Endpoint
	flat    struct {
		once sync.Once
		list []routing.Backend
	}
	// snap is the objects the table was built from (held ones included);
	// nil for a table loaded from disk.
	snap   *servedObjects
	shards []*shardTable
}

// maxPatchedBackends is how many backends' endpoints a published table
// keeps beside its Backends list before an endpoint-only rebuild makes the
// list again: each change copies the patches, and this bounds the copy.
const maxPatchedBackends = 256

// endpointsAt is the current endpoints of the backend at place i of
// table.Backends.
func (p *published) endpointsAt(i int) []routing.Endpoint {
	if eps, ok := p.patched[i]; ok {
		return eps
	}
	return p.table.Backends[i].Endpoints
}

// fullTable is the table with its own Backends list, made once, when
// first asked for (a reader of the whole table, the stored table's writer,
// a full rebuild's comparison).
func (p *published) fullTable() routing.Table {
	if len(p.patched) == 0 {
		return p.table
	}
	p.flat.once.Do(func() { p.flat.list = patchedBackends(p.table.Backends, p.patched) })
	t := p.table
	t.Backends = p.flat.list
	return t
}

// patchedBackends is a copy of list with the endpoints of patched.
func patchedBackends(list []routing.Backend, patched map[int][]routing.Endpoint) []routing.Backend {
	out := slices.Clone(list)
	for i, eps := range patched {
		out[i].Endpoints = eps
	}
	return out
}

// shardTable is one shard's routes, as skipper gets them; immutable, and
// shared by the published tables in which the shard did not change.
type shardTable struct {
	version uint64                  // the published version that made it
	routes  []*eskip.Route          // the shard's routes plus its version sentinel
	byID    map[string]*eskip.Route // the same, by ID
}

// newPublished makes the published form of table in n shards; it keeps
// prev's shards (and version) where their routes are the same.
func newPublished(prev *published, source string, savedAt time.Time, table routing.Table, n int) *published {
	p := &published{source: source, appliedAt: time.Now(), savedAt: savedAt, table: table, version: 1}
	if prev == nil || len(prev.shards) != n {
		if prev != nil {
			p.version = prev.version + 1
		}
		lists := make([][]*eskip.Route, n)
		for i := range table.Routes {
			addToShards(lists, table.Routes[i].Eskip, n)
		}
		p.shards = make([]*shardTable, n)
		for s, routes := range lists {
			p.shards[s] = newShardTable(routes, p.version, s)
		}
		return p
	}
	// The translator hands back the same route objects for what did not
	// change, so the routes that changed are found by pointer, and only
	// their shards are made again (at 10,000 routes, finding every route's
	// shard on every change was a tenth of an Ingress change's CPU).
	p.version = prev.version
	p.shards = prev.shards
	if sameSlice(prev.table.Routes, table.Routes) {
		return p
	}
	removed, added := changedRoutes(prev.table.Routes, table.Routes)
	if len(removed) == 0 && len(added) == 0 {
		return p
	}
	touched := make([]bool, n)
	for _, r := range append(slices.Clip(removed), added...) {
		if s := routing.RouteShard(r, n); s >= 0 {
			touched[s] = true
		} else {
			for s := range touched {
				touched[s] = true
			}
		}
	}
	gone := make(map[*eskip.Route]bool, len(removed))
	for _, r := range removed {
		gone[r] = true
	}
	lists := make([][]*eskip.Route, n)
	for _, r := range added {
		addToShards(lists, r, n)
	}
	p.version = prev.version + 1
	p.shards = slices.Clone(prev.shards)
	for s := range p.shards {
		if !touched[s] {
			continue
		}
		old := prev.shards[s].routes
		routes := lists[s]
		for _, r := range old[:len(old)-1] { // without the sentinel
			if !gone[r] {
				routes = append(routes, r)
			}
		}
		slices.SortFunc(routes, func(a, b *eskip.Route) int { return strings.Compare(a.Id, b.Id) })
		p.shards[s] = newShardTable(routes, p.version, s)
	}
	return p
}

// addToShards adds r to the list of its shard, or of every shard.
func addToShards(lists [][]*eskip.Route, r *eskip.Route, n int) {
	if s := routing.RouteShard(r, n); s >= 0 {
		lists[s] = append(lists[s], r)
		return
	}
	for s := range lists {
		lists[s] = append(lists[s], r)
	}
}

func newShardTable(routes []*eskip.Route, version uint64, shard int) *shardTable {
	st := &shardTable{version: version, routes: append(routes, versionSentinel(version, shard))}
	st.byID = make(map[string]*eskip.Route, len(st.routes))
	for _, r := range st.routes {
		st.byID[r.Id] = r
	}
	return st
}

// changedRoutes are the routes of prev that next does not have (by
// pointer) and those of next that prev does not have. Both are sorted by
// ID; were they not, a route would at worst be counted as removed and
// added again, never missed.
func changedRoutes(prev, next []*routing.Route) (removed, added []*eskip.Route) {
	i, j := 0, 0
	for i < len(prev) || j < len(next) {
		switch {
		case i < len(prev) && j < len(next) && prev[i].Eskip == next[j].Eskip:
			i, j = i+1, j+1
		case j == len(next):
			removed = append(removed, prev[i].Eskip)
			i++
		case i == len(prev):
			added = append(added, next[j].Eskip)
			j++
		default:
			switch c := strings.Compare(prev[i].Eskip.Id, next[j].Eskip.Id); {
			case c < 0:
				removed = append(removed, prev[i].Eskip)
				i++
			case c > 0:
				added = append(added, next[j].Eskip)
				j++
			default:
				removed, added = append(removed, prev[i].Eskip), append(added, next[j].Eskip)
				i, j = i+1, j+1
			}
		}
	}
	return removed, added
}

// sameSlice reports whether a and b are the same slice (not only equal).
func sameSlice(a, b []*routing.Route) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// errNotSynced is what skipper gets until there is a table: an error keeps
// skipper's current table, where an empty success would wipe it.
var errNotSynced = errors.New(NotSyncedMessage)

// NotSyncedMessage is the text of the error LoadAll returns before the
// first table, so the caller can treat that expected error quietly.
const NotSyncedMessage = "kubernetes route source has not synced yet"

// Shard is the DataClient of shard i of n (Options.Shards) for the skipper
// table that serves it. The Client itself is shard 0's.
func (c *Client) Shard(i int) skrouting.DataClient { return shardClient{c: c, shard: i} }

type shardClient struct {
	c     *Client
	shard int
}

func (s shardClient) LoadAll() ([]*eskip.Route, error) { return s.c.loadAll(s.shard) }
func (s shardClient) LoadUpdate() ([]*eskip.Route, []string, error) {
	return s.c.loadUpdate(s.shard)
}
func (s shardClient) Name() string { return s.c.Name() }

// LoadAll returns shard 0's whole current table (see loadAll).
func (c *Client) LoadAll() ([]*eskip.Route, error) { return c.loadAll(0) }

// LoadUpdate returns shard 0's changes (see loadUpdate).
func (c *Client) LoadUpdate() ([]*eskip.Route, []string, error) { return c.loadUpdate(0) }

// loadAll returns a shard's whole current table. Before there is one it
// waits (about a second at most) for the first, then fails with
// errNotSynced: skipper retries a failed LoadAll on every poll tick, and
// the tick is short so that updates go live fast, so failing at once would
// spin.
func (c *Client) loadAll(shard int) ([]*eskip.Route, error) {
	timeout := time.NewTimer(loadUpdateWait)
	defer timeout.Stop()
	for {
		c.mu.Lock()
		if c.current != nil {
			st := c.current.shards[shard]
			c.deliverLocked(shard, st)
			c.mu.Unlock()
			return st.routes, nil
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

// loadUpdate waits for a newer table of the shard than skipper has (at
// most about a second) and returns the routes that changed and the IDs
// that were deleted.
func (c *Client) loadUpdate(shard int) ([]*eskip.Route, []string, error) {
	timeout := time.NewTimer(loadUpdateWait)
	defer timeout.Stop()
	for {
		c.mu.Lock()
		cur, wait := c.current, c.newTable
		if cur != nil {
			st, last := cur.shards[shard], c.delivered[shard]
			if st != last {
				changed, deleted := diff(last, st)
				c.deliverLocked(shard, st)
				c.mu.Unlock()
				return changed, deleted, nil
			}
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

func (c *Client) deliverLocked(shard int, st *shardTable) {
	if c.delivered[shard] != st {
		c.metrics.routeUpdates.Inc()
	}
	c.delivered[shard] = st
}

// diff returns the routes of cur that are new or different from prev, and
// the IDs of prev that cur no longer has.
func diff(prev, cur *shardTable) (changed []*eskip.Route, deleted []string) {
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
	cur := c.current
	c.mu.Unlock()
	if cur == nil {
		return routing.Table{}, false
	}
	return cur.fullTable(), true
}

// pendingTable is a published version whose route changes are not live
// in every shard yet: the change times it carries are observed, and the
// backends no route names any more are dropped, once each shard it changed
// has installed it (or a newer table).
type pendingTable struct {
	version uint64
	waiting []int // shards still to install it
	times   []time.Time
	unused  []routing.BackendKey
}

// tableLive is called (by the sentinel post-processor) when skipper has
// installed a shard's table of that version: every change it contains is
// live in that shard.
func (c *Client) tableLive(shard int, version uint64) {
	now := time.Now()
	c.mu.Lock()
	var live []time.Time
	var unused map[string][]string
	keep := c.pending[:0]
	for _, p := range c.pending {
		if p.version <= version {
			p.waiting = slices.DeleteFunc(p.waiting, func(s int) bool { return s == shard })
		}
		if len(p.waiting) > 0 {
			keep = append(keep, p)
			continue
		}
		live = append(live, p.times...)
		for _, k := range p.unused {
			if _, named := c.current.table.Backend(k); !named {
				if unused == nil {
					unused = map[string][]string{}
				}
				unused[k.String()] = nil
			}
		}
	}
	clear(c.pending[len(keep):])
	c.pending = keep
	c.mu.Unlock()
	if len(unused) > 0 && c.o.Endpoints != nil {
		c.o.Endpoints.SetEndpoints(unused)
	}
	for _, t := range live {
		c.metrics.convergence.Observe(max(now.Sub(t), 0).Seconds())
	}
}
