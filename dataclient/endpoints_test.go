package dataclient

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bulkhead-router/bulkhead/routing"
)

// Endpoint-only changes keep their endpoints beside the Backends list of
// the table they started from: every table read (Table, the stored table)
// has them all, a table read earlier never changes, and past
// maxPatchedBackends changed backends the list is made again, still right.
// The last state is what a full translation of the caches gives.
func TestEndpointChangesPatchTheTable(t *testing.T) {
	n := maxPatchedBackends + 44
	objs := []any{ingressClass()}
	for i := range n {
		name := fmt.Sprintf("app%03d", i)
		objs = append(objs, service(name), slice(name, fmt.Sprintf("10.1.%d.%d", i/200, i%200+1)), ingress(name, name+".example", name))
	}
	store := &memStore{}
	sk := &sink{}
	c, cs := startedWith(t, objs, func(o *Options) { o.Store, o.Endpoints = store, sk })
	await(t, "every route", func() bool { tab, _ := c.Table(); return len(tab.Routes) == n })
	endpointsOf := func(tab routing.Table, name string) string {
		be, _ := tab.Backend(routing.BackendKey{Namespace: "ns", Service: name, Port: 80})
		return fmt.Sprint(be.Endpoints)
	}
	type seen struct {
		table    routing.Table
		rendered string
	}
	var earlier []seen
	ctx := context.Background()
	offeredBefore, burstStart := store.offered(), time.Now()
	want := map[string]string{}
	for i := range n {
		name := fmt.Sprintf("app%03d", i)
		second := fmt.Sprintf("10.2.%d.%d", i/200, i%200+1)
		if _, err := cs.DiscoveryV1().EndpointSlices("ns").Update(ctx, slice(name, fmt.Sprintf("10.1.%d.%d", i/200, i%200+1), second), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The upstream layer gets the endpoints first, then the table
		// is published.
		var tab routing.Table
		await(t, name+"'s second endpoint in the upstream layer and the table", func() bool {
			eps, _ := sk.get("ns/" + name + ":80")
			tab, _ = c.Table()
			be, _ := tab.Backend(routing.BackendKey{Namespace: "ns", Service: name, Port: 80})
			return len(eps) == 2 && len(be.Endpoints) == 2
		})
		want[name] = endpointsOf(tab, name)
		if len(tab.Backends) != n {
			t.Fatalf("%d backends after %d changes", len(tab.Backends), i+1)
		}
		if i%37 == 0 || i == maxPatchedBackends || i == maxPatchedBackends+1 {
			for changed, eps := range want {
				if got := endpointsOf(tab, changed); got != eps {
					t.Fatalf("after %d changes, %s has %s, want %s", i+1, changed, got, eps)
				}
			}
			earlier = append(earlier, seen{tab, renderRoutes(tab)})
		}
	}
	for i, e := range earlier {
		if renderRoutes(e.table) != e.rendered {
			t.Fatalf("table %d changed after it was read", i)
		}
	}
	tab, _ := c.Table()
	live := c.currentWatcher().snapshot()
	if got, wantAll := renderRoutes(tab), renderRoutes(routing.Translate(live, c.translateOptions())); got != wantAll {
		t.Fatalf("the table after %d endpoint changes differs from a full translation:\n%s\nwant\n%s", n, got, wantAll)
	}
	// The stored table gets the last endpoints too (offered within
	// endpointOfferInterval of the last change), and the burst of changes
	// was offered at most once an interval, not once a change: each offer
	// is a write of the whole table.
	last := fmt.Sprintf("app%03d", n-1)
	await(t, "the stored table with the last change", func() bool {
		stored, _, err := store.Load()
		return err == nil && endpointsOf(stored, last) == want[last] && endpointsOf(stored, "app000") == want["app000"]
	})
	offers, most := store.offered()-offeredBefore, 2+int(time.Since(burstStart)/endpointOfferInterval)
	if offers > most {
		t.Errorf("%d endpoint changes were offered to the store %d times in %s, want at most %d", n, offers, time.Since(burstStart).Round(time.Millisecond), most)
	}
	t.Logf("%d endpoint changes, %d offers to the store", n, offers)
}
