package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/bulkhead-router/bulkhead/internal/loadgen"
	"github.com/bulkhead-router/bulkhead/internal/testpods"
	"github.com/bulkhead-router/bulkhead/internal/testrouter"
)

// aliasService publishes a Service in namespace whose EndpointSlice names
// the given pods (which live in another namespace): every namespace of a
// lifecycle walk gets backends without starting pods of its own.
func (e *env) aliasService(namespace, name string, pods []*testpods.Pod) {
	e.t.Helper()
	ensureNamespace(e.t, e.client, namespace)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
		}},
	}
	if _, err := e.client.CoreV1().Services(namespace).Create(e.ctx(), svc, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("create Service %s/%s: %v", namespace, name, err)
	}
	portName, port := "http", pods[0].Port
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name + "-alias",
			Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port}},
	}
	for _, p := range pods {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{p.IP.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}})
	}
	if _, err := e.client.DiscoveryV1().EndpointSlices(namespace).Create(e.ctx(), es, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("create EndpointSlice %s/%s: %v", namespace, es.Name, err)
	}
}

// walkStep is one Ingress of a lifecycle walk and the requests it must
// answer: host and path to the pod Service that must answer (a 503 for a
// backend that does not exist).
type walkStep struct {
	name     string
	services []string // aliased into the step's namespace
	ingress  func(ns string) *networkingv1.Ingress
	expect   []walkExpect
}

type walkExpect struct {
	host, path string
	service    string // the pods' Service that must answer; "" with status
	status     int
}

// TestIngressLifecycleWalk walks Ingress lifecycles the way a conformance
// suite or a CI environment does: apply an Ingress, check every path,
// delete it, apply the next one in another namespace, a dozen times with
// Ingresses of different shapes, requests checked after every step, and
// steady load on an unrelated Ingress throughout. With the deletion guard
// at its defaults nothing may be held: a held addition or deletion shows as
// a step that does not converge.
func TestIngressLifecycleWalk(t *testing.T) {
	t.Parallel()
	e := newEnvNoRouter(t)
	e.ingressClass("bulkhead", false)
	pods := map[string][]*testpods.Pod{}
	for _, svc := range []string{"a", "b", "c"} {
		pods[svc] = e.startPods("walk", svc, 1)
	}
	e.startPods("lkg", "web", 2)
	e.apply(ingress("lkg", "web", "bulkhead", rule("web.example", path("/", prefix(), "web"))))
	e.router = testrouter.Start(t, testrouter.Options{Kubeconfig: e.cp.Kubeconfig()})
	e.router.WaitReady(30 * time.Second)
	e.expectAllPods("web.example", "web-0", "web-1")
	load := loadgen.Start(loadgen.Target{URL: e.router.ProxyURL + "/", Host: "web.example"}, loadgen.Options{Rate: 50})

	svcPath := func(p, pathType, svc string, port networkingv1.ServiceBackendPort) networkingv1.HTTPIngressPath {
		pt := networkingv1.PathType(pathType)
		return networkingv1.HTTPIngressPath{Path: p, PathType: &pt, Backend: networkingv1.IngressBackend{
			Service: &networkingv1.IngressServiceBackend{Name: svc, Port: port}}}
	}
	num := networkingv1.ServiceBackendPort{Number: 80}
	named := networkingv1.ServiceBackendPort{Name: "http"}
	steps := []walkStep{
		{name: "six-backends", services: []string{"s1", "s2", "s3", "s4", "s5", "s6"},
			ingress: func(ns string) *networkingv1.Ingress {
				var ps []networkingv1.HTTPIngressPath
				for i := 1; i <= 6; i++ {
					ps = append(ps, svcPath(fmt.Sprintf("/s%d", i), "Prefix", fmt.Sprintf("s%d", i), num))
				}
				return ingress(ns, "shop", "bulkhead", rule("shop.walk", ps...))
			},
			expect: []walkExpect{{"shop.walk", "/s1", "a", 0}, {"shop.walk", "/s6/x", "a", 0}}},
		{name: "another-app", services: []string{"blog"},
			ingress: func(ns string) *networkingv1.Ingress {
				return ingress(ns, "blog", "bulkhead", rule("blog.walk", svcPath("/", "Prefix", "blog", num)))
			},
			expect: []walkExpect{{"blog.walk", "/", "b", 0}}},
		{name: "exact-and-prefix", services: []string{"x", "y"},
			ingress: func(ns string) *networkingv1.Ingress {
				return ingress(ns, "paths", "bulkhead", rule("paths.walk",
					svcPath("/api", "Exact", "x", num), svcPath("/api", "Prefix", "y", num)))
			},
			expect: []walkExpect{{"paths.walk", "/api", "a", 0}, {"paths.walk", "/api/v1", "b", 0}}},
		{name: "wildcard-host", services: []string{"w"},
			ingress: func(ns string) *networkingv1.Ingress {
				return ingress(ns, "wild", "bulkhead", rule("*.wild.walk", svcPath("/", "Prefix", "w", num)))
			},
			expect: []walkExpect{{"one.wild.walk", "/", "c", 0}}},
		{name: "default-backend", services: []string{"d"},
			ingress: func(ns string) *networkingv1.Ingress {
				ing := ingress(ns, "fallback", "bulkhead")
				ing.Spec.DefaultBackend = &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "d", Port: num}}
				return ing
			},
			expect: []walkExpect{{"anything.walk", "/nowhere", "a", 0}}},
		{name: "named-port-two-hosts", services: []string{"n1", "n2"},
			ingress: func(ns string) *networkingv1.Ingress {
				return ingress(ns, "two", "bulkhead",
					rule("one.walk", svcPath("/", "Prefix", "n1", named)),
					rule("two.walk", svcPath("/", "ImplementationSpecific", "n2", named)))
			},
			expect: []walkExpect{{"one.walk", "/", "b", 0}, {"two.walk", "/deep/path", "c", 0}}},
		{name: "annotations", services: []string{"rr"},
			ingress: func(ns string) *networkingv1.Ingress {
				ing := ingress(ns, "tuned", "bulkhead", rule("tuned.walk", svcPath("/", "Prefix", "rr", num)))
				ing.Annotations = map[string]string{"bulkhead.io/load-balancer": "round-robin", "bulkhead.io/connect-timeout": "500ms"}
				return ing
			},
			expect: []walkExpect{{"tuned.walk", "/", "a", 0}}},
		{name: "missing-service", services: []string{"present"},
			ingress: func(ns string) *networkingv1.Ingress {
				return ingress(ns, "partial", "bulkhead", rule("partial.walk",
					svcPath("/ok", "Prefix", "present", num), svcPath("/gone", "Prefix", "absent", num)))
			},
			expect: []walkExpect{{"partial.walk", "/ok", "b", 0}, {"partial.walk", "/gone", "", http.StatusServiceUnavailable}}},
		{name: "host-of-a-deleted-ingress", services: []string{"again"},
			ingress: func(ns string) *networkingv1.Ingress {
				return ingress(ns, "shop-again", "bulkhead", rule("shop.walk", svcPath("/", "Prefix", "again", num)))
			},
			expect: []walkExpect{{"shop.walk", "/s1", "c", 0}}},
		{name: "hostless-rule", services: []string{"h"},
			ingress: func(ns string) *networkingv1.Ingress {
				return ingress(ns, "hostless", "bulkhead", rule("", svcPath("/hostless", "Prefix", "h", num)))
			},
			expect: []walkExpect{{"any.walk", "/hostless", "a", 0}}},
		{name: "many-paths", services: []string{"m1", "m2", "m3"},
			ingress: func(ns string) *networkingv1.Ingress {
				var ps []networkingv1.HTTPIngressPath
				for i := range 30 {
					ps = append(ps, svcPath(fmt.Sprintf("/p%d", i), "Prefix", fmt.Sprintf("m%d", i%3+1), num))
				}
				return ingress(ns, "many", "bulkhead", rule("many.walk", ps...))
			},
			expect: []walkExpect{{"many.walk", "/p0", "c", 0}, {"many.walk", "/p29", "c", 0}, {"many.walk", "/p1", "b", 0}}},
		{name: "changed-before-deleted", services: []string{"v1", "v2"},
			ingress: func(ns string) *networkingv1.Ingress {
				return ingress(ns, "changing", "bulkhead", rule("change.walk", svcPath("/", "Prefix", "v1", num)))
			},
			expect: []walkExpect{{"change.walk", "/", "a", 0}}},
	}
	// Which pods each aliased Service of a step points at: spread over a, b, c.
	aliases := map[string]string{
		"s1": "a", "s2": "a", "s3": "a", "s4": "a", "s5": "a", "s6": "a", "blog": "b", "x": "a", "y": "b", "w": "c",
		"d": "a", "n1": "b", "n2": "c", "rr": "a", "present": "b", "again": "c", "h": "a", "m1": "c", "m2": "b", "m3": "c",
		"v1": "a", "v2": "b",
	}

	var toLive, toGone []time.Duration
	for i, step := range steps {
		ns := fmt.Sprintf("walk-%02d-%s", i, step.name)
		for _, svc := range step.services {
			e.aliasService(ns, svc, pods[aliases[svc]])
		}
		applied := time.Now()
		e.apply(step.ingress(ns))
		for _, x := range step.expect {
			if x.service != "" {
				e.expectPod(x.host, x.path, x.service, "")
			} else {
				e.expectStatus(x.host, x.path, x.status)
			}
		}
		toLive = append(toLive, time.Since(applied))
		e.expectPod("web.example", "/", "web", "")
		if step.name == "changed-before-deleted" {
			ing := step.ingress(ns)
			ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name = "v2"
			e.apply(ing)
			e.expectPod("change.walk", "/", "b", "")
		}
		deleted := time.Now()
		e.deleteIngress(ns, step.ingress(ns).Name)
		for _, x := range step.expect {
			e.expectStatus(x.host, x.path, http.StatusNotFound)
		}
		toGone = append(toGone, time.Since(deleted))
		if v, _ := e.router.Metric("bulkhead_deletion_guard_holding"); v != 0 {
			t.Fatalf("step %s: the deletion guard holds something:\n%s", step.name, e.status(t))
		}
	}
	r := load.Stop()
	t.Logf("lifecycle walk of %d Ingresses: apply to every path live p50 %s max %s; delete to 404 p50 %s max %s; load on an unrelated Ingress: %s",
		len(steps), median(toLive), slices.Max(toLive), median(toGone), slices.Max(toGone), r)
	if r.Failed != 0 || r.Sent == 0 {
		t.Errorf("%d of %d requests to the unrelated Ingress failed: %s", r.Failed, r.Sent, r)
	}
	if n := sumMetric(e.router, "bulkhead_deletion_guard_holds_total"); n != 0 {
		t.Errorf("the deletion guard held %v times during an ordinary walk", n)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Round(time.Millisecond)
}

// TestEmptyClusterAfterReconnectIsHeld: the API server comes back from an
// outage with an empty store (a restored empty backup, a new cluster behind
// the same address). Every Ingress and every EndpointSlice is gone; none
// of it was announced. The guard holds it all, every request keeps being
// answered by the old pods, an Ingress created meanwhile is served at once,
// and a confirmation applies the removal.
func TestEmptyClusterAfterReconnectIsHeld(t *testing.T) {
	t.Parallel()
	e := newOutageEnv(t, false, "-deletion-guard-period", "10m")
	e.startPods("lkg", "api", 1)
	e.apply(ingress("lkg", "api", "bulkhead", rule("api.example", path("/", prefix(), "api"))))
	e.expectPod("api.example", "/", "api", "")
	s := e.steadyLoad()
	if err := e.cp.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	e.awaitConnected(false, 20*time.Second)
	if err := e.cp.WipeEtcd(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.cp.StartAPIServer(context.Background()); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	e.router.WaitFor(30*time.Second, "the deletion guard holding", func() bool {
		v, _ := e.router.Metric("bulkhead_deletion_guard_holding")
		return v == 1
	})
	t.Logf("empty cluster noticed and held %s after the API server returned", time.Since(back).Round(time.Millisecond))
	// The kinds may be held in separate rebuilds (each informer relists
	// on its own): await both.
	e.router.WaitFor(30*time.Second, "/status listing both Ingresses and both Services held", func() bool {
		st := e.status(t)
		for _, want := range []string{`"ingresses": 2`, `"services": 2`, `"announced": false`} {
			if !strings.Contains(st, want) {
				return false
			}
		}
		return true
	})
	if !strings.Contains(e.router.Log(), "deletion guard: holding") {
		t.Error("no log line for the hold")
	}
	e.expectAllPods("web.example", "web-0", "web-1")
	e.expectPod("api.example", "/", "api", "")

	// An addition while holding: served at once (the IngressClass is gone
	// too, so it comes back first).
	e.ingressClass("bulkhead", false)
	e.startPods("fresh", "fresh", 1)
	written := time.Now()
	e.apply(ingress("fresh", "fresh", "bulkhead", rule("fresh.example", path("/", prefix(), "fresh"))))
	e.expectPod("fresh.example", "/", "fresh", "")
	t.Logf("an Ingress created while holding was live %s after the write", time.Since(written).Round(time.Millisecond))
	s.finish(t, "API server back with an empty store, removal held")

	resp, err := http.Post(e.router.AdminURL+"/guard/confirm", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /guard/confirm: %d", resp.StatusCode)
	}
	e.expectStatus("web.example", "/", http.StatusNotFound)
	e.expectStatus("api.example", "/", http.StatusNotFound)
	e.expectPod("fresh.example", "/", "fresh", "")
}

// TestCrashRestartUnderLoadNeverAnswersFromAnEmptyTable: with the API
// server down, the router is SIGKILLed and started again while clients
// keep opening connections (an ALB that still counts the node healthy).
// Connections refused while no process exists are unavoidable; from the
// first connection the new process accepts, none may be refused, and no
// request may get anything but a pod's 200: the proxy socket is bound at
// once and served only once the stored table is loaded.
func TestCrashRestartUnderLoadNeverAnswersFromAnEmptyTable(t *testing.T) {
	t.Parallel()
	e := newOutageEnv(t, false)
	e.router.WaitFor(10*time.Second, "a snapshot written", func() bool {
		v, _ := e.router.Metric(`bulkhead_snapshot_writes_total{result="ok"}`)
		return v > 0
	})
	if err := e.cp.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(e.router.ProxyURL, "http://")

	type outcome struct {
		at      time.Time
		status  int
		refused bool
		err     error
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				o := outcome{at: time.Now()}
				o.status, o.refused, o.err = rawGet(addr, "web.example")
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				if o.refused {
					time.Sleep(time.Millisecond) // a refused connect returns at once: do not spin
				}
			}
		}()
	}
	// Load on the old process first.
	e.eventually(10*time.Second, "requests answered before the crash", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(outcomes) < 50 {
			return errNotYet
		}
		return nil
	})
	killed := time.Now()
	e.router.Kill()
	e.router.Restart()
	e.router.WaitReady(10 * time.Second)
	ready := time.Now()
	e.eventually(10*time.Second, "requests answered after the restart", func() error {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, o := range outcomes {
			if o.at.After(ready) && o.status == http.StatusOK {
				n++
			}
		}
		if n < 100 {
			return errNotYet
		}
		return nil
	})
	close(stop)
	wg.Wait()

	// The gap: from the kill until the new process answers its first
	// request. Connections refused then, or reset by the dying process,
	// are the crash itself; anything failing after it is ours.
	slices.SortFunc(outcomes, func(a, b outcome) int { return a.at.Compare(b.at) })
	var firstAnswered time.Time
	for _, o := range outcomes {
		if o.at.After(killed) && o.status != 0 {
			firstAnswered = o.at
			break
		}
	}
	var sent, ok, gapRefused, gapReset int
	var bad []string
	for _, o := range outcomes {
		if o.at.Before(killed) {
			continue
		}
		sent++
		inGap := o.at.Before(firstAnswered)
		switch {
		case o.status == http.StatusOK:
			ok++
		case inGap && o.refused:
			gapRefused++
		case inGap && o.err != nil:
			gapReset++
		case o.refused:
			bad = append(bad, fmt.Sprintf("refused at +%s", o.at.Sub(killed).Round(time.Microsecond)))
		case o.err != nil:
			bad = append(bad, fmt.Sprintf("error at +%s: %v", o.at.Sub(killed).Round(time.Microsecond), o.err))
		default:
			bad = append(bad, fmt.Sprintf("status %d at +%s", o.status, o.at.Sub(killed).Round(time.Microsecond)))
		}
	}
	t.Logf("crash-restart with the API server down: %d requests after SIGKILL, %d answered 200; while no process listened: %d refused, %d reset by the dying process; first answer %s after the kill, ready %s after the kill",
		sent, ok, gapRefused, gapReset, firstAnswered.Sub(killed).Round(time.Millisecond), ready.Sub(killed).Round(time.Millisecond))
	if len(bad) > 0 {
		t.Errorf("%d requests failed after the new process listened:\n%s", len(bad), strings.Join(bad[:min(len(bad), 20)], "\n"))
	}
	if ok == 0 {
		t.Error("no request answered after the restart")
	}
}

// rawGet sends one GET on a new connection and reads the status line.
func rawGet(addr, host string) (status int, refused bool, err error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return 0, isRefused(err), err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host); err != nil {
		return 0, false, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, false, err
	}
	resp.Body.Close()
	return resp.StatusCode, false, nil
}

func isRefused(err error) bool {
	return strings.Contains(err.Error(), "connection refused")
}
