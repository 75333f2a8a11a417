package routing

import (
	"net/http"
	"slices"
	"testing"

	"github.com/zalando/skipper/eskip"
	skrouting "github.com/zalando/skipper/routing"
)

func vhostRoutes(vhosts ...string) []*eskip.Route {
	var routes []*eskip.Route
	for _, v := range vhosts {
		routes = append(routes, &eskip.Route{Predicates: []*eskip.Predicate{{Name: VirtualHostName, Args: []any{v}}}})
	}
	return routes
}

// predicatesFor runs Do over routes with the given vhosts and creates one
// predicate per vhost, as skipper does on an update.
func predicatesFor(t *testing.T, m *HostMatcher, vhosts ...string) map[string]skrouting.Predicate {
	t.Helper()
	m.Do(vhostRoutes(vhosts...))
	preds := map[string]skrouting.Predicate{}
	for _, v := range vhosts {
		p, err := m.Create([]any{v})
		if err != nil {
			t.Fatalf("Create(%q): %v", v, err)
		}
		preds[v] = p
	}
	return preds
}

// matchingVHosts lists the vhosts whose predicate matches host.
func matchingVHosts(preds map[string]skrouting.Predicate, host string) []string {
	var out []string
	for v, p := range preds {
		if p.Match(&http.Request{Host: host}) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// Every request resolves to exactly one vhost: its host, else its
// wildcard, else "".
func TestHostMatcherResolvesEachHostToOneVHost(t *testing.T) {
	preds := predicatesFor(t, NewHostMatcher(),
		"foo.com", "*.foo.com", "bar.foo.com", "*.bar.foo.com", "*.com", "koo.com", "")
	for host, want := range map[string]string{
		"foo.com":           "foo.com",
		"FOO.COM":           "foo.com",
		"foo.com:8080":      "foo.com",
		"foo.com.":          "foo.com",
		"Foo.Com.:8080":     "foo.com",
		"x.foo.com":         "*.foo.com",
		"X.Foo.Com:1":       "*.foo.com",
		"bar.foo.com":       "bar.foo.com",
		"BAR.foo.com":       "bar.foo.com",
		"y.bar.foo.com":     "*.bar.foo.com",
		"z.y.bar.foo.com":   "",
		"x.y.foo.com":       "",
		"other.com":         "*.com",
		"com":               "",
		"":                  "",
		".foo.com":          "",
		"foo.com..":         "",
		"10.0.0.1:80":       "",
		"[fd00::1]:443":     "",
		"fd00::1":           "",
		"koo.com":           "koo.com",
		"\u212Aoo.com":      "*.com", // the Kelvin sign is not folded to "k"
		"x.foo.com:a:b":     "",
		"a.b.com":           "",
		"b.com":             "*.com",
		"*.foo.com":         "*.foo.com", // "*" is one label like any other
		"foo.com:":          "foo.com",
		"[broken.foo.com:8": "",
	} {
		if got := matchingVHosts(preds, host); !slices.Equal(got, []string{want}) {
			t.Errorf("host %q: matched vhosts %q, want exactly %q", host, got, want)
		}
	}
}

// Without an exact or wildcard vhost the host-less vhost takes everything;
// and a wildcard alone covers its exact hosts.
func TestHostMatcherFallsBackWhenVHostsAreMissing(t *testing.T) {
	preds := predicatesFor(t, NewHostMatcher(), "*.foo.com", "")
	if got := matchingVHosts(preds, "bar.foo.com"); !slices.Equal(got, []string{"*.foo.com"}) {
		t.Errorf("bar.foo.com matched %q", got)
	}
	if got := matchingVHosts(preds, "foo.com"); !slices.Equal(got, []string{""}) {
		t.Errorf("foo.com matched %q", got)
	}
}

// Predicates keep the index of the table they were created for; a later
// Do makes a new one current for the predicates created after it.
func TestHostMatcherIndexPerTable(t *testing.T) {
	m := NewHostMatcher()
	before := predicatesFor(t, m, "*.foo.com", "")
	after := predicatesFor(t, m, "bar.foo.com", "*.foo.com", "")

	if got := matchingVHosts(before, "bar.foo.com"); !slices.Equal(got, []string{"*.foo.com"}) {
		t.Errorf("old table: bar.foo.com matched %q, want the wildcard", got)
	}
	if got := matchingVHosts(after, "bar.foo.com"); !slices.Equal(got, []string{"bar.foo.com"}) {
		t.Errorf("new table: bar.foo.com matched %q, want its own vhost", got)
	}
}

func TestHostMatcherRejectsBadArguments(t *testing.T) {
	m := NewHostMatcher()
	for _, args := range [][]any{nil, {}, {"a.com", "b.com"}, {42}, {"bad_host.com"}, {"*"}, {"a.*.com"}} {
		if _, err := m.Create(args); err == nil {
			t.Errorf("Create(%v) succeeded", args)
		}
	}
	if _, err := m.Create([]any{"Foo.COM."}); err != nil {
		t.Errorf("Create normalises case and the trailing dot: %v", err)
	}
}

// Do must pass the table through unchanged and skip what it cannot read.
func TestHostMatcherDoIgnoresOtherPredicates(t *testing.T) {
	routes := append(vhostRoutes("foo.com"),
		nil,
		&eskip.Route{Predicates: []*eskip.Predicate{nil, {Name: VirtualHostName}, {Name: VirtualHostName, Args: []any{1}}, {Name: "Path", Args: []any{"/"}}}},
	)
	m := NewHostMatcher()
	out := m.Do(routes)
	if len(out) != len(routes) || &out[0] != &routes[0] {
		t.Fatal("Do changed the table")
	}
	if got := len(m.current.Load().exact); got != 1 {
		t.Errorf("index has %d exact hosts, want 1", got)
	}
}

// A zero HostMatcher (not from NewHostMatcher) still works.
func TestHostMatcherZeroValue(t *testing.T) {
	var m HostMatcher
	p, err := m.Create([]any{""})
	if err != nil || !p.Match(&http.Request{Host: "x.org"}) {
		t.Fatalf("zero HostMatcher: %v", err)
	}
}

// Match is on the per-request hot path: no allocations for the common,
// lowercase host, with or without port.
func TestHostMatcherMatchDoesNotAllocate(t *testing.T) {
	preds := predicatesFor(t, NewHostMatcher(), "foo.com", "*.foo.com", "")
	for _, host := range []string{"foo.com", "foo.com:8080", "x.foo.com", "x.foo.com:443", "other.org", "foo.com."} {
		req := &http.Request{Host: host}
		for v, p := range preds {
			if n := testing.AllocsPerRun(100, func() { p.Match(req) }); n != 0 {
				t.Errorf("VirtualHost(%q).Match(%q): %v allocations", v, host, n)
			}
		}
	}
}

func BenchmarkHostMatch(b *testing.B) {
	m := NewHostMatcher()
	m.Do(vhostRoutes("foo.com", "*.foo.com", ""))
	exact, _ := m.Create([]any{"foo.com"})
	wildcard, _ := m.Create([]any{"*.foo.com"})
	anyHost, _ := m.Create([]any{""})
	req := &http.Request{Host: "bar.foo.com:8080"}
	b.ReportAllocs()
	for b.Loop() {
		exact.Match(req)
		wildcard.Match(req)
		anyHost.Match(req)
	}
}
