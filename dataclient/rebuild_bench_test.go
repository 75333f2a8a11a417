package dataclient

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/bulkhead-router/bulkhead/routing"
)

// BenchmarkRebuild is the data client's side of one change at 1,000 and
// 10,000 Ingresses (each with its own host, Service and EndpointSlice of
// 3 endpoints, as make bench-routes has them), from the object's update
// in the API (a fake clientset) to the table applied: watch delivery, the
// rebuild (translation, deletion guard, shards) and the endpoints handed
// to the upstream layer. The route table is split in 32 shards, as the
// router's default. Every op is one change and waits for its table.
func BenchmarkRebuild(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("ingresses=%d", n), func(b *testing.B) {
			c, cs, tables, endpoints := benchClient(b, n)
			ctx := context.Background()
			at := n / 2
			namespace, name := benchNames(at)
			b.Run("ingress-changed", func(b *testing.B) {
				ing, err := cs.NetworkingV1().Ingresses(namespace).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					b.Fatal(err)
				}
				// Each op sets the path the Ingress does not have: with
				// -count, this runs again on the same cluster.
				paths := [2]string{"/v2", "/"}
				if ing.Spec.Rules[0].HTTP.Paths[0].Path == paths[0] {
					paths[0], paths[1] = paths[1], paths[0]
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					ing.Spec.Rules[0].HTTP.Paths[0].Path = paths[i%2]
					ing.Generation++ // as the API server does on a spec change
					i++
					if ing, err = cs.NetworkingV1().Ingresses(namespace).Update(ctx, ing, metav1.UpdateOptions{}); err != nil {
						b.Fatal(err)
					}
					awaitTable(b, tables, func(t routing.Table) bool { return hasPath(t, namespace, name, paths[(i-1)%2]) })
				}
			})
			b.Run("endpoint-changed", func(b *testing.B) {
				es, err := cs.DiscoveryV1().EndpointSlices(namespace).Get(ctx, name+"-1", metav1.GetOptions{})
				if err != nil {
					b.Fatal(err)
				}
				key := routing.BackendKey{Namespace: namespace, Service: name, Port: 80}
				// Each op flips the first endpoint's readiness: with
				// -count, this runs again on the same cluster, where an
				// odd number of ops left it not ready (setting it again
				// would change no endpoint, and nothing would come).
				ready := [2]bool{false, true}
				if r := es.Endpoints[0].Conditions.Ready; r != nil && !*r {
					ready[0], ready[1] = true, false
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					want := ready[i%2]
					i++
					es.Endpoints[0].Conditions.Ready = &want
					if es, err = cs.DiscoveryV1().EndpointSlices(namespace).Update(ctx, es, metav1.UpdateOptions{}); err != nil {
						b.Fatal(err)
					}
					wantEndpoints := 2
					if want {
						wantEndpoints = 3
					}
					awaitEndpoints(b, endpoints, key.String(), wantEndpoints)
				}
			})
			_ = c
		})
	}
}

func benchNames(i int) (namespace, name string) {
	return fmt.Sprintf("team-%02d", i%50), fmt.Sprintf("app-%05d", i)
}

// benchClient runs a Client on a fake clientset of n Ingresses and returns
// its tables as they are applied (endpoint-only changes give none) and the
// endpoint lists it hands the upstream layer, once the first table is.
func benchClient(b *testing.B, n int) (*Client, *fake.Clientset, <-chan routing.Table, <-chan map[string][]string) {
	b.Helper()
	objs := []runtime.Object{ingressClass()}
	pt := networkingv1.PathTypePrefix
	for i := range n {
		namespace, name := benchNames(i)
		objs = append(objs, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}})
		port, portName := int32(8080), "http"
		es := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name + "-1",
				Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port}},
		}
		for j := 1; j <= 3; j++ {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", i/250, i%250, j)}})
		}
		objs = append(objs, es)
		class := "bulkhead"
		objs = append(objs, &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Generation: 1,
				CreationTimestamp: metav1.Unix(int64(1_700_000_000+i), 0)},
			Spec: networkingv1.IngressSpec{IngressClassName: &class, Rules: []networkingv1.IngressRule{{
				Host: name + ".example.com",
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
					Path: "/", PathType: &pt,
					Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: name, Port: networkingv1.ServiceBackendPort{Name: "http"}}},
				}}}},
			}}},
		})
	}
	cs := fake.NewClientset(objs...)
	tables := make(chan routing.Table, 16)
	endpoints := make(chanSink, 16)
	c := New(Options{Client: cs, HoldOff: time.Nanosecond, MaxDelay: time.Millisecond, Shards: 32, Endpoints: endpoints,
		OnTable: func(t routing.Table, _ bool) { tables <- t }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); c.Close(); <-done })
	awaitTable(b, tables, func(t routing.Table) bool { return len(t.Routes) == n })
	return c, cs, tables, endpoints
}

// chanSink passes on what the client hands to the upstream layer.
type chanSink chan map[string][]string

func (s chanSink) SetEndpoints(update map[string][]string) { s <- update }

// awaitEndpoints waits until the upstream layer is given n endpoints for
// backend key.
func awaitEndpoints(b *testing.B, updates <-chan map[string][]string, key string, n int) {
	b.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case u := <-updates:
			if eps, ok := u[key]; ok && len(eps) == n {
				return
			}
		case <-timeout:
			b.Fatalf("no %d endpoints for %s within a minute", n, key)
		}
	}
}

// awaitTable waits for an applied table that satisfies ok.
func awaitTable(b *testing.B, tables <-chan routing.Table, ok func(routing.Table) bool) {
	b.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case t := <-tables:
			if ok(t) {
				return
			}
		case <-timeout:
			b.Fatal("no such table within a minute")
		}
	}
}

func hasPath(t routing.Table, namespace, name, path string) bool {
	for _, r := range t.Routes {
		if r.Ingress.Namespace == namespace && r.Ingress.Name == name && r.Path == path {
			return true
		}
	}
	return false
}
