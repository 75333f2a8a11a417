package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bulkhead-router/bulkhead/internal/testpods"
	"github.com/bulkhead-router/bulkhead/internal/testrouter"
)

// TestPathAndHostRules checks the Ingress v1 path and host rules through
// the whole system: Exact vs Prefix, element-wise prefixes, longest match,
// host case and port, wildcard hosts, host precedence with fall-through,
// defaultBackend, and 404 when nothing matches.
func TestPathAndHostRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.ingressClass("bulkhead", false)
	for _, svc := range []string{"exact", "prefix", "deeper", "wild", "hostless", "apex", "fallback"} {
		e.startPods("rules", svc, 1)
	}
	e.apply(ingress("rules", "paths", "bulkhead",
		rule("shop.example",
			path("/foo", exact(), "exact"),
			path("/foo/", prefix(), "prefix"), // the trailing slash of a Prefix rule is ignored
			path("/foo/bar", prefix(), "deeper"),
		),
		rule("*.wild.example", path("/", prefix(), "wild")),
		rule("apex.example", path("/", prefix(), "apex")),
	))
	e.apply(ingress("rules", "hostless", "bulkhead", rule("", path("/api/v1", prefix(), "hostless"))))
	e.router.WaitReady(30 * time.Second)

	// Paths.
	e.expectPod("shop.example", "/foo", "exact", "")
	e.expectPod("shop.example", "/foo/", "prefix", "")        // Exact /foo does not match /foo/
	e.expectPod("shop.example", "/foo/x", "prefix", "")       // Prefix matches element-wise
	e.expectPod("shop.example", "/foo/bar", "deeper", "")     // longest match wins
	e.expectPod("shop.example", "/foo/bar/baz", "deeper", "") //
	e.expectStatus("shop.example", "/foobar", http.StatusNotFound)
	e.expectStatus("shop.example", "/Foo", http.StatusNotFound) // paths are case-sensitive

	// Hosts: case-insensitive, port and trailing dot ignored.
	e.expectPod("SHOP.Example:8080", "/foo", "exact", "")
	e.expectPod("shop.example.", "/foo", "exact", "")
	// Wildcards match exactly one more label.
	e.expectPod("a.wild.example", "/x", "wild", "")
	e.expectStatus("b.a.wild.example", "/x", http.StatusNotFound)
	e.expectStatus("wild.example", "/x", http.StatusNotFound)

	// Host-less rules apply to every host, after the host's own rules:
	// shop.example has no /api rule, so it falls through.
	e.expectPod("shop.example", "/api/v1/items", "hostless", "")
	e.expectPod("unknown.example", "/api/v1", "hostless", "")
	e.expectPod("a.wild.example", "/api/v1", "wild", "") // the wildcard's / beats the host-less longer path
	e.expectPod("apex.example", "/api/v1/x", "apex", "") // exact host beats a longer host-less path
	e.expectStatus("unknown.example", "/other", http.StatusNotFound)

	// spec.defaultBackend takes requests that match no rule of any Ingress.
	e.apply(&networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: "rules", Name: "fallback"},
		Spec:       networkingv1.IngressSpec{IngressClassName: ptr("bulkhead"), DefaultBackend: ptr(backend("fallback"))},
	})
	e.expectPod("unknown.example", "/other", "fallback", "")
	e.expectPod("shop.example", "/foobar", "fallback", "")
	e.expectPod("b.a.wild.example", "/", "fallback", "")
	e.expectPod("shop.example", "/foo", "exact", "") // rules still win
}

// TestBackendsFollowEndpoints follows EndpointSlice and Service changes:
// pods added and removed, a service scaled to zero (503, not 404), the
// terminating-endpoint fallback, unknown services and ports.
func TestBackendsFollowEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.ingressClass("bulkhead", false)
	web := e.startPods("be", "web", 2)
	e.apply(ingress("be", "web", "bulkhead",
		rule("web.example", networkingv1.HTTPIngressPath{Path: "/", PathType: prefix(),
			Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
				Name: "web", Port: networkingv1.ServiceBackendPort{Name: "http"}, // port by name
			}}}),
		rule("missing.example", path("/", prefix(), "does-not-exist")),
		rule("badport.example", networkingv1.HTTPIngressPath{Path: "/", PathType: prefix(),
			Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
				Name: "web", Port: networkingv1.ServiceBackendPort{Number: 9999},
			}}}),
	))
	e.router.WaitReady(30 * time.Second)
	e.expectAllPods("web.example", "web-0", "web-1")
	routeTables, _ := e.router.Metric("bulkhead_route_updates_total")
	fullRebuilds, _ := e.router.Metric(`bulkhead_rebuilds_total{kind="full"}`)

	// A pod added is used.
	third, err := e.pods.StartPod(e.ctx(), testpods.PodSpec{Namespace: "be", Service: "web", Name: "web-2"})
	if err != nil {
		t.Fatal(err)
	}
	e.expectAllPods("web.example", "web-0", "web-1", "web-2")

	// A pod removed from the EndpointSlice is no longer used.
	e.pods.RemoveFromEndpoints(web[0])
	e.syncSlice("be", "web")
	e.expectAllPods("web.example", "web-1", "web-2")

	// Endpoints live beside the routes: those changes gave skipper no
	// table and translated nothing.
	if v, _ := e.router.Metric("bulkhead_route_updates_total"); v != routeTables {
		t.Errorf("endpoint changes gave skipper %v route tables, want none", v-routeTables)
	}
	if v, _ := e.router.Metric(`bulkhead_rebuilds_total{kind="full"}`); v != fullRebuilds {
		t.Errorf("endpoint changes caused %v full rebuilds, want none", v-fullRebuilds)
	}
	if v, _ := e.router.Metric(`bulkhead_rebuilds_total{kind="endpoints"}`); v < 2 {
		t.Errorf(`bulkhead_rebuilds_total{kind="endpoints"} = %v after two endpoint changes`, v)
	}

	// Scaled to zero: the path stays and answers 503, with a generic body
	// (internet clients learn no namespace or Service); the reason is on
	// /problems.
	e.pods.RemoveFromEndpoints(web[1])
	e.pods.RemoveFromEndpoints(third)
	e.syncSlice("be", "web")
	a := e.expectStatus("web.example", "/", http.StatusServiceUnavailable)
	if id := a.header.Get("X-Request-Id"); id == "" || a.body != "503 Service Unavailable\nrequest id: "+id+"\n" {
		t.Errorf("503 body %q (X-Request-Id %q), want the generic body with the request id", a.body, id)
	}
	e.expectProblem("Service", "be", "web", "NoEndpoints")

	// Only a terminating-but-serving endpoint left: it is used (Kubernetes'
	// rule for terminating endpoints).
	web[1].SetConditions(false, true, true)
	e.pods.AddToEndpoints(web[1])
	e.syncSlice("be", "web")
	e.expectAllPods("web.example", "web-1")
	// A ready endpoint appears: the terminating one is no longer used.
	e.pods.AddToEndpoints(third)
	e.syncSlice("be", "web")
	e.expectAllPods("web.example", "web-2")

	// Unknown service and unknown port: 503, reported, rest untouched.
	e.expectStatus("missing.example", "/", http.StatusServiceUnavailable)
	e.expectStatus("badport.example", "/", http.StatusServiceUnavailable)
	e.expectProblem("Ingress", "be", "web", "ServiceNotFound")
	e.expectProblem("Ingress", "be", "web", "ServicePortNotFound")

	// The missing Service appears (with a pod): the route follows.
	e.startPods("be", "does-not-exist", 1)
	e.expectPod("missing.example", "/", "does-not-exist", "")
}

// TestClassSelection: only Ingresses of our IngressClasses are served, by
// ingressClassName, by the legacy annotation, or through the default class.
func TestClassSelection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.ingressClass("bulkhead", false)
	other := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "other"},
		Spec: networkingv1.IngressClassSpec{Controller: "example.com/other-controller"}}
	if _, err := e.client.NetworkingV1().IngressClasses().Create(e.ctx(), other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.startPods("cls", "web", 1)
	e.apply(ingress("cls", "ours", "bulkhead", rule("ours.example", path("/", prefix(), "web"))))
	e.apply(ingress("cls", "theirs", "other", rule("theirs.example", path("/", prefix(), "web"))))
	legacy := ingress("cls", "legacy", "", rule("legacy.example", path("/", prefix(), "web")))
	legacy.Annotations = map[string]string{"kubernetes.io/ingress.class": "bulkhead"}
	e.apply(legacy)
	e.apply(ingress("cls", "classless", "", rule("classless.example", path("/", prefix(), "web"))))
	e.router.WaitReady(30 * time.Second)

	e.expectPod("ours.example", "/", "web", "")
	e.expectPod("legacy.example", "/", "web", "")
	e.expectStatus("theirs.example", "/", http.StatusNotFound)
	e.expectStatus("classless.example", "/", http.StatusNotFound)

	// Our class becomes the default: the class-less Ingress is served.
	ic, err := e.client.NetworkingV1().IngressClasses().Get(e.ctx(), "bulkhead", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ic.Annotations = map[string]string{networkingv1.AnnotationIsDefaultIngressClass: "true"}
	if _, err := e.client.NetworkingV1().IngressClasses().Update(e.ctx(), ic, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.expectPod("classless.example", "/", "web", "")
	e.expectStatus("theirs.example", "/", http.StatusNotFound)

	// An Ingress moved to another class is dropped.
	e.apply(ingress("cls", "ours", "other", rule("ours.example", path("/", prefix(), "web"))))
	e.expectStatus("ours.example", "/", http.StatusNotFound)
}

// TestIngressLifecycleAndConflicts: created, changed and deleted Ingresses,
// the deterministic conflict rule, and status written to served Ingresses.
func TestIngressLifecycleAndConflicts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "-publish-address", "192.0.2.10,lb.example.com", "-election-namespace", "default")
	e.ingressClass("bulkhead", false)
	e.startPods("life", "v1", 1)
	e.startPods("life", "v2", 1)
	e.apply(ingress("life", "app", "bulkhead", rule("app.example", path("/old", prefix(), "v1"))))
	e.router.WaitReady(30 * time.Second)
	e.expectPod("app.example", "/old", "v1", "")

	// Status: set on the served Ingress.
	want := []networkingv1.IngressLoadBalancerIngress{{IP: "192.0.2.10"}, {Hostname: "lb.example.com"}}
	e.expectIngressStatus("life", "app", want)

	// Changed: the old path goes, the new one comes.
	e.apply(ingress("life", "app", "bulkhead", rule("app.example", path("/new", prefix(), "v2"))))
	e.expectPod("app.example", "/new", "v2", "")
	e.expectStatus("app.example", "/old", http.StatusNotFound)

	// Conflict: a newer Ingress with the same host, path and type loses,
	// whatever its name, and says so on /problems.
	created, err := e.client.NetworkingV1().Ingresses("life").Get(e.ctx(), "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.eventually(5*time.Second, "a later creationTimestamp second", func() error {
		if !time.Now().After(created.CreationTimestamp.Add(time.Second)) {
			return fmt.Errorf("still within the second of %s", created.CreationTimestamp)
		}
		return nil
	})
	e.apply(ingress("life", "aaa-newer", "bulkhead", rule("app.example", path("/new", prefix(), "v1"))))
	e.expectProblem("Ingress", "life", "aaa-newer", "Conflict")
	for range 10 {
		if a, err := e.get("app.example", "/new"); err != nil || a.echo.Service != "v2" {
			t.Fatalf("conflict resolved for the newer Ingress: %+v %v", a.echo.Service, err)
		}
	}

	// Moved to another controller's class: routes go, and our status is removed.
	e.apply(ingress("life", "app", "someone-else", rule("app.example", path("/new", prefix(), "v2"))))
	e.expectIngressStatus("life", "app", nil)
	e.expectPod("app.example", "/new", "v1", "") // the conflict loser now serves

	// Deleted: gone.
	e.deleteIngress("life", "aaa-newer")
	e.expectStatus("app.example", "/new", http.StatusNotFound)
}

// expectAllPods awaits a state where requests to host reach exactly the
// given pods (all of them, and no other) over 30 requests.
func (e *env) expectAllPods(host string, pods ...string) {
	e.t.Helper()
	e.eventually(15*time.Second, fmt.Sprintf("%s served by exactly %v", host, pods), func() error {
		seen := map[string]bool{}
		for range 30 {
			a, err := e.get(host, "/")
			if err != nil {
				return err
			}
			if a.status != http.StatusOK {
				return fmt.Errorf("status %d: %.100s", a.status, a.body)
			}
			seen[a.echo.Pod] = true
		}
		for _, p := range pods {
			if !seen[p] {
				return fmt.Errorf("%s not seen; seen %v", p, seen)
			}
		}
		if len(seen) != len(pods) {
			return fmt.Errorf("seen %v", seen)
		}
		return nil
	})
}

func (e *env) syncSlice(namespace, service string) {
	e.t.Helper()
	if err := e.pods.SyncEndpointSlice(e.ctx(), namespace, service); err != nil {
		e.t.Fatalf("sync EndpointSlice: %v", err)
	}
}

type problem struct {
	Kind, Namespace, Name, Reason, Message string
}

// expectProblem awaits a problem on the admin endpoint's /problems.
func (e *env) expectProblem(kind, namespace, name, reason string) {
	e.t.Helper()
	e.eventually(10*time.Second, fmt.Sprintf("problem %s %s/%s %s", kind, namespace, name, reason), func() error {
		status, body := e.router.Admin("/problems", "Accept", "application/json")
		if status != http.StatusOK {
			return fmt.Errorf("/problems: %d", status)
		}
		var ps []problem
		if err := json.Unmarshal([]byte(body), &ps); err != nil {
			return err
		}
		for _, p := range ps {
			if p.Kind == kind && p.Namespace == namespace && p.Name == name && p.Reason == reason {
				return nil
			}
		}
		return fmt.Errorf("not listed: %s", body)
	})
}

func (e *env) expectIngressStatus(namespace, name string, want []networkingv1.IngressLoadBalancerIngress) {
	e.t.Helper()
	e.eventually(20*time.Second, fmt.Sprintf("status of %s/%s = %v", namespace, name, want), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ing, err := e.client.NetworkingV1().Ingresses(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		got := ing.Status.LoadBalancer.Ingress
		if len(got) != len(want) {
			return fmt.Errorf("status %v", got)
		}
		for i := range want {
			if got[i].IP != want[i].IP || got[i].Hostname != want[i].Hostname {
				return fmt.Errorf("status %v", got)
			}
		}
		return nil
	})
}

// TestOneReplicaWritesStatus: of two routers, exactly one holds the status
// lease; when it shuts down the other takes over and keeps status right.
func TestOneReplicaWritesStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "-publish-address", "192.0.2.20", "-election-namespace", "default")
	second := testrouter.Start(t, testrouter.Options{Kubeconfig: e.cp.Kubeconfig(),
		Args: []string{"-publish-address", "192.0.2.20", "-election-namespace", "default"}})
	e.ingressClass("bulkhead", false)
	e.startPods("ha", "web", 1)
	e.apply(ingress("ha", "one", "bulkhead", rule("one.example", path("/", prefix(), "web"))))
	want := []networkingv1.IngressLoadBalancerIngress{{IP: "192.0.2.20"}}
	e.expectIngressStatus("ha", "one", want)

	leaders := func() (first, other float64) {
		a, _ := e.router.Metric("bulkhead_status_leader")
		b, _ := second.Metric("bulkhead_status_leader")
		return a, b
	}
	e.eventually(30*time.Second, "exactly one leader", func() error {
		if a, b := leaders(); a+b != 1 {
			return fmt.Errorf("leader gauges %v and %v", a, b)
		}
		return nil
	})
	leader, follower := e.router, second
	if a, _ := leaders(); a != 1 {
		leader, follower = second, e.router
	}
	leader.Signal(syscall.SIGTERM)
	if code := leader.Wait(30 * time.Second); code != 0 {
		t.Fatalf("leader exited %d", code)
	}
	follower.WaitFor(30*time.Second, "the follower to take over", func() bool {
		v, _ := follower.Metric("bulkhead_status_leader")
		return v == 1
	})
	// The new leader writes: a new Ingress gets its status.
	e.apply(ingress("ha", "two", "bulkhead", rule("two.example", path("/", prefix(), "web"))))
	e.expectIngressStatus("ha", "two", want)
}
