package dataclient

import (
	"fmt"
	"net/http"

	"github.com/zalando/skipper/eskip"
	skrouting "github.com/zalando/skipper/routing"
)

// The version sentinel is one route per table that never matches a request
// (its predicate is always false, and it sits on a path of its own so it is
// never even evaluated for real traffic). It exists so that the moment
// skipper installs a table can be observed: skipper offers no callback, but
// it runs post-processors over every table it is about to make live.
const (
	sentinelID        = "bulkhead_table_version"
	sentinelPredicate = "BulkheadTableVersion"
	sentinelPath      = "/.well-known/bulkhead/table-version"
)

// versionSentinel is the sentinel of a shard's table made at version.
func versionSentinel(version uint64, shard int) *eskip.Route {
	return &eskip.Route{
		Id: sentinelID,
		Predicates: []*eskip.Predicate{
			{Name: "Path", Args: []any{sentinelPath}},
			{Name: sentinelPredicate, Args: []any{float64(version), float64(shard)}},
		},
		BackendType: eskip.ShuntBackend,
		Shunt:       true,
	}
}

// SentinelPredicate is the predicate specification skipper needs to accept
// the sentinel route; register it in skipper's routing options.
func (c *Client) SentinelPredicate() skrouting.PredicateSpec { return sentinelSpec{} }

// PostProcessor reports each installed table's version back to the client,
// which turns it into convergence-latency observations; register it last in
// skipper's routing options.
func (c *Client) PostProcessor() skrouting.PostProcessor { return sentinelObserver{c} }

type sentinelSpec struct{}

func (sentinelSpec) Name() string { return sentinelPredicate }

func (sentinelSpec) Create(args []any) (skrouting.Predicate, error) {
	if len(args) < 1 || len(args) > 2 {
		return nil, fmt.Errorf("%s takes a table version and a shard", sentinelPredicate)
	}
	v, ok := args[0].(float64)
	if !ok || v < 0 {
		return nil, fmt.Errorf("%s wants a table version, got %v", sentinelPredicate, args[0])
	}
	p := versionPredicate{version: uint64(v)}
	if len(args) == 2 {
		s, ok := args[1].(float64)
		if !ok || s < 0 {
			return nil, fmt.Errorf("%s wants a shard, got %v", sentinelPredicate, args[1])
		}
		p.shard = int(s)
	}
	return p, nil
}

// versionPredicate never matches; it only carries the version and shard.
type versionPredicate struct {
	version uint64
	shard   int
}

func (versionPredicate) Match(*http.Request) bool { return false }

type sentinelObserver struct{ c *Client }

func (o sentinelObserver) Do(routes []*skrouting.Route) []*skrouting.Route {
	for _, r := range routes {
		if r.Id != sentinelID {
			continue
		}
		for _, p := range r.Predicates {
			if v, ok := p.(versionPredicate); ok {
				o.c.tableLive(v.shard, v.version)
			}
		}
		break
	}
	return routes
}
