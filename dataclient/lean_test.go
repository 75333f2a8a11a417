package dataclient

import (
	"fmt"
	"maps"
	"reflect"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/zalando/skipper/eskip"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/bulkhead-router/bulkhead/routing"
)

// fatService and fatSlice carry everything a real cluster puts on them.
func fatService(name string, typ corev1.ServiceType) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: "u-" + "svc-" + "x", ResourceVersion: "7",
			Labels:        map[string]string{"app": name, "team": "a"},
			Annotations:   map[string]string{corev1.LastAppliedConfigAnnotation: `{"big":"json"}`, "note": "x"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: corev1.ServiceSpec{
			Type: typ, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"}, Selector: map[string]string{"app": name},
			ExternalName: "db.example.com", SessionAffinity: corev1.ServiceAffinityClientIP,
			Ports: []corev1.ServicePort{
				{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("web"), NodePort: 30080, AppProtocol: new("kubernetes.io/h2c")},
				{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(53)},
				{Name: "admin", Port: 9000, TargetPort: intstr.FromInt32(9000)},
			},
		},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "192.0.2.9"}}}},
	}
}

// fatIngress is an Ingress as Helm and kubectl leave it, with one of our
// annotations among others'.
func fatIngress(name, host, svc string) *networkingv1.Ingress {
	ing := ingress(name, host, svc)
	ing.UID, ing.ResourceVersion, ing.GenerateName = "0b9d4c38-1f0e-4d2a-9b8e-7a1c2d3e4f50", "11", name+"-"
	ing.CreationTimestamp = metav1.Unix(1_700_000_000, 0)
	ing.Labels = map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name,
		"app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": name + "-1.2.3"}
	ing.Annotations = map[string]string{routing.AnnotationLoadBalancer: "round-robin",
		corev1.LastAppliedConfigAnnotation: `{"big":"json"}`, "meta.helm.sh/release-name": name,
		"meta.helm.sh/release-namespace": "ns", "cert-manager.io/cluster-issuer": "letsencrypt"}
	ing.OwnerReferences = []metav1.OwnerReference{{Kind: "HelmRelease", Name: name}}
	ing.Finalizers = []string{"example.com/cleanup"}
	ing.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "helm"}}
	ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "192.0.2.1"}}
	return ing
}

func fatSlice(service, name string, ready, serving, terminating bool, ips ...string) *discoveryv1.EndpointSlice {
	web, adminName, tcp := "http", "admin", corev1.ProtocolTCP
	webPort, adminPort := int32(8080), int32(9000)
	node, zone, host := "node-1", "eu-1a", "pod-host"
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, ResourceVersion: "9",
			Labels:          map[string]string{discoveryv1.LabelServiceName: service, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"},
			Annotations:     map[string]string{corev1.EndpointsLastChangeTriggerTime: "2026-12-02T10:00:00Z", "other": "y"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "Service", Name: service}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "controller"}}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &web, Protocol: &tcp, Port: &webPort}, {Name: &adminName, Port: &adminPort}},
	}
	for _, ip := range ips {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{ip, "10.9.9.9"},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
			Hostname:   &host, NodeName: &node, Zone: &zone,
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "p-" + ip},
			Hints:     &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: zone}}},
		})
	}
	return s
}

func leanAll[T, L any](t *testing.T, objs []T) []L {
	out := make([]L, len(objs))
	for i, o := range objs {
		l, err := lean(o)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = l.(L)
		switch l.(type) {
		case *routing.Service, *routing.EndpointSlice: // a transform may see an object twice
			if again, err := lean(l); err != nil || again != l {
				t.Fatalf("lean of a lean %T: %v, %v", l, again, err)
			}
		}
	}
	return out
}

// TestLeanObjectsTranslateTheSame: translation reads nothing lean drops.
// Everything translation looks at is varied here (named and numbered
// ports, a UDP port, ExternalName, conditions, several slices, the
// change-trigger annotation), and the fat objects carry what clusters add.
// Services and slices are cached as routing's forms: lean gives what
// routing.NewService and routing.NewEndpointSlice give, with namespaces
// interned and ports shared.
func TestLeanObjectsTranslateTheSame(t *testing.T) {
	rt := fatIngress("web", "web.example", "web")
	rt.Spec.Rules[0].HTTP.Paths = append(rt.Spec.Rules[0].HTTP.Paths,
		pathTo("/admin", "web", networkingv1.ServiceBackendPort{Number: 9000}),
		pathTo("/dns", "web", networkingv1.ServiceBackendPort{Name: "dns"}),
		pathTo("/db", "db", networkingv1.ServiceBackendPort{Number: 80}),
		pathTo("/drain", "drain", networkingv1.ServiceBackendPort{Name: "http"}))
	kubernetes := fatService("kubernetes", corev1.ServiceTypeClusterIP)
	kubernetes.Namespace, kubernetes.UID = metav1.NamespaceDefault, "cluster-id"
	services := []*corev1.Service{fatService("web", corev1.ServiceTypeClusterIP), fatService("db", corev1.ServiceTypeExternalName),
		fatService("drain", corev1.ServiceTypeClusterIP), kubernetes}
	endpointSlices := []*discoveryv1.EndpointSlice{
		fatSlice("web", "web-a", true, true, false, "10.0.0.1", "10.0.0.2"),
		fatSlice("web", "web-b", false, true, true, "10.0.0.3"),
		fatSlice("drain", "drain-a", false, true, true, "10.0.1.1"),
		unconditioned(fatSlice("web", "web-c", true, true, false, "10.0.0.4")),
	}
	full := &routing.Snapshot{
		IngressClasses: []*networkingv1.IngressClass{ingressClass()},
		Ingresses:      []*networkingv1.Ingress{rt},
	}
	for _, s := range services {
		full.Services = append(full.Services, routing.NewService(s))
	}
	for _, s := range endpointSlices {
		full.EndpointSlices = append(full.EndpointSlices, routing.NewEndpointSlice(s))
	}
	slim := &routing.Snapshot{
		IngressClasses: leanAll[*networkingv1.IngressClass, *networkingv1.IngressClass](t, full.IngressClasses),
		Ingresses:      leanAll[*networkingv1.Ingress, *networkingv1.Ingress](t, full.Ingresses),
		Services:       leanAll[*corev1.Service, *routing.Service](t, services),
		EndpointSlices: leanAll[*discoveryv1.EndpointSlice, *routing.EndpointSlice](t, endpointSlices),
	}
	want, got := routing.Translate(full, routing.Options{}), routing.Translate(slim, routing.Options{})
	if eskip.Print(eskip.PrettyPrintInfo{}, want.EskipRoutes()...) != eskip.Print(eskip.PrettyPrintInfo{}, got.EskipRoutes()...) ||
		!reflect.DeepEqual(want.Backends, got.Backends) || !reflect.DeepEqual(want.Problems, got.Problems) {
		t.Fatalf("lean objects translate differently:\nwhole: %v %+v %+v\nlean:  %v %+v %+v",
			want.EskipRoutes(), want.Backends, want.Problems, got.EskipRoutes(), got.Backends, got.Problems)
	}
	if len(want.Backends) != 3 || len(want.Problems) != 2 {
		t.Fatalf("the fixture no longer exercises backends and problems: %+v %+v", want.Backends, want.Problems)
	}
	triggered := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for i, s := range slim.EndpointSlices {
		if !reflect.DeepEqual(s, full.EndpointSlices[i]) {
			t.Errorf("lean slice %+v, want %+v", s, full.EndpointSlices[i])
		}
		if got := changeTime(s); !got.Equal(triggered) {
			t.Errorf("slice %s: change time %v, want its last-change-trigger-time %v", s.Name, got, triggered)
		}
		if s.Service != endpointSlices[i].Labels[discoveryv1.LabelServiceName] || s.ResourceVersion != "9" {
			t.Errorf("slice %s: service %q, resource version %q", s.Name, s.Service, s.ResourceVersion)
		}
		whole := endpointSlices[i].Endpoints
		for j, ep := range s.Endpoints {
			c := whole[j].Conditions
			wantEP := routing.SliceEndpoint{Address: whole[j].Addresses[0], Ready: c.Ready == nil || *c.Ready,
				Serving:     c.Serving == nil && (c.Ready == nil || *c.Ready) || c.Serving != nil && *c.Serving,
				Terminating: c.Terminating != nil && *c.Terminating}
			if ep != wantEP {
				t.Errorf("slice %s endpoint %d: %+v, want %+v (of %+v)", s.Name, j, ep, wantEP, whole[j])
			}
		}
	}
	if ep := slim.EndpointSlices[1].Endpoints[0]; ep.Ready || !ep.Serving || !ep.Terminating {
		t.Errorf("a terminating endpoint reads %+v", ep)
	}
	if ep := slim.EndpointSlices[3].Endpoints[0]; !ep.Ready || !ep.Serving || ep.Terminating {
		t.Errorf("an endpoint without conditions reads %+v, want ready and serving", ep)
	}
	if got := changeTime(leanAll[*discoveryv1.EndpointSlice, *routing.EndpointSlice](t, []*discoveryv1.EndpointSlice{unannotated(fatSlice("web", "web-d", true, true, false, "10.0.0.5"))})[0]); got.Before(time.Now().Add(-time.Minute)) {
		t.Errorf("a slice without a trigger time changed at %v, want now", got)
	}
	if a, b := slim.EndpointSlices[0].Ports, slim.EndpointSlices[1].Ports; len(a) == 0 || &a[0] != &b[0] {
		t.Errorf("slices with the same ports do not share them: %p %p", a, b)
	}
	if ports := leanAll[*discoveryv1.EndpointSlice, *routing.EndpointSlice](t, []*discoveryv1.EndpointSlice{fatSlice("web", "web-e", true, true, false, "10.0.0.6")})[0].Ports; &ports[0] != &slim.EndpointSlices[0].Ports[0] {
		t.Errorf("a slice with the same ports later does not share them")
	}
	other := fatSlice("web", "web-f", true, true, false, "10.0.0.7")
	*other.Ports[0].Port = 8081
	if ports := leanAll[*discoveryv1.EndpointSlice, *routing.EndpointSlice](t, []*discoveryv1.EndpointSlice{other})[0].Ports; &ports[0] == &slim.EndpointSlices[0].Ports[0] || *ports[0].Port != 8081 {
		t.Errorf("a slice with other ports shares the list of another: %+v", ports)
	}
	if a, b := slim.Services[0].Ports, slim.Services[1].Ports; len(a) != 3 || &a[0] != &b[0] {
		t.Errorf("services with the same ports do not share them: %p %p", a, b)
	}
	otherService := fatService("other", corev1.ServiceTypeClusterIP)
	otherService.Spec.Ports[0].TargetPort = intstr.FromString("www")
	if ports := leanAll[*corev1.Service, *routing.Service](t, []*corev1.Service{otherService})[0].Ports; &ports[0] == &slim.Services[0].Ports[0] || ports[0].TargetPort.StrVal != "www" {
		t.Errorf("a service with other ports shares the list of another: %+v", ports)
	}
	if ing := slim.Ingresses[0]; ing.Labels != nil || ing.UID != "" || ing.OwnerReferences != nil || ing.Finalizers != nil ||
		ing.GenerateName != "" || ing.ManagedFields != nil || len(ing.Annotations) != 1 || ing.Status.LoadBalancer.Ingress == nil {
		t.Errorf("ingress not lean, or without its status: %+v", ing)
	}
	for i, s := range slim.Services {
		want := *full.Services[i]
		want.Ports = slices.Clone(want.Ports)
		for j := range want.Ports {
			want.Ports[j].NodePort = 0 // read by nothing here
		}
		if !reflect.DeepEqual(*s, want) {
			t.Errorf("lean service %+v, want %+v", s, want)
		}
		if wantUID := s.Namespace == metav1.NamespaceDefault && s.Name == "kubernetes"; (s.UID != "") != wantUID {
			t.Errorf("service %s/%s: UID %q; only default/kubernetes keeps it (clusterChanged reads it)", s.Namespace, s.Name, s.UID)
		}
	}
	if slim.Services[len(slim.Services)-1].UID != "cluster-id" {
		t.Errorf("default/kubernetes lost its UID: %+v", slim.Services[len(slim.Services)-1])
	}
}

// unconditioned drops every endpoint's conditions (nil: ready, serving).
func unconditioned(s *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	for i := range s.Endpoints {
		s.Endpoints[i].Conditions = discoveryv1.EndpointConditions{}
	}
	return s
}

func unannotated(s *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	s.Annotations = nil
	return s
}

func pathTo(p, svc string, port networkingv1.ServiceBackendPort) networkingv1.HTTPIngressPath {
	pt := networkingv1.PathTypePrefix
	return networkingv1.HTTPIngressPath{Path: p, PathType: &pt,
		Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: port}}}
}

// BenchmarkLeanCache reports what a cached object costs the heap, index
// entries included: 10,000 Services and EndpointSlices (3 endpoints each,
// as the scale benchmark's) decoded from protobuf as the informers decode
// them, made lean and stored as the informers store them.
func BenchmarkLeanCache(b *testing.B) {
	const n = 10000
	svcData, err := fatService("web", corev1.ServiceTypeClusterIP).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	sliceData, err := fatSlice("web", "web-a", true, true, false, "10.0.0.1", "10.0.0.2", "10.0.0.3").Marshal()
	if err != nil {
		b.Fatal(err)
	}
	ingressData, err := fatIngress("web", "web.example", "web").Marshal()
	if err != nil {
		b.Fatal(err)
	}
	for _, kind := range []string{"Service", "EndpointSlice", "Ingress"} {
		b.Run(kind, func(b *testing.B) {
			var perObject float64
			for b.Loop() {
				store := newCacheLike()
				var index sliceIndex
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				for i := range n {
					var obj any
					name := fmt.Sprintf("app-%05d", i)
					switch kind {
					case "Service":
						s := &corev1.Service{}
						if err := s.Unmarshal(svcData); err != nil {
							b.Fatal(err)
						}
						s.Name = name
						obj = s
					case "Ingress":
						ing := &networkingv1.Ingress{}
						if err := ing.Unmarshal(ingressData); err != nil {
							b.Fatal(err)
						}
						ing.Name = name
						obj = ing
					default:
						s := &discoveryv1.EndpointSlice{}
						if err := s.Unmarshal(sliceData); err != nil {
							b.Fatal(err)
						}
						s.Name, s.Labels[discoveryv1.LabelServiceName] = name, name
						obj = s
					}
					l, err := lean(obj)
					if err != nil {
						b.Fatal(err)
					}
					if err := store.Add(l); err != nil {
						b.Fatal(err)
					}
					if kind == "EndpointSlice" {
						index.update(nil, l)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perObject = float64(after.HeapAlloc-before.HeapAlloc) / n
				runtime.KeepAlive(store)
				runtime.KeepAlive(&index)
			}
			b.ReportMetric(perObject, "B/cached-object")
		})
	}
}

// newCacheLike is an informer's store, with the watcher's indexers: none
// (see unindexed; the slices' index by Service is sliceIndex).
func newCacheLike() cache.Indexer {
	return cache.NewIndexer(cache.DeletionHandlingMetaNamespaceKeyFunc, cache.Indexers{})
}

// The watcher's informers have no indexer: nothing lists by namespace
// (see unindexed), and the slices by Service are in sliceIndex.
func TestWatcherIndexers(t *testing.T) {
	w := newWatcher(Clients{Kube: fake.NewClientset()}, nil, make(chan struct{}, 1), func(error) {})
	for kind, inf := range map[string]cache.SharedIndexInformer{"Ingress": w.ingresses, "Service": w.services, "EndpointSlice": w.slices} {
		if indexers := inf.GetIndexer().GetIndexers(); len(indexers) != 0 {
			t.Errorf("%s informer has indexers %v", kind, slices.Collect(maps.Keys(indexers)))
		}
	}
}
