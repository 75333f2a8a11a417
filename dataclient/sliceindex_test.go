package dataclient

import (
	"context"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// The index follows additions, a slice moving to another Service, removals
// and tombstones, with or without their object.
func TestSliceIndex(t *testing.T) {
	var x sliceIndex
	names := func(svc string) []string {
		out := slices.Clone(x.names(types.NamespacedName{Namespace: "ns", Name: svc}))
		slices.Sort(out)
		return out
	}
	expect := func(svc string, want ...string) {
		t.Helper()
		if got := names(svc); !slices.Equal(got, want) {
			t.Errorf("slices of %s: %v, want %v", svc, got, want)
		}
	}
	a1, a2, b1 := leanSlice(slice("a", "10.0.0.1")), leanSlice(slice("a", "10.0.0.2")), leanSlice(slice("b", "10.0.1.1"))
	a1.Name, a2.Name, b1.Name = "a-1", "a-2", "b-1"
	x.update(nil, a1)
	x.update(nil, a2)
	x.update(nil, b1)
	x.update(nil, a1) // again (a relist's add)
	expect("a", "a-1", "a-2")
	expect("b", "b-1")
	handedOut := x.names(types.NamespacedName{Namespace: "ns", Name: "a"})

	moved := new(*a2)
	moved.Service = "b"
	x.update(a2, moved)
	expect("a", "a-1")
	expect("b", "a-2", "b-1")
	if len(handedOut) != 2 {
		t.Errorf("a list handed out changed: %v", handedOut)
	}
	x.update(moved, moved) // an update that moves nothing
	expect("b", "a-2", "b-1")

	x.update(cache.DeletedFinalStateUnknown{Key: "ns/a-2", Obj: moved}, nil)
	expect("b", "b-1")
	x.update(cache.DeletedFinalStateUnknown{Key: "ns/b-1"}, nil) // no object: found by its key
	expect("b")
	x.update(a1, nil)
	expect("a")
	if len(x.byName) != 0 {
		t.Errorf("entries left: %v", x.byName)
	}
}

// slicesForService reads the index and the store: a slice the index names
// is returned as the store has it.
func TestSlicesForServiceFollowsTheCluster(t *testing.T) {
	c, cs, _ := started(t, ingressClass(), service("a"), slice("a", "10.0.0.1"), ingress("a", "a.example", "a"))
	awaitLoadAll(t, c)
	w := c.currentWatcher()
	ctx := context.Background()
	second := slice("a", "10.0.0.2")
	second.Name = "a-2"
	if _, err := cs.DiscoveryV1().EndpointSlices("ns").Create(ctx, second, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	await := func(want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for len(w.slicesForService("ns", "a")) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d slices of ns/a, want %d", len(w.slicesForService("ns", "a")), want)
			}
			time.Sleep(time.Millisecond) // informer delivery is asynchronous
		}
	}
	await(2)
	if err := cs.DiscoveryV1().EndpointSlices("ns").Delete(ctx, "a-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	await(1)
}
