package routing

import (
	"fmt"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func BenchmarkTranslate1k(b *testing.B)  { benchmarkTranslate(b, 1_000) }
func BenchmarkTranslate10k(b *testing.B) { benchmarkTranslate(b, 10_000) }

func benchmarkTranslate(b *testing.B, ingresses int) {
	s := benchSnapshot(ingresses)
	b.ReportAllocs()
	var table Table
	for b.Loop() {
		table = Translate(s, Options{})
	}
	if len(table.Routes) != ingresses || len(table.Problems) != 0 {
		b.Fatalf("%d routes, %d problems", len(table.Routes), len(table.Problems))
	}
}

// benchSnapshot is a cluster of n Ingresses, each with its own host, and a
// Service with an EndpointSlice of 3 endpoints behind each.
func benchSnapshot(n int) *Snapshot {
	s := &Snapshot{IngressClasses: []*networkingv1.IngressClass{ingressClass("bulkhead", true)}}
	for i := range n {
		namespace, name := fmt.Sprintf("team-%02d", i%50), fmt.Sprintf("app-%05d", i)
		s.Services = append(s.Services, service(namespace, name, servicePort("http", 80)))
		s.EndpointSlices = append(s.EndpointSlices, endpointSlice(namespace, name, name+"-x1", 8080,
			fmt.Sprintf("10.%d.%d.1", i/250, i%250),
			fmt.Sprintf("10.%d.%d.2", i/250, i%250),
			fmt.Sprintf("10.%d.%d.3", i/250, i%250)))

		ing := &networkingv1.Ingress{}
		ing.Namespace, ing.Name = namespace, name
		ing.CreationTimestamp = metav1.Unix(int64(1_700_000_000+i), 0)
		ing.Spec.Rules = []networkingv1.IngressRule{{
			Host: name + ".example.com",
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{{
					Path: "/", PathType: ptr(networkingv1.PathTypePrefix),
					Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
						Name: name, Port: networkingv1.ServiceBackendPort{Name: "http"},
					}},
				}},
			}},
		}}
		s.Ingresses = append(s.Ingresses, ing)
	}
	return s
}
