package routing

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/yaml"
)

// The conditions of an endpoint read the Kubernetes way: unset ready is
// ready, unset serving is as ready, unset terminating is not terminating.
func TestNewSliceEndpointConditions(t *testing.T) {
	yes, no := true, false
	for _, c := range []struct {
		in   discoveryv1.EndpointConditions
		want SliceEndpoint
	}{
		{discoveryv1.EndpointConditions{}, SliceEndpoint{Ready: true, Serving: true}},
		{discoveryv1.EndpointConditions{Ready: &no}, SliceEndpoint{}},
		{discoveryv1.EndpointConditions{Ready: &no, Serving: &yes, Terminating: &yes}, SliceEndpoint{Serving: true, Terminating: true}},
		{discoveryv1.EndpointConditions{Ready: &yes, Serving: &no}, SliceEndpoint{Ready: true}},
	} {
		c.want.Address = "10.0.0.1"
		if got := NewSliceEndpoint(discoveryv1.Endpoint{Addresses: []string{"10.0.0.1", "10.0.0.2"}, Conditions: c.in}); got != c.want {
			t.Errorf("%+v: %+v, want %+v", c.in, got, c.want)
		}
	}
	if got := NewSliceEndpoint(discoveryv1.Endpoint{}); got.Address != "" {
		t.Errorf("an endpoint without addresses: %+v", got)
	}
}

// A snapshot written out reads as Kubernetes objects and reads back the
// same; client-go's caches can key both forms.
func TestServiceAndSliceJSON(t *testing.T) {
	s := &Snapshot{
		Services: []*Service{{Namespace: "ns", Name: "web", ResourceVersion: "7", Type: corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}},
		EndpointSlices: []*EndpointSlice{{Namespace: "ns", Name: "web-1", ResourceVersion: "9", Service: "web",
			ChangeTriggerTime: "2026-12-02T10:00:00Z", AddressType: discoveryv1.AddressTypeIPv4,
			Ports:     []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
			Endpoints: []SliceEndpoint{{Address: "10.0.0.1", Ready: true, Serving: true}, {Address: "10.0.0.2", Serving: true, Terminating: true}}}},
	}
	data, err := yaml.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Snapshot
	if err := yaml.UnmarshalStrict(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, s) {
		t.Fatalf("read back:\n%+v\nwant\n%+v\nfrom\n%s", back, s, data)
	}
	var asAPI struct {
		Services       []corev1.Service            `json:"services"`
		EndpointSlices []discoveryv1.EndpointSlice `json:"endpointSlices"`
	}
	if err := yaml.UnmarshalStrict(data, &asAPI); err != nil {
		t.Fatalf("not Kubernetes objects: %v\n%s", err, data)
	}
	if es := asAPI.EndpointSlices[0]; es.Labels[discoveryv1.LabelServiceName] != "web" || len(es.Endpoints) != 2 ||
		*es.Endpoints[1].Conditions.Ready || asAPI.Services[0].Spec.Ports[0].Port != 80 {
		t.Errorf("as Kubernetes objects: %+v", asAPI)
	}
	for _, obj := range []any{s.Services[0], s.EndpointSlices[0]} {
		m, err := meta.Accessor(obj)
		if err != nil || m.GetNamespace() != "ns" || m.GetResourceVersion() == "" {
			t.Errorf("%T: %v, %v", obj, m, err)
		}
	}
	if m, _ := meta.Accessor(s.EndpointSlices[0]); m.GetLabels()[discoveryv1.LabelServiceName] != "web" {
		t.Errorf("slice labels %v", m.GetLabels())
	}
}
