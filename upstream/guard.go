package upstream

import (
	"log/slog"
	"slices"

	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/routing"
)

// unchosenGuard is the post-processor of Upstream.PostProcessor: it drops
// every dynamic route that lacks the BackendFilterName filter. Skipper
// sends a request of such a route to the host its Host header names;
// RefuseUnrouted refuses plain requests in the round tripper, but
// upgrades bypass the round tripper, so only dropping the route stops
// them.
type unchosenGuard struct{ log *slog.Logger }

// Do implements routing.PostProcessor.
func (g unchosenGuard) Do(routes []*routing.Route) []*routing.Route {
	return slices.DeleteFunc(routes, func(r *routing.Route) bool {
		if r.BackendType != eskip.DynamicBackend {
			return false
		}
		for _, f := range r.Filters {
			if f.Name == BackendFilterName {
				return false
			}
		}
		g.log.Error("route dropped: a dynamic route must choose its endpoint with "+BackendFilterName, "route", r.Id)
		return true
	})
}
