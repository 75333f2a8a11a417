package dataclient

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/zalando/skipper/eskip"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/bulkhead-router/bulkhead/routing"
)

func ingressClass() *networkingv1.IngressClass {
	return &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "bulkhead"},
		Spec: networkingv1.IngressClassSpec{Controller: "bulkhead.io/ingress-controller"}}
}

func service(name string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
}

func slice(service string, ips ...string) *discoveryv1.EndpointSlice {
	port, name := int32(8080), "http"
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: service + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
	}
	for _, ip := range ips {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}})
	}
	return s
}

func ingress(name, host, svc string) *networkingv1.Ingress {
	class, pt := "bulkhead", networkingv1.PathTypePrefix
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Generation: 1},
		Spec: networkingv1.IngressSpec{IngressClassName: &class, Rules: []networkingv1.IngressRule{{
			Host: host,
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/", PathType: &pt,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}}},
			}}}},
		}}},
	}
}

// sink records what the client hands to the upstream layer.
type sink struct {
	mu      sync.Mutex
	current map[string][]string
	calls   int
}

func (s *sink) SetEndpoints(update map[string][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current == nil {
		s.current = map[string][]string{}
	}
	for k, v := range update {
		if v == nil {
			delete(s.current, k)
		} else {
			s.current[k] = slices.Clone(v)
		}
	}
	s.calls++
}

func (s *sink) get(key string) ([]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.current[key]
	return v, ok
}

// started runs a Client on a fake clientset holding objs.
func started(t *testing.T, objs ...any) (*Client, *fake.Clientset, *prometheus.Registry) {
	c, cs, reg, _ := startedWithSink(t, objs...)
	return c, cs, reg
}

func startedWithSink(t *testing.T, objs ...any) (*Client, *fake.Clientset, *prometheus.Registry, *sink) {
	t.Helper()
	var runtimeObjs []any = objs
	cs := fake.NewClientset()
	for _, o := range runtimeObjs {
		var err error
		ctx := context.Background()
		switch o := o.(type) {
		case *networkingv1.IngressClass:
			_, err = cs.NetworkingV1().IngressClasses().Create(ctx, o, metav1.CreateOptions{})
		case *networkingv1.Ingress:
			_, err = cs.NetworkingV1().Ingresses(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.Service:
			_, err = cs.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *discoveryv1.EndpointSlice:
			_, err = cs.DiscoveryV1().EndpointSlices(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	sk := &sink{}
	c := New(Options{Client: cs, Registerer: reg, HoldOff: time.Millisecond, MaxDelay: 5 * time.Millisecond, Endpoints: sk})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); c.Close(); <-done })
	return c, cs, reg, sk
}

// awaitLoadAll polls LoadAll until it stops returning the not-synced error.
func awaitLoadAll(t *testing.T, c *Client) []*eskip.Route {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		routes, err := c.LoadAll()
		if err == nil {
			return routes
		}
		if !errors.Is(err, errNotSynced) {
			t.Fatalf("LoadAll: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("never synced")
		}
		time.Sleep(time.Millisecond) // the informers sync in their own goroutines
	}
}

func ids(routes []*eskip.Route) []string {
	var out []string
	for _, r := range routes {
		if r.Id != sentinelID {
			out = append(out, r.Id)
		}
	}
	slices.Sort(out)
	return out
}

func TestLoadAllErrsUntilSynced(t *testing.T) {
	c := New(Options{Client: fake.NewClientset()})
	if routes, err := c.LoadAll(); err == nil || routes != nil {
		t.Fatalf("before Run: LoadAll = %v, %v; want the not-synced error and no routes", routes, err)
	}
}

func TestEmptyClusterGivesEmptyTableNotError(t *testing.T) {
	c, _, _ := started(t)
	routes := awaitLoadAll(t, c)
	if len(ids(routes)) != 0 {
		t.Fatalf("routes in an empty cluster: %v", ids(routes))
	}
}

func TestLoadUpdateReturnsOnlyChanges(t *testing.T) {
	c, cs, reg, sk := startedWithSink(t, ingressClass(), service("a"), slice("a", "10.0.0.1"), service("b"), slice("b", "10.0.0.2"),
		ingress("a", "a.example", "a"), ingress("b", "b.example", "b"))
	all := awaitLoadAll(t, c)
	if got := ids(all); len(got) != 2 {
		t.Fatalf("initial routes: %v", got)
	}
	if eps, _ := sk.get("ns/a:80"); !slices.Equal(eps, []string{"10.0.0.1:8080"}) {
		t.Fatalf("endpoints of ns/a:80 with the first table: %v", eps)
	}
	var routeB string
	for _, id := range ids(all) {
		if strings.Contains(id, "__b__") {
			routeB = id
		}
	}

	// An endpoint change of service a goes to the upstream layer alone: no
	// route changes, skipper gets no table.
	routeUpdates := testutil.ToFloat64(c.metrics.routeUpdates)
	full := testutil.ToFloat64(c.metrics.rebuilds.WithLabelValues("full"))
	if _, err := cs.DiscoveryV1().EndpointSlices("ns").Update(context.Background(), slice("a", "10.0.0.1", "10.0.0.3"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	await(t, "the new endpoint of ns/a:80", func() bool {
		eps, _ := sk.get("ns/a:80")
		return slices.Equal(eps, []string{"10.0.0.1:8080", "10.0.0.3:8080"})
	})
	if changed, deleted, _ := c.LoadUpdate(); len(ids(changed)) != 0 || len(deleted) != 0 {
		t.Fatalf("an endpoint change gave skipper routes: changed %v deleted %v", ids(changed), deleted)
	}
	if v := testutil.ToFloat64(c.metrics.routeUpdates); v != routeUpdates {
		t.Fatalf("%s went from %v to %v on an endpoint change", MetricRouteUpdates, routeUpdates, v)
	}
	if v := testutil.ToFloat64(c.metrics.rebuilds.WithLabelValues("full")); v != full {
		t.Fatalf("an endpoint change translated everything (%s{kind=full} %v -> %v)", MetricRebuilds, full, v)
	}
	if v := testutil.ToFloat64(c.metrics.rebuilds.WithLabelValues("endpoints")); v != 1 {
		t.Fatalf("%s{kind=endpoints} = %v, want 1", MetricRebuilds, v)
	}

	if eps, _ := sk.get("ns/b:80"); !slices.Equal(eps, []string{"10.0.0.2:8080"}) {
		t.Fatalf("endpoints of ns/b:80 after a's change: %v", eps)
	}

	// Slices of a Service no route uses cost a cache update and nothing
	// else; a Service losing its last endpoint is the guard's call, on a
	// full rebuild.
	unused := slice("unused", "10.0.0.9")
	if _, err := cs.DiscoveryV1().EndpointSlices("ns").Create(context.Background(), unused, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	await(t, "the unused slice in the cache", func() bool {
		return testutil.ToFloat64(c.metrics.events.WithLabelValues("EndpointSlice", "add")) >= 3
	})
	if _, err := cs.DiscoveryV1().EndpointSlices("ns").Update(context.Background(), slice("b"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	await(t, "ns/b:80 without endpoints", func() bool { eps, _ := sk.get("ns/b:80"); return len(eps) == 0 })
	if v := testutil.ToFloat64(c.metrics.rebuilds.WithLabelValues("full")); v != full+1 {
		t.Fatalf("the last endpoint of ns/b:80 left without a full rebuild (%s{kind=full} %v -> %v)", MetricRebuilds, full, v)
	}
	if v := testutil.ToFloat64(c.metrics.rebuilds.WithLabelValues("endpoints")); v != 1 {
		t.Fatalf("%s{kind=endpoints} = %v after an unused Service's slice, want still 1", MetricRebuilds, v)
	}

	// Deleting Ingress b deletes its route and changes nothing else; its
	// backend leaves the upstream layer once skipper has installed the
	// table without the route (the sentinel reports it).
	if err := cs.NetworkingV1().Ingresses("ns").Delete(context.Background(), "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	changed, deleted := awaitUpdate(t, c)
	if len(ids(changed)) != 0 || !slices.Equal(deleted, []string{routeB}) {
		t.Fatalf("after deleting b: changed %v deleted %v", ids(changed), deleted)
	}
	if _, ok := sk.get("ns/b:80"); !ok {
		t.Fatal("ns/b:80 left the upstream layer before skipper installed the table without its route")
	}
	c.mu.Lock()
	version := c.current.version
	c.mu.Unlock()
	c.tableLive(0, version)
	if _, ok := sk.get("ns/b:80"); ok {
		t.Fatal("ns/b:80 still in the upstream layer after the table without its route went live")
	}
	if v := testutil.ToFloat64(c.metrics.routes); v != 1 {
		t.Errorf("%s = %v", MetricRoutes, v)
	}
	if n, _ := testutil.GatherAndCount(reg, MetricRebuildDuration); n != 1 {
		t.Errorf("rebuild histogram not exported")
	}
}

// awaitUpdate calls LoadUpdate until it returns something (each call waits
// up to about a second for a new table).
func awaitUpdate(t *testing.T, c *Client) ([]*eskip.Route, []string) {
	t.Helper()
	for range 10 {
		changed, deleted, err := c.LoadUpdate()
		if err != nil {
			t.Fatal(err)
		}
		if len(ids(changed)) > 0 || len(deleted) > 0 {
			return changed, deleted
		}
	}
	t.Fatal("no update arrived")
	return nil, nil
}

func TestLoadUpdateWaitsForAChangeAndCloseReleasesIt(t *testing.T) {
	c, _, _ := started(t, ingressClass())
	awaitLoadAll(t, c)
	returned := make(chan struct{})
	go func() {
		changed, deleted, err := c.LoadUpdate()
		if err != nil || len(ids(changed)) != 0 || len(deleted) != 0 {
			t.Errorf("LoadUpdate with nothing new = %v %v %v", ids(changed), deleted, err)
		}
		close(returned)
	}()
	c.Close()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not release a waiting LoadUpdate")
	}
}

func TestStatusOnlyUpdateDoesNotRebuild(t *testing.T) {
	c, cs, _ := started(t, ingressClass(), service("a"), slice("a", "10.0.0.1"), ingress("a", "a.example", "a"))
	awaitLoadAll(t, c)
	before := testutil.ToFloat64(c.metrics.events.WithLabelValues("Ingress", "status"))
	ing, _ := cs.NetworkingV1().Ingresses("ns").Get(context.Background(), "a", metav1.GetOptions{})
	ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "192.0.2.1"}}
	if _, err := cs.NetworkingV1().Ingresses("ns").UpdateStatus(context.Background(), ing, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(c.metrics.events.WithLabelValues("Ingress", "status")) == before {
		if time.Now().After(deadline) {
			t.Fatal("the status update never arrived")
		}
		time.Sleep(time.Millisecond) // informer delivery is asynchronous
	}
	if changed, deleted, _ := c.LoadUpdate(); len(changed) != 0 || len(deleted) != 0 {
		t.Fatalf("a status-only update produced a new table: %v %v", ids(changed), deleted)
	}
}

func TestManagedFieldsAndLastAppliedAreStripped(t *testing.T) {
	ing := ingress("a", "a.example", "a")
	ing.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	// Translation reads bulkhead.io/ annotations and the legacy class
	// annotation; the others (here Helm's) are dropped too (leanIngress).
	ing.Annotations = map[string]string{corev1.LastAppliedConfigAnnotation: "{...}", routing.AnnotationLoadBalancer: "round-robin",
		"meta.helm.sh/release-name": "a"}
	c, _, _ := started(t, ing)
	awaitLoadAll(t, c)
	got := c.Ingresses()
	if len(got) != 1 || got[0].ManagedFields != nil || len(got[0].Annotations) != 1 || got[0].Annotations[routing.AnnotationLoadBalancer] != "round-robin" {
		t.Fatalf("cached Ingress not lean: %+v", got)
	}
}

func TestSentinelReportsInstalledVersion(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := New(Options{Shards: 2, Registerer: reg})
	c.pending = []pendingTable{
		{version: 3, waiting: []int{0, 1}, times: []time.Time{time.Now().Add(-50 * time.Millisecond)}},
		{version: 5, waiting: []int{1}, times: []time.Time{time.Now()}},
	}
	p, err := c.SentinelPredicate().Create([]any{float64(4), float64(1)})
	if err != nil {
		t.Fatal(err)
	}
	if p.Match(nil) {
		t.Fatal("the sentinel predicate matched a request")
	}
	if got := p.(versionPredicate); got != (versionPredicate{version: 4, shard: 1}) {
		t.Fatalf("sentinel predicate %+v, want version 4 of shard 1", got)
	}
	// Shard 1 installs version 4: version 3 still waits for shard 0, 5
	// for shard 1.
	c.tableLive(1, 4)
	if len(c.pending) != 2 || !slices.Equal(c.pending[0].waiting, []int{0}) || !slices.Equal(c.pending[1].waiting, []int{1}) {
		t.Fatalf("after shard 1 installed version 4: pending %+v", c.pending)
	}
	// Shard 0 installs version 4: version 3 is live everywhere.
	c.tableLive(0, 4)
	if len(c.pending) != 1 || c.pending[0].version != 5 {
		t.Fatalf("after shard 0 installed version 4: pending %+v", c.pending)
	}
	if n := testutil.CollectAndCount(c.metrics.convergence); n != 1 {
		t.Errorf("convergence histogram: %d series", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var observed uint64
	for _, mf := range mfs {
		if mf.GetName() == MetricConvergenceLatency {
			observed = mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	if observed != 1 {
		t.Errorf("%d changes observed, want 1", observed)
	}
}

// A change to an object nothing served depends on (another controller's
// Ingress, a Service no route names) costs a cache update: no translation.
// A change of our own Ingress, or of a Service a route names, is rebuilt.
func TestChangesNothingServedDependsOnAreNotRebuilt(t *testing.T) {
	c, cs, _ := started(t, ingressClass(), service("a"), slice("a", "10.0.0.1"), ingress("a", "a.example", "a"))
	awaitLoadAll(t, c)
	ctx := context.Background()
	full := func() float64 { return testutil.ToFloat64(c.metrics.rebuilds.WithLabelValues("full")) }
	events := func() float64 {
		return testutil.ToFloat64(c.metrics.events.WithLabelValues("Ingress", "add")) + testutil.ToFloat64(c.metrics.events.WithLabelValues("Service", "add"))
	}
	before, seen := full(), events()

	other := ingress("other", "other.example", "a")
	otherClass := "nginx"
	other.Spec.IngressClassName = &otherClass
	if _, err := cs.NetworkingV1().Ingresses("ns").Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services("ns").Create(ctx, service("unused"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	await(t, "both adds seen", func() bool { return events() >= seen+2 })
	// What the rebuild decides from, asked directly (the rebuild goroutine
	// may have merged these changes with others).
	c.mu.Lock()
	cur := c.current
	c.mu.Unlock()
	w := c.currentWatcher()
	name := func(n string) map[types.NamespacedName]bool {
		return map[types.NamespacedName]bool{{Namespace: "ns", Name: n}: true}
	}
	for _, tc := range []struct {
		what   string
		dirty  dirtySet
		unused bool
	}{
		{"another controller's Ingress", dirtySet{ingresses: name("other")}, true},
		{"a Service no route names", dirtySet{objects: name("unused")}, true},
		{"a served Ingress", dirtySet{ingresses: name("a")}, false},
		{"a Service a route names", dirtySet{objects: name("a")}, false},
	} {
		if got := c.unused(w, cur, tc.dirty); got != tc.unused {
			t.Errorf("%s: unused = %v, want %v", tc.what, got, tc.unused)
		}
	}
	// The adds are handled by the rebuild goroutine; a change of ours
	// after them is rebuilt after them, so once it is live they were seen.
	if _, err := cs.NetworkingV1().Ingresses("ns").Create(ctx, ingress("b", "b.example", "a"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	await(t, "Ingress b in the cache", func() bool {
		_, ok, _ := c.currentWatcher().ingresses.GetIndexer().GetByKey("ns/b")
		return ok
	})
	if c.unused(c.currentWatcher(), cur, dirtySet{ingresses: name("b")}) {
		t.Error("a new Ingress of ours, not served yet, counted as unused")
	}
	await(t, "Ingress b served", func() bool {
		tab, _ := c.Table()
		return len(tab.Routes) == 2
	})
	if got := full() - before; got != 1 {
		t.Fatalf("%v full rebuilds for another controller's Ingress, an unused Service and one Ingress of ours, want 1", got)
	}
	// A Service a route names is rebuilt.
	svc := service("a")
	svc.Spec.Ports[0].Port = 81
	if _, err := cs.CoreV1().Services("ns").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	await(t, "the used Service's change rebuilt", func() bool { return full()-before == 2 })
}

// A snapshot lists again only the kinds whose caches changed: the others
// keep their lists (the same slice, in the same order), which the
// translator then does not index again.
func TestSnapshotListsAgainOnlyChangedKinds(t *testing.T) {
	c, cs, _ := started(t, ingressClass(), service("a"), slice("a", "10.0.0.1"), ingress("a", "a.example", "a"))
	awaitLoadAll(t, c)
	w := c.currentWatcher()
	first := w.snapshot()
	if len(first.Services) != 1 || len(first.EndpointSlices) != 1 || len(first.Ingresses) != 1 {
		t.Fatalf("snapshot %+v", first)
	}
	if _, err := cs.NetworkingV1().Ingresses("ns").Create(context.Background(), ingress("b", "b.example", "a"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	await(t, "Ingress b in the cache", func() bool {
		_, ok, _ := w.ingresses.GetIndexer().GetByKey("ns/b")
		return ok
	})
	second := w.snapshot()
	if &second.Services[0] != &first.Services[0] || &second.EndpointSlices[0] != &first.EndpointSlices[0] {
		t.Error("Services or EndpointSlices listed again after an Ingress change")
	}
	if len(second.Ingresses) != 2 {
		t.Errorf("%d Ingresses after b was added, want 2", len(second.Ingresses))
	}
}
