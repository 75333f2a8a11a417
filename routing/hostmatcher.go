package routing

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/zalando/skipper/eskip"
	skrouting "github.com/zalando/skipper/routing"
)

// VirtualHostName is the name of the predicate HostMatcher provides.
const VirtualHostName = "VirtualHost"

// HostMatcher provides the VirtualHost("<vhost>") predicate that every
// rule route carries. VirtualHost(v) matches a request iff the request's
// host resolves to v:
//
//   - the host, lowercased, without port and trailing dot, if some route
//     has VirtualHost(host);
//   - else "*." + its parent domain, if some route has that wildcard;
//   - else "" (the host-less rules).
//
// Resolution needs the set of vhosts of the whole table, so HostMatcher is
// also a skipper PreProcessor: skipper runs the pre-processors over the
// complete table, then creates all its predicates, on one goroutine, on
// every update. Do builds an immutable index of the table's vhosts and
// makes it current; the predicates created right after keep a pointer to
// it, so requests read it without locks.
//
// Register the same HostMatcher in skrouting.Options.PreProcessors and
// Options.Predicates of one skrouting.Routing, and leave
// skrouting.IgnoreTrailingSlash off (Exact paths depend on it). Do not use
// it with skrouting.ValidateRoute concurrently to updates: ValidateRoute
// runs the pre-processors on a single route, which would make the index of
// that one route current while a table update might be creating predicates.
type HostMatcher struct {
	current atomic.Pointer[vhostIndex]
}

var (
	_ skrouting.PredicateSpec = (*HostMatcher)(nil)
	_ skrouting.PreProcessor  = (*HostMatcher)(nil)
)

// NewHostMatcher returns a HostMatcher whose index is empty until the
// first Do.
func NewHostMatcher() *HostMatcher {
	m := &HostMatcher{}
	m.current.Store(newVHostIndex())
	return m
}

// Name is the predicate name, VirtualHost.
func (*HostMatcher) Name() string { return VirtualHostName }

// Do indexes the vhosts of the table skipper is about to build and
// returns the routes unchanged.
func (m *HostMatcher) Do(routes []*eskip.Route) []*eskip.Route {
	ix := newVHostIndex()
	for _, r := range routes {
		if r == nil {
			continue
		}
		for _, p := range r.Predicates {
			if p == nil || p.Name != VirtualHostName {
				continue
			}
			if vhost, err := parseVHostArgs(p.Args); err == nil {
				ix.add(vhost)
			}
		}
	}
	m.current.Store(ix)
	return routes
}

// Create makes a VirtualHost predicate bound to the current index.
func (m *HostMatcher) Create(args []any) (skrouting.Predicate, error) {
	vhost, err := parseVHostArgs(args)
	if err != nil {
		return nil, err
	}
	ix := m.current.Load()
	if ix == nil { // a zero HostMatcher, not made by NewHostMatcher
		ix = newVHostIndex()
	}
	if vhost == anyHostVHostKey {
		return &anyHostPredicate{index: ix}, nil
	}
	if parent, ok := strings.CutPrefix(vhost, wildcardPrefix); ok {
		return &wildcardPredicate{parent: parent, index: ix}, nil
	}
	return &exactHostPredicate{host: vhost}, nil
}

func parseVHostArgs(args []any) (string, error) {
	if len(args) != 1 {
		return "", fmt.Errorf("%s takes one argument, got %d", VirtualHostName, len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return "", fmt.Errorf("%s takes a string argument, got %T", VirtualHostName, args[0])
	}
	vhost, err := ruleVHost(s)
	if err != nil {
		return "", fmt.Errorf("%s(%q): %w", VirtualHostName, s, err)
	}
	return vhost, nil
}

// vhostIndex is the set of vhosts of one table. Immutable once built.
type vhostIndex struct {
	exact           map[string]struct{} // "foo.com"
	wildcardParents map[string]struct{} // "foo.com" for "*.foo.com"
}

func newVHostIndex() *vhostIndex {
	return &vhostIndex{exact: map[string]struct{}{}, wildcardParents: map[string]struct{}{}}
}

func (ix *vhostIndex) add(vhost string) {
	switch parent, wildcard := strings.CutPrefix(vhost, wildcardPrefix); {
	case vhost == anyHostVHostKey:
	case wildcard:
		ix.wildcardParents[parent] = struct{}{}
	default:
		ix.exact[vhost] = struct{}{}
	}
}

// The predicates below run per request, for every route of a path tree
// node until one matches. They work on the Host header in place and lowercase
// it (allocating) only for an index lookup of a host with capitals.

// exactHostPredicate matches a host of its own: having this route, the
// host is in the index, so no lookup is needed.
type exactHostPredicate struct{ host string }

func (p *exactHostPredicate) Match(r *http.Request) bool {
	return equalFoldASCII(requestHostName(r.Host), p.host)
}

// wildcardPredicate matches hosts one label under parent that have no
// exact vhost of their own.
type wildcardPredicate struct {
	parent string
	index  *vhostIndex
}

func (p *wildcardPredicate) Match(r *http.Request) bool {
	host := requestHostName(r.Host)
	dot := strings.IndexByte(host, '.')
	if dot <= 0 || !equalFoldASCII(host[dot+1:], p.parent) {
		return false
	}
	_, exact := p.index.exact[lowerASCII(host)]
	return !exact
}

// anyHostPredicate matches hosts that have neither an exact nor a
// wildcard vhost.
type anyHostPredicate struct{ index *vhostIndex }

func (p *anyHostPredicate) Match(r *http.Request) bool {
	host := lowerASCII(requestHostName(r.Host))
	if _, exact := p.index.exact[host]; exact {
		return false
	}
	if parent, ok := parentDomain(host); ok {
		if _, wildcard := p.index.wildcardParents[parent]; wildcard {
			return false
		}
	}
	return true
}
