package routing

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

	skrouting "github.com/zalando/skipper/routing"
)

// ListenerIsolationName is the predicate of listener isolation: a request
// belongs to the most specific listener of a Gateway (on its port) whose
// hostname matches the request's host, and only that listener's routes
// may answer it. A route of a listener that more specific listeners of its
// Gateway shadow carries BulkheadListenerIsolation("*.foo.com",
// "a.foo.com", ...), their hostnames, and matches only hosts none of them
// matches (the host without port, lowercased, without trailing dot).
const ListenerIsolationName = "BulkheadListenerIsolation"

// NewListenerIsolationSpec returns the spec of the
// BulkheadListenerIsolation predicate, for skipper's predicate registry.
func NewListenerIsolationSpec() skrouting.PredicateSpec { return listenerIsolationSpec{} }

type listenerIsolationSpec struct{}

func (listenerIsolationSpec) Name() string { return ListenerIsolationName }

func (listenerIsolationSpec) Create(args []any) (skrouting.Predicate, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("%s: want at least one hostname", ListenerIsolationName)
	}
	p := make(listenerIsolationPredicate, 0, len(args))
	for _, a := range args {
		h, ok := a.(string)
		if !ok || h == "" || h != strings.ToLower(h) {
			return nil, fmt.Errorf("%s: %v is not a lowercase listener hostname", ListenerIsolationName, a)
		}
		p = append(p, h)
	}
	return p, nil
}

// listenerIsolationPredicate holds the shadowing listeners' hostnames.
type listenerIsolationPredicate []string

func (p listenerIsolationPredicate) Match(r *http.Request) bool {
	host := requestHostname(r.Host)
	for _, h := range p {
		if listenerHostMatches(h, host) {
			return false
		}
	}
	return true
}

// requestHostname is a Host header as listener hostnames are compared:
// without port, lowercased, without trailing dot.
func requestHostname(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return normalizeServerName(host)
}

// shadowing returns the hostnames of the listeners of l's Gateway on l's
// port that take routes and are more specific than l while overlapping it
// (a wildcard under l's, an exact name l matches, anything when l has no
// hostname): requests for those hosts are theirs, not l's. Sorted.
func (t *gatewayTranslation) shadowing(l *gwListener) []string {
	var out []string
	for i, o := range t.lists[l.ref] {
		if o == l || o.spec.Port != l.spec.Port || o.host == l.host || !t.listenerAccepts(t.lists[l.ref], i) {
			continue
		}
		if hostSpecificity(o.host) <= hostSpecificity(l.host) {
			continue
		}
		name := o.host
		if strings.HasPrefix(name, wildcardPrefix) {
			name = "x" + name[1:] // a name under the wildcard
		}
		if listenerHostMatches(l.host, name) {
			out = append(out, o.host)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// overlapping keeps the shadowing hostnames that can match a host of
// vhost (a route's intersection of listener and route hostnames; "" any):
// the others can never take one of its requests.
func overlapping(shadows []string, vhost string) []string {
	sample := func(h string) string {
		if strings.HasPrefix(h, wildcardPrefix) {
			return "x" + h[1:]
		}
		return h
	}
	var out []string
	for _, h := range shadows {
		if vhost == "" || listenerHostMatches(h, sample(vhost)) || listenerHostMatches(vhost, sample(h)) {
			out = append(out, h)
		}
	}
	return out
}
