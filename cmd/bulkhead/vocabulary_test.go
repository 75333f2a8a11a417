package main

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bulkhead-router/bulkhead/routing"
	"github.com/bulkhead-router/bulkhead/upstream"
)

// TestAnnotationsSpeakUpstream checks that the two packages, which must not
// import each other, agree: every annotation value translation accepts
// becomes a filter and algorithm the upstream layer accepts with the same
// meaning. (Translation emits; upstream parses.)
func TestAnnotationsSpeakUpstream(t *testing.T) {
	up, err := upstream.New(upstream.Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		annotations map[string]string
		algorithm   string
		want        upstream.Policy
	}{
		{nil, upstream.AlgorithmLeastInFlight, upstream.Policy{}},
		{map[string]string{
			routing.AnnotationLoadBalancer:          "round-robin",
			routing.AnnotationConnectTimeout:        "250ms",
			routing.AnnotationResponseHeaderTimeout: "0",
			routing.AnnotationRequestTimeout:        "2m",
			routing.AnnotationRetryNonIdempotent:    "true",
			routing.AnnotationSlowStart:             "45s",
		}, upstream.AlgorithmRoundRobin, upstream.Policy{
			ConnectTimeout: 250e6, ConnectTimeoutSet: true,
			ResponseHeaderTimeout: 0, ResponseHeaderTimeoutSet: true,
			RequestTimeout: 120e9, RequestTimeoutSet: true,
			RetryNonIdempotent: true,
			SlowStart:          45e9, SlowStartSet: true,
		}},
		{map[string]string{routing.AnnotationLoadBalancer: "least-in-flight", routing.AnnotationConnectTimeout: "1m"},
			upstream.AlgorithmLeastInFlight, upstream.Policy{ConnectTimeout: 60e9, ConnectTimeoutSet: true}},
	} {
		table := routing.Translate(snapshotWith(c.annotations), routing.Options{})
		if len(table.Problems) != 0 || len(table.Routes) != 1 {
			t.Fatalf("%v: problems %v, %d routes", c.annotations, table.Problems, len(table.Routes))
		}
		r := table.Routes[0].Eskip
		chooser := 0
		for _, f := range r.Filters {
			if f.Name != upstream.BackendFilterName {
				continue
			}
			chooser++
			algorithm := upstream.AlgorithmLeastInFlight
			if len(f.Args) > 1 {
				algorithm, _ = f.Args[1].(string)
			}
			if algorithm != c.algorithm || f.Args[0] != table.Routes[0].Backend.String() {
				t.Errorf("%v: %s%v, want backend %s with algorithm %q", c.annotations, f.Name, f.Args, table.Routes[0].Backend, c.algorithm)
			}
			if _, err := up.BackendSpec().CreateFilter(f.Args); err != nil {
				t.Fatalf("%v: the backend filter rejects %v: %v", c.annotations, f.Args, err)
			}
		}
		if chooser != 1 {
			t.Errorf("%v: %d %s filters in %s", c.annotations, chooser, upstream.BackendFilterName, r)
		}
		var got upstream.Policy
		for _, f := range r.Filters {
			if f.Name != upstream.PolicyFilterName {
				continue
			}
			var args []string
			for _, a := range f.Args {
				args = append(args, a.(string))
			}
			var err error
			if got, err = upstream.ParsePolicy(args); err != nil {
				t.Fatalf("%v: upstream rejects what translation emitted: %v", c.annotations, err)
			}
			if _, err := up.PolicySpec().CreateFilter(f.Args); err != nil {
				t.Fatalf("%v: the filter rejects it: %v", c.annotations, err)
			}
		}
		if got != c.want {
			t.Errorf("%v: policy %+v, want %+v", c.annotations, got, c.want)
		}
	}
}

func snapshotWith(annotations map[string]string) *routing.Snapshot {
	port := int32(8080)
	return &routing.Snapshot{
		IngressClasses: []*networkingv1.IngressClass{{
			ObjectMeta: metav1.ObjectMeta{Name: "bulkhead", Annotations: map[string]string{"ingressclass.kubernetes.io/is-default-class": "true"}},
			Spec:       networkingv1.IngressClassSpec{Controller: routing.DefaultControllerName},
		}},
		Services: []*routing.Service{{Namespace: "ns", Name: "svc", Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}},
		EndpointSlices: []*routing.EndpointSlice{{
			Namespace: "ns", Name: "svc-a", Service: "svc",
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: new("http"), Port: &port}},
			Endpoints:   []routing.SliceEndpoint{{Address: "10.0.0.1", Ready: true, Serving: true}},
		}},
		Ingresses: []*networkingv1.Ingress{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ing", Annotations: annotations},
			Spec: networkingv1.IngressSpec{DefaultBackend: &networkingv1.IngressBackend{
				Service: &networkingv1.IngressServiceBackend{Name: "svc", Port: networkingv1.ServiceBackendPort{Number: 80}},
			}},
		}},
	}
}
