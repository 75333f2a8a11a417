package ingressstatus

import (
	"context"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
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
	w.reconcile(context.Background(), map[types.NamespacedName]bool{
		{Namespace: "ns", Name: "served"}:            true,
		{Namespace: "ns", Name: "served-up-to-date"}: true,
	})
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
	for range 100 { // nobody reads: the latest set replaces the unread one
		w.SetServed([]types.NamespacedName{{Namespace: "ns", Name: "a"}})
	}
	if got := <-w.served; !got[types.NamespacedName{Namespace: "ns", Name: "a"}] {
		t.Fatalf("latest set lost: %v", got)
	}
}
