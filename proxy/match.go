package proxy

import (
	"net/http"

	skrouting "github.com/zalando/skipper/routing"
)

// Match answers "which route would ServeHTTP send r along?" without
// sending it: the admin endpoint's /explain. It is not on the traffic path.
//
// It takes the steps ServeHTTP takes before skipper's lookup, in the same
// order and with the same code: the header limits (a refused request is
// answered that status, returned as refused, with no lookup), the headers
// listed in Connection and an h2c upgrade offer removed, the forwarded
// headers set (from r.RemoteAddr, believed as the proxy's ForwardedTrust
// says), PrepareRequest, the shard (ShardOf); then skipper's own lookup in
// that shard's live table (skrouting.Routing.Route, the matcher skipper's
// proxy uses), with skipper's routing context in the request context as
// skipper's proxy gives it (TrafficSegment draws its number there). Left
// out: the body (timeouts, limits while it is read) and everything after
// the lookup (filters, the backend).
//
// r is changed in place as ServeHTTP changes it: its path is the prepared
// one afterwards (the host key in front, the original in r.Pattern), its
// headers those the route saw, its context carries skipper's routing
// context; pass a request of your own making. route is nil when no route
// matches (ServeHTTP answers 404). Path parameters are not returned: the
// only ones, the host key's :parent and :label, serve no filter.
func (p *Proxy) Match(r *http.Request) (route *skrouting.Route, refused int) {
	if code := p.checkHeaderLimits(r); code != 0 {
		return nil, code
	}
	removeConnectionListed(r.Header)
	if up, ok := r.Header["Upgrade"]; ok && isH2CUpgrade(up) {
		delete(r.Header, "Upgrade")
		delete(r.Header, "Connection")
		delete(r.Header, "Http2-Settings")
	}
	setForwardedHeaders(r, &p.trust)
	*r = *r.WithContext(skrouting.NewContext(r.Context()))
	if p.prepare != nil {
		p.prepare(r)
	}
	sh := &p.shards[0]
	if p.shardOf != nil {
		sh = &p.shards[p.shardOf(r)]
	}
	route, _ = sh.routing.Route(r)
	return route, 0
}
