package dataclient

import (
	"context"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bulkhead-router/bulkhead/routing"
)

// TestSliceMovedBetweenServices: a slice moved from Service a to Service b
// by a label change (an endpoint-only change): a loses its endpoints and b
// gains them, as a full translation of the cache says. Before, only b was
// resolved again, and a's traffic could go to b's pods until some later
// full rebuild.
func TestSliceMovedBetweenServices(t *testing.T) {
	a2 := slice("a", "10.0.0.9")
	a2.Name = "a-2"
	c, cs, _ := started(t, ingressClass(), service("a"), service("b"), slice("a", "10.0.0.1"), a2, slice("b", "10.0.1.1"),
		ingress("a", "a.example", "a"), ingress("b", "b.example", "b"))
	awaitLoadAll(t, c)
	moved := a2.DeepCopy()
	moved.Labels = map[string]string{discoveryv1.LabelServiceName: "b"}
	if _, err := cs.DiscoveryV1().EndpointSlices("ns").Update(context.Background(), moved, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eps := func(tab routing.Table, svc string) int {
		be, _ := tab.Backend(routing.BackendKey{Namespace: "ns", Service: svc, Port: 80})
		return len(be.Endpoints)
	}
	await(t, "a with only its own endpoint and b with the moved one", func() bool {
		tab, _ := c.Table()
		return eps(tab, "a") == 1 && eps(tab, "b") == 2
	})
	tab, _ := c.Table()
	full := routing.Translate(c.currentWatcher().snapshot(), c.translateOptions())
	if eps(tab, "a") != eps(full, "a") || eps(tab, "b") != eps(full, "b") {
		t.Fatalf("served a %d, b %d endpoints; a full translation %d, %d", eps(tab, "a"), eps(tab, "b"), eps(full, "a"), eps(full, "b"))
	}
}
