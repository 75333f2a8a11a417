package testpods

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

// These tests need no network: the Cluster has pods on paper only, and the
// API server is client-go's fake. Integration tests run the same code
// against a real kube-apiserver.

func objectsOnlyCluster(client kubernetes.Interface) *Cluster {
	return &Cluster{
		log:          slog.New(slog.DiscardHandler),
		client:       client,
		servicePorts: map[serviceKey]int32{},
	}
}

// paperPod registers a pod that has no process or network.
func paperPod(c *Cluster, namespace, service, name, ip string, port int32) *Pod {
	p := &Pod{
		Name: name, Namespace: namespace, Service: service,
		IP: netip.MustParseAddr(ip), Port: port, cluster: c,
		conditions: endpointConditions{ready: true, serving: true},
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pods = append(c.pods, p)
	c.servicePorts[serviceKey{namespace, service}] = port
	return p
}

func TestEnsureServiceCreatesNamespaceAndService(t *testing.T) {
	ctx := t.Context()
	client := fake.NewClientset()
	c := objectsOnlyCluster(client)

	if err := c.EnsureService(ctx, "shop", "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Namespaces().Get(ctx, "shop", metav1.GetOptions{}); err != nil {
		t.Errorf("namespace: %v", err)
	}
	svc, err := client.CoreV1().Services("shop").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.Selector != nil {
		t.Errorf("service type %q selector %v, want ClusterIP without selector", svc.Spec.Type, svc.Spec.Selector)
	}
	want := []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80,
		TargetPort: intstr.FromString("http")}}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0] != want[0] {
		t.Errorf("service ports %+v, want %+v", svc.Spec.Ports, want)
	}

	// Idempotent, and a second service reuses the namespace.
	if err := c.EnsureService(ctx, "shop", "web"); err != nil {
		t.Errorf("second EnsureService: %v", err)
	}
	if err := c.EnsureService(ctx, "shop", "api"); err != nil {
		t.Errorf("EnsureService in an existing namespace: %v", err)
	}
}

func getSlice(t *testing.T, client kubernetes.Interface, namespace, service string) *discoveryv1.EndpointSlice {
	t.Helper()
	list, err := client.DiscoveryV1().EndpointSlices(namespace).List(t.Context(), metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + service,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Fatalf("service %s/%s has %d EndpointSlices, want exactly 1", namespace, service, len(list.Items))
	}
	return &list.Items[0]
}

type endpointView struct {
	address                     string
	ready, serving, terminating bool
	pod                         string
}

func endpointsOf(t *testing.T, s *discoveryv1.EndpointSlice) []endpointView {
	t.Helper()
	var views []endpointView
	for _, e := range s.Endpoints {
		if len(e.Addresses) != 1 {
			t.Fatalf("endpoint with addresses %v", e.Addresses)
		}
		c := e.Conditions
		if c.Ready == nil || c.Serving == nil || c.Terminating == nil {
			t.Fatalf("endpoint %s: conditions not all set: %+v", e.Addresses[0], c)
		}
		if e.TargetRef == nil || e.TargetRef.Kind != "Pod" || e.TargetRef.Namespace != s.Namespace {
			t.Fatalf("endpoint %s: targetRef %+v", e.Addresses[0], e.TargetRef)
		}
		views = append(views, endpointView{e.Addresses[0], *c.Ready, *c.Serving, *c.Terminating, e.TargetRef.Name})
	}
	return views
}

func triggerTime(t *testing.T, s *discoveryv1.EndpointSlice) time.Time {
	t.Helper()
	v, ok := s.Annotations[corev1.EndpointsLastChangeTriggerTime]
	if !ok {
		t.Fatalf("no %s annotation", corev1.EndpointsLastChangeTriggerTime)
	}
	at, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		t.Fatalf("trigger time %q: %v", v, err)
	}
	return at
}

func TestSyncEndpointSliceWritesAndReplacesEndpoints(t *testing.T) {
	ctx := t.Context()
	client := fake.NewClientset()
	c := objectsOnlyCluster(client)
	a := paperPod(c, "shop", "web", "web-a", "10.213.7.2", 8080)
	b := paperPod(c, "shop", "web", "web-b", "10.213.7.3", 8080)
	paperPod(c, "shop", "api", "api-a", "10.213.7.4", 9090) // another service
	unpublished := paperPod(c, "shop", "web", "web-c", "10.213.7.5", 8080)
	for _, p := range []*Pod{a, b} {
		if err := c.publish(ctx, p); err != nil {
			t.Fatal(err)
		}
	}

	before := time.Now()
	if err := c.SyncEndpointSlice(ctx, "shop", "web"); err != nil {
		t.Fatal(err)
	}
	s := getSlice(t, client, "shop", "web")
	if s.Name != EndpointSliceName("web") {
		t.Errorf("slice name %q", s.Name)
	}
	if s.Labels[discoveryv1.LabelServiceName] != "web" || s.Labels[discoveryv1.LabelManagedBy] != ManagedBy {
		t.Errorf("labels %v", s.Labels)
	}
	first := triggerTime(t, s)
	if first.Before(before.Add(-time.Second)) || first.After(time.Now().Add(time.Second)) {
		t.Errorf("trigger time %v is not now", first)
	}
	if s.AddressType != discoveryv1.AddressTypeIPv4 {
		t.Errorf("address type %q", s.AddressType)
	}
	if len(s.Ports) != 1 || s.Ports[0].Name == nil || *s.Ports[0].Name != "http" ||
		s.Ports[0].Port == nil || *s.Ports[0].Port != 8080 ||
		s.Ports[0].Protocol == nil || *s.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("ports %+v, want one TCP port http=8080", s.Ports)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "Service" || s.OwnerReferences[0].Name != "web" {
		t.Errorf("owner references %+v, want the Service", s.OwnerReferences)
	}
	want := []endpointView{
		{"10.213.7.2", true, true, false, "web-a"},
		{"10.213.7.3", true, true, false, "web-b"},
	}
	if got := endpointsOf(t, s); !equalViews(got, want) {
		t.Errorf("endpoints %+v\nwant %+v", got, want)
	}

	// Conditions change, one pod leaves, another joins: the next sync
	// replaces the whole list in the same slice.
	a.SetConditions(false, true, true)
	c.RemoveFromEndpoints(b)
	c.AddToEndpoints(unpublished)
	if err := c.SyncEndpointSlice(ctx, "shop", "web"); err != nil {
		t.Fatal(err)
	}
	s = getSlice(t, client, "shop", "web")
	want = []endpointView{
		{"10.213.7.2", false, true, true, "web-a"},
		{"10.213.7.5", true, true, false, "web-c"},
	}
	if got := endpointsOf(t, s); !equalViews(got, want) {
		t.Errorf("after changes: endpoints %+v\nwant %+v", got, want)
	}
	if second := triggerTime(t, s); second.Before(first) {
		t.Errorf("trigger time went back from %v to %v", first, second)
	}

	// Everyone out: an empty slice, still with its port.
	c.RemoveFromEndpoints(a)
	c.RemoveFromEndpoints(unpublished)
	if err := c.SyncEndpointSlice(ctx, "shop", "web"); err != nil {
		t.Fatal(err)
	}
	s = getSlice(t, client, "shop", "web")
	if len(s.Endpoints) != 0 || len(s.Ports) != 1 {
		t.Errorf("empty slice: endpoints %+v ports %+v", s.Endpoints, s.Ports)
	}

	// The other service was never synced.
	list, err := client.DiscoveryV1().EndpointSlices("shop").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Errorf("%d slices in the namespace, want only web's", len(list.Items))
	}
}

func TestSyncEndpointSliceWithoutServiceHasNoOwner(t *testing.T) {
	client := fake.NewClientset()
	c := objectsOnlyCluster(client)
	paperPod(c, "default", "web", "w", "10.213.7.2", 8080)
	if err := c.SyncEndpointSlice(t.Context(), "default", "web"); err != nil {
		t.Fatal(err)
	}
	s := getSlice(t, client, "default", "web")
	if len(s.OwnerReferences) != 0 || len(s.Endpoints) != 0 {
		t.Errorf("owners %+v endpoints %+v: want none (no Service, pod never added)", s.OwnerReferences, s.Endpoints)
	}
}

func TestKubernetesMethodsNeedAClient(t *testing.T) {
	c := objectsOnlyCluster(nil)
	ctx := context.Background()
	if err := c.EnsureService(ctx, "a", "b"); !errors.Is(err, ErrNoClient) {
		t.Errorf("EnsureService: %v", err)
	}
	if err := c.SyncEndpointSlice(ctx, "a", "b"); !errors.Is(err, ErrNoClient) {
		t.Errorf("SyncEndpointSlice: %v", err)
	}
}

func equalViews(a, b []endpointView) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
