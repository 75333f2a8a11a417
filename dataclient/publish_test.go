package dataclient

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/zalando/skipper/eskip"

	"github.com/bulkhead-router/bulkhead/routing"
)

// hostRoutes are routes of one host each (host key "/example/<label>"),
// plus one host-less route, which every shard holds.
func hostRoutes(labels ...string) []*routing.Route {
	var out []*routing.Route
	for _, l := range labels {
		out = append(out, &routing.Route{Eskip: &eskip.Route{Id: "r_" + l,
			Predicates:  []*eskip.Predicate{{Name: "PathSubtree", Args: []any{"/example/" + l}}},
			BackendType: eskip.ShuntBackend, Shunt: true}})
	}
	out = append(out, &routing.Route{Eskip: &eskip.Route{Id: "any",
		Predicates:  []*eskip.Predicate{{Name: "PathSubtree", Args: []any{"/:parent/:label/any"}}},
		BackendType: eskip.ShuntBackend, Shunt: true}})
	slices.SortFunc(out, func(a, b *routing.Route) int {
		if a.Eskip.Id < b.Eskip.Id {
			return -1
		}
		return 1
	})
	return out
}

// A route change gives skipper the shard it touched and nothing else; the
// change is live once that shard has installed it.
func TestShardsGetOnlyTheirChanges(t *testing.T) {
	const n = 4
	c := New(Options{Shards: n})
	var labels []string
	for i := range 40 {
		labels = append(labels, fmt.Sprintf("h%02d", i))
	}
	c.apply(routing.Table{Routes: hostRoutes(labels...)}, SourceAPIServer, time.Time{}, nil)
	first := c.current
	total := 0
	for s := range n {
		routes, err := c.Shard(s).LoadAll()
		if err != nil {
			t.Fatal(err)
		}
		total += len(routes)
		if !slices.ContainsFunc(routes, func(r *eskip.Route) bool { return r.Id == "any" }) {
			t.Errorf("shard %d lacks the host-less route", s)
		}
		c.tableLive(s, first.version)
	}
	if want := 40 + n*2; total != want { // each host once; the host-less route and a sentinel per shard
		t.Fatalf("%d routes in %d shards, want %d", total, n, want)
	}

	// h07's route changes (another backend type): only its shard changes.
	changed := slices.Clone(c.current.table.Routes) // the same route objects but one, as the translator hands them
	for i, r := range changed {
		if r.Eskip.Id == "r_h07" {
			cp := *r.Eskip
			cp.Shunt, cp.BackendType, cp.Backend = false, eskip.NetworkBackend, "http://192.0.2.1"
			rc := *r
			rc.Eskip = &cp
			changed[i] = &rc
		}
	}
	c.mu.Lock()
	c.undelivered = []time.Time{time.Now()}
	c.mu.Unlock()
	c.apply(routing.Table{Routes: changed}, SourceAPIServer, time.Time{}, nil)
	home := routing.RouteShard(&eskip.Route{Predicates: []*eskip.Predicate{{Name: "PathSubtree", Args: []any{"/example/h07"}}}}, n)
	for s := range n {
		if same := c.current.shards[s] == first.shards[s]; same == (s == home) {
			t.Errorf("shard %d: unchanged %v after a change of shard %d's route", s, same, home)
		}
	}
	got, deleted, err := c.Shard(home).LoadUpdate()
	if err != nil || len(deleted) != 0 || len(got) != 2 || got[0].Id != "r_h07" || got[1].Id != sentinelID {
		t.Fatalf("shard %d's update: %v %v %v, want r_h07 and its sentinel", home, ids(got), deleted, err)
	}
	if len(c.pending) != 1 || !slices.Equal(c.pending[0].waiting, []int{home}) {
		t.Fatalf("pending %+v, want shard %d waited for", c.pending, home)
	}
	c.tableLive(home, c.current.version)
	if len(c.pending) != 0 {
		t.Fatalf("pending %+v after the shard installed its table", c.pending)
	}

	// A route leaves: its shard changes, and only it.
	before := c.current
	without := slices.DeleteFunc(slices.Clone(c.current.table.Routes), func(r *routing.Route) bool { return r.Eskip.Id == "r_h03" })
	c.apply(routing.Table{Routes: without}, SourceAPIServer, time.Time{}, nil)
	h03 := routing.RouteShard(&eskip.Route{Predicates: []*eskip.Predicate{{Name: "PathSubtree", Args: []any{"/example/h03"}}}}, n)
	for s := range n {
		_, has := c.current.shards[s].byID["r_h03"]
		if same := c.current.shards[s] == before.shards[s]; same == (s == h03) || has {
			t.Errorf("shard %d after r_h03 left: unchanged %v, still has it %v", s, same, has)
		}
	}
	// The host-less route changes: every shard changes.
	before = c.current
	anyChanged := slices.Clone(c.current.table.Routes)
	for i, r := range anyChanged {
		if r.Eskip.Id == "any" {
			cp := *r.Eskip
			cp.Predicates = []*eskip.Predicate{{Name: "PathSubtree", Args: []any{"/:parent/:label/other"}}}
			rc := *r
			rc.Eskip = &cp
			anyChanged[i] = &rc
		}
	}
	c.apply(routing.Table{Routes: anyChanged}, SourceAPIServer, time.Time{}, nil)
	for s := range n {
		if c.current.shards[s] == before.shards[s] || c.current.shards[s].byID["any"].Predicates[0].Args[0] != "/:parent/:label/other" {
			t.Errorf("shard %d did not get the host-less route's change", s)
		}
	}

	// An endpoint change keeps the routes: no shard changes, no version.
	versionBefore := c.current.version
	c.apply(routing.Table{Routes: c.current.table.Routes, Backends: []routing.Backend{{}}}, SourceAPIServer, time.Time{}, nil)
	if v := c.current.version; v != versionBefore {
		t.Errorf("version %d after an endpoint change, want %d", v, versionBefore)
	}
}
