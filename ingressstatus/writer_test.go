package ingressstatus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func ing(name string, status ...networkingv1.IngressLoadBalancerIngress) *networkingv1.Ingress {
	i := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
	i.Status.LoadBalancer.Ingress = status
	return i
}

func TestReconcileSetsOursAndRemovesOnlyOurs(t *testing.T) {
	ours := []networkingv1.IngressLoadBalancerIngress{{IP: "192.0.2.1"}, {Hostname: "lb.example.com"}}
	other := []networkingv1.IngressLoadBalancerIngress{{Hostname: "other-controller.example.com"}}
	objs := []*networkingv1.Ingress{
		ing("served"),                 // ours, no status yet: set
		ing("was-ours", ours...),      // no longer served, carries exactly ours: remove
		ing("someone-else", other...), // not ours to touch
		ing("served-up-to-date", ours...),
	}
	cs := fake.NewClientset()
	for _, o := range objs {
		if _, err := cs.NetworkingV1().Ingresses("ns").Create(context.Background(), o, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w := New(Options{Client: cs, Addresses: []string{"192.0.2.1", "lb.example.com"},
		Ingresses: func() []*networkingv1.Ingress { return objs }})
	w.reconcile(context.Background(), []types.NamespacedName{{Namespace: "ns", Name: "served"}, {Namespace: "ns", Name: "served-up-to-date"}})
	get := func(name string) []networkingv1.IngressLoadBalancerIngress {
		i, err := cs.NetworkingV1().Ingresses("ns").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return i.Status.LoadBalancer.Ingress
	}
	if !sameStatus(get("served"), ours) {
		t.Errorf("served Ingress status = %v", get("served"))
	}
	if len(get("was-ours")) != 0 {
		t.Errorf("status of an Ingress no longer served = %v, want removed", get("was-ours"))
	}
	if !sameStatus(get("someone-else"), other) {
		t.Errorf("another controller's status was changed: %v", get("someone-else"))
	}
	updates := 0
	for _, a := range cs.Actions() {
		if a.GetVerb() == "update" && a.GetSubresource() == "status" {
			updates++
		}
	}
	if updates != 2 {
		t.Errorf("%d status updates, want 2 (nothing for an up-to-date or foreign Ingress)", updates)
	}
}

func TestNoAddressesNoLeaseNoWrites(t *testing.T) {
	cs := fake.NewClientset()
	w := New(Options{Client: cs, Ingresses: func() []*networkingv1.Ingress { return nil }})
	if err := w.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(cs.Actions()); n != 0 {
		t.Fatalf("without -publish-address the writer made %d API calls", n)
	}
}

func TestSetServedNeverBlocks(t *testing.T) {
	w := New(Options{Addresses: []string{"192.0.2.1"}})
	for i := range 100 { // nobody reads: the latest set replaces the unread one
		w.SetServed([]types.NamespacedName{{Namespace: "ns", Name: fmt.Sprint(i)}})
	}
	if got := <-w.served; len(got) != 1 || got[0].Name != "99" {
		t.Fatalf("latest set lost: %v", got)
	}
}

// The set is kept sorted for reconcile's binary search: the table's own
// slice when it is (no copy), a sorted copy when not.
func TestSetServedKeepsASortedSet(t *testing.T) {
	w := New(Options{Addresses: []string{"192.0.2.1"}})
	sorted := []types.NamespacedName{{Namespace: "a", Name: "z"}, {Namespace: "b", Name: "a"}, {Namespace: "b", Name: "b"}}
	w.SetServed(sorted)
	if got := <-w.served; &got[0] != &sorted[0] {
		t.Fatal("a sorted set was copied")
	}
	unsorted := []types.NamespacedName{sorted[2], sorted[0], sorted[1]}
	w.SetServed(unsorted)
	if got := <-w.served; !slices.Equal(got, sorted) || unsorted[0] != sorted[2] {
		t.Fatalf("set %v from %v, want %v without touching the caller's", got, unsorted, sorted)
	}
	quiet := New(Options{})
	quiet.SetServed(sorted)
	if len(quiet.served) != 0 {
		t.Fatal("a writer without addresses kept a set nobody reads")
	}
}

// A replica that leads again (or takes over) writes what it last heard at
// once, without waiting for the next table; a failed write is retried.
func TestLeadWritesTheLastSetAtOnceAndRetries(t *testing.T) {
	cs := fake.NewClientset()
	obj := ing("served")
	if _, err := cs.NetworkingV1().Ingresses("ns").Create(context.Background(), obj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var failures atomic.Int32
	failures.Store(1)
	cs.PrependReactor("update", "ingresses", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if action.GetSubresource() == "status" && failures.Add(-1) >= 0 {
			return true, nil, errors.New("API server unavailable")
		}
		return false, nil, nil
	})
	w := New(Options{Client: cs, Addresses: []string{"192.0.2.1"}, RetryInterval: 10 * time.Millisecond,
		Ingresses: func() []*networkingv1.Ingress { return []*networkingv1.Ingress{obj} }})
	w.SetServed([]types.NamespacedName{{Namespace: "ns", Name: "served"}})

	// First term: hears the set, its write fails once and is retried.
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.lead(ctx) }()
	awaitStatus := func(want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			i, err := cs.NetworkingV1().Ingresses("ns").Get(context.Background(), "served", metav1.GetOptions{})
			if err == nil && len(i.Status.LoadBalancer.Ingress) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("status %v, want %d addresses", i.Status.LoadBalancer.Ingress, want)
			}
			time.Sleep(5 * time.Millisecond) // polling the fake clientset; it has no event to await
		}
	}
	awaitStatus(1)
	stop()
	<-done

	// Someone clears the status while this replica does not lead; leading
	// again, it writes the last set it heard without a new one.
	i, _ := cs.NetworkingV1().Ingresses("ns").Get(context.Background(), "served", metav1.GetOptions{})
	i.Status.LoadBalancer.Ingress = nil
	obj = i
	if _, err := cs.NetworkingV1().Ingresses("ns").UpdateStatus(context.Background(), i, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, stop = context.WithCancel(context.Background())
	defer stop()
	go w.lead(ctx)
	awaitStatus(1)
}
