package controlplane

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// TestControllers runs the real kube-controller-manager and kube-scheduler
// against the harness's kube-apiserver, with the test acting as the node
// agent (a Node, its Lease, the Pods' status): a Deployment becomes a
// ReplicaSet and Pods the scheduler binds; the EndpointSlice controller
// writes what the Pods' status says, including terminating endpoints; both
// programs survive a killed and restarted API server; the garbage
// collector, the namespace controller and node lifecycle with taint-based
// eviction work with the documented settings.
func TestControllers(t *testing.T) {
	t.Parallel() // most of it waits for the node lifecycle's timers
	// Shorter than the defaults, to keep the test short and prove the
	// settings are honoured; the test renews node-a's Lease every 2 s.
	const grace, toleration = 15 * time.Second, 20 * time.Second
	cp := ForTestWith(t, Options{Controllers: true, NodeMonitorGracePeriod: grace, PodEvictionToleration: toleration})
	client := cp.Client()
	ctx := t.Context()
	kcmPID, schedPID, err := cp.ControllerPIDs()
	if err != nil {
		t.Fatal(err)
	}

	// node-a is healthy: its Lease is renewed as a node agent would.
	// node-b stops renewing at once: it must go NotReady after the grace
	// period and its pod must be evicted after the toleration.
	nodeB := createNode(t, client, "node-b", "zone-b", true) // unschedulable: the Deployment's pods go to node-a
	createNode(t, client, "node-a", "zone-a", false)
	renewCtx, stopRenewing := context.WithCancel(ctx)
	var renewing sync.WaitGroup
	renewing.Go(func() { renewLease(renewCtx, client, "node-a") })
	t.Cleanup(func() { stopRenewing(); renewing.Wait() }) // before the control plane stops
	waitServiceAccount(t, client, "default")
	orphan := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "on-node-b", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:   "node-b",
			Containers: []corev1.Container{{Name: "c", Image: "bulkhead-test"}},
		},
	}
	if _, err := client.CoreV1().Pods("default").Create(ctx, orphan, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	setPodRunning(t, client, "default", "on-node-b", "10.213.99.10")

	const ns = "web"
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if _, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitServiceAccount(t, client, ns)
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "web", Image: "bulkhead-test",
					Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				}}},
			},
		},
	}
	deploy, err = client.AppsV1().Deployments(ns).Create(ctx, deploy, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	var rsName string
	eventually(t, time.Minute, "the Deployment owns a ReplicaSet", func() (bool, string) {
		list, err := client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, rs := range list.Items {
			if ref := metav1.GetControllerOf(&rs); ref != nil && ref.UID == deploy.UID {
				rsName = rs.Name
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d ReplicaSets, none owned by the Deployment", len(list.Items))
	})
	pods := waitPods(t, client, ns, 3, "node-a")
	ips := map[string]string{} // pod name -> IP
	for i, p := range pods {
		ips[p.Name] = fmt.Sprintf("10.213.7.%d", 10+i)
		setPodRunning(t, client, ns, p.Name, ips[p.Name])
	}
	waitSlice(t, client, ns, "web", sortedValues(ips), nil)

	// An API server outage: both programs stay up and reconnect.
	if err := cp.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := cp.RestartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if k, s, err := cp.ControllerPIDs(); err != nil || k != kcmPID || s != schedPID {
		t.Fatalf("the controllers did not outlive the API server's restart: pids %d, %d (were %d, %d), %v", k, s, kcmPID, schedPID, err)
	}

	// Scale 3 -> 1: two pods are deleted gracefully and, with no kubelet to
	// end them, stay terminating; the slice keeps them as serving but not
	// ready (what a router sees during a pod's grace period).
	scale(t, client, ns, "web", 1)
	var terminating []string
	eventually(t, time.Minute, "two pods terminating after scaling to 1", func() (bool, string) {
		list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		terminating = terminating[:0]
		for _, p := range list.Items {
			if p.DeletionTimestamp != nil {
				terminating = append(terminating, p.Name)
			}
		}
		return len(terminating) == 2, fmt.Sprintf("terminating: %v", terminating)
	})
	var kept string
	for name := range ips {
		if !slices.Contains(terminating, name) {
			kept = name
		}
	}
	waitSlice(t, client, ns, "web", []string{ips[kept]}, []string{ips[terminating[0]], ips[terminating[1]]})
	// The containers have ended: the kubelet would now delete with grace 0.
	for _, name := range terminating {
		if err := client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatal(err)
		}
	}
	waitSlice(t, client, ns, "web", []string{ips[kept]}, nil)

	// Scale 1 -> 2: a new pod, scheduled after the outage.
	scale(t, client, ns, "web", 2)
	pods = waitPods(t, client, ns, 2, "node-a")
	for _, p := range pods {
		if p.Name != kept {
			ips = map[string]string{kept: ips[kept], p.Name: "10.213.7.20"}
			setPodRunning(t, client, ns, p.Name, ips[p.Name])
		}
	}
	waitSlice(t, client, ns, "web", sortedValues(ips), nil)

	// The garbage collector: deleting the Deployment deletes its ReplicaSet.
	if err := client.AppsV1().Deployments(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "ReplicaSet "+rsName+" garbage-collected", func() (bool, string) {
		_, err := client.AppsV1().ReplicaSets(ns).Get(ctx, rsName, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})

	// The namespace controller: deleting a namespace finishes. Its pods
	// would wait for a kubelet, so the one it holds has none.
	const doomed = "doomed"
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: doomed}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: doomed}, Data: map[string]string{"k": "v"}}
	if _, err := client.CoreV1().ConfigMaps(doomed).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	empty := deploy.DeepCopy()
	empty.ObjectMeta = metav1.ObjectMeta{Name: "empty", Namespace: doomed}
	empty.Spec.Replicas = ptr.To[int32](0)
	if _, err := client.AppsV1().Deployments(doomed).Create(ctx, empty, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Namespaces().Delete(ctx, doomed, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "namespace "+doomed+" deleted", func() (bool, string) {
		n, err := client.CoreV1().Namespaces().Get(ctx, doomed, metav1.GetOptions{})
		if err != nil {
			return apierrors.IsNotFound(err), err.Error()
		}
		return false, fmt.Sprintf("phase %s, conditions %v", n.Status.Phase, n.Status.Conditions)
	})

	// Node lifecycle: node-b has not renewed its Lease since it was made.
	var notReadyAt time.Time
	eventually(t, grace+time.Minute, "node-b NotReady", func() (bool, string) {
		n, err := client.CoreV1().Nodes().Get(ctx, "node-b", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
				notReadyAt = c.LastTransitionTime.Time
				return true, ""
			}
		}
		return false, "still Ready"
	})
	if silent := notReadyAt.Sub(nodeB.CreationTimestamp.Time); silent < grace-time.Second || silent > grace+30*time.Second {
		t.Errorf("node-b went NotReady %s after its last heartbeat; want about %s", silent, grace)
	} else {
		t.Logf("node-b NotReady %s after its last heartbeat (grace period %s)", silent, grace)
	}
	var evictedAt time.Time
	eventually(t, toleration+time.Minute, "the pod on node-b evicted", func() (bool, string) {
		p, err := client.CoreV1().Pods("default").Get(ctx, "on-node-b", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			evictedAt = time.Now()
			return true, ""
		}
		if err != nil {
			return false, err.Error()
		}
		if p.DeletionTimestamp != nil {
			// The deletion timestamp is when the grace period ends.
			evictedAt = p.DeletionTimestamp.Add(-time.Duration(ptr.Deref(p.DeletionGracePeriodSeconds, 0)) * time.Second)
			return true, ""
		}
		return false, fmt.Sprintf("tolerations %v", p.Spec.Tolerations)
	})
	if after := evictedAt.Sub(notReadyAt); after < toleration-time.Second {
		t.Errorf("the pod on node-b was evicted %s after its node went NotReady; want no sooner than the %s toleration", after, toleration)
	} else {
		t.Logf("the pod on node-b was evicted %s after its node went NotReady (toleration %s)", after, toleration)
	}
	n, err := client.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := nodeCondition(n, corev1.NodeReady); c == nil || c.Status != corev1.ConditionTrue {
		t.Errorf("node-a, whose Lease was renewed, is not Ready: %v", c)
	}
}

// createNode registers a Node as a kubelet would: Ready, with capacity, a
// zone label and a Lease in kube-node-lease.
func createNode(t *testing.T, client kubernetes.Interface, name, zone string, unschedulable bool) *corev1.Node {
	t.Helper()
	ctx := t.Context()
	resources := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"kubernetes.io/hostname": name, corev1.LabelTopologyZone: zone,
		}},
		Spec: corev1.NodeSpec{Unschedulable: unschedulable},
	}
	node, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	node.Status = corev1.NodeStatus{
		Capacity:    resources,
		Allocatable: resources,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.213.250.1"}},
	}
	if node, err = client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: corev1.NamespaceNodeLease},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(name),
			LeaseDurationSeconds: ptr.To[int32](40),
			RenewTime:            &metav1.MicroTime{Time: time.Now()},
		},
	}
	if _, err := client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(ctx, lease, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return node
}

// waitServiceAccount waits for the service-account controller to make a
// namespace's default ServiceAccount: until then admission rejects pods
// (the ReplicaSet controller would retry; waiting keeps the timings about
// the controllers under test).
func waitServiceAccount(t *testing.T, client kubernetes.Interface, ns string) {
	t.Helper()
	eventually(t, time.Minute, "ServiceAccount "+ns+"/default exists", func() (bool, string) {
		_, err := client.CoreV1().ServiceAccounts(ns).Get(t.Context(), "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
}

// renewLease renews a node's Lease every 2 s until ctx ends, ignoring
// errors (the API server may be down) as a kubelet does.
func renewLease(ctx context.Context, client kubernetes.Interface, name string) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		lease, err := client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(rctx, name, metav1.GetOptions{})
		if err == nil {
			lease.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
			client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Update(rctx, lease, metav1.UpdateOptions{})
		}
		cancel()
	}
}

// setPodRunning writes the status a kubelet writes once a pod's container
// runs and passes its readiness probe.
func setPodRunning(t *testing.T, client kubernetes.Interface, ns, name, ip string) {
	t.Helper()
	ctx := t.Context()
	err := retry.OnError(retry.DefaultRetry, func(err error) bool { return !apierrors.IsNotFound(err) }, func() error {
		p, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		p.Status.Phase = corev1.PodRunning
		p.Status.PodIP = ip
		p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
		p.Status.HostIP = "10.213.250.1"
		p.Status.StartTime = &now
		for _, ct := range []corev1.PodConditionType{corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
			p.Status.Conditions = slices.DeleteFunc(p.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == ct })
			p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: ct, Status: corev1.ConditionTrue, LastTransitionTime: now})
		}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{
			Name: p.Spec.Containers[0].Name, Image: p.Spec.Containers[0].Image, Ready: true, Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}}
		_, err = client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("status of pod %s/%s: %v", ns, name, err)
	}
}

// waitPods waits until ns holds exactly n pods, none terminating, all bound
// to node by the scheduler, and returns them.
func waitPods(t *testing.T, client kubernetes.Interface, ns string, n int, node string) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually(t, time.Minute, fmt.Sprintf("%d pods in %s scheduled to %s", n, ns, node), func() (bool, string) {
		list, err := client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		pods = list.Items
		var state []string
		ok := len(pods) == n
		for _, p := range pods {
			c := podCondition(&p, corev1.PodScheduled)
			bound := p.Spec.NodeName == node && c != nil && c.Status == corev1.ConditionTrue
			ok = ok && bound && p.DeletionTimestamp == nil
			state = append(state, fmt.Sprintf("%s node=%q scheduled=%v deleting=%v", p.Name, p.Spec.NodeName, c, p.DeletionTimestamp != nil))
		}
		return ok, strings.Join(state, "; ")
	})
	return pods
}

// waitSlice waits until the EndpointSlices of a Service list exactly the
// ready addresses and the terminating ones (serving, not ready).
func waitSlice(t *testing.T, client kubernetes.Interface, ns, service string, ready, terminating []string) {
	t.Helper()
	sort.Strings(ready)
	sort.Strings(terminating)
	eventually(t, time.Minute, fmt.Sprintf("EndpointSlices of %s/%s: ready %v, terminating %v", ns, service, ready, terminating), func() (bool, string) {
		list, err := client.DiscoveryV1().EndpointSlices(ns).List(t.Context(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service})
		if err != nil {
			return false, err.Error()
		}
		var gotReady, gotTerminating, other []string
		for _, s := range list.Items {
			if s.Labels[discoveryv1.LabelManagedBy] != "endpointslice-controller.k8s.io" {
				other = append(other, s.Name+" not managed by the controller")
			}
			for _, e := range s.Endpoints {
				c := e.Conditions
				switch {
				case ptr.Deref(c.Ready, false) && !ptr.Deref(c.Terminating, false):
					gotReady = append(gotReady, e.Addresses...)
				case !ptr.Deref(c.Ready, false) && ptr.Deref(c.Serving, false) && ptr.Deref(c.Terminating, false):
					gotTerminating = append(gotTerminating, e.Addresses...)
				default:
					other = append(other, fmt.Sprintf("%v ready=%v serving=%v terminating=%v", e.Addresses, ptr.Deref(c.Ready, false), ptr.Deref(c.Serving, false), ptr.Deref(c.Terminating, false)))
				}
			}
		}
		sort.Strings(gotReady)
		sort.Strings(gotTerminating)
		ok := slices.Equal(gotReady, ready) && slices.Equal(gotTerminating, terminating) && len(other) == 0
		return ok, fmt.Sprintf("%d slices: ready %v, terminating %v, other %v", len(list.Items), gotReady, gotTerminating, other)
	})
}

// scale sets a Deployment's replicas, retrying while a restarted API
// server's clients reconnect.
func scale(t *testing.T, client kubernetes.Interface, ns, name string, replicas int) {
	t.Helper()
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)
	eventually(t, time.Minute, fmt.Sprintf("scale %s/%s to %d", ns, name, replicas), func() (bool, string) {
		_, err := client.AppsV1().Deployments(ns).Patch(t.Context(), name, types.MergePatchType, patch, metav1.PatchOptions{})
		return err == nil, fmt.Sprint(err)
	})
}

// eventually polls cond every 200 ms until it holds or timeout passes;
// then the test fails with cond's last description of the state.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for {
		ok, state := cond()
		if ok {
			t.Logf("%s after %s", what, time.Since(start).Round(100*time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s; last: %s", what, timeout, state)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("%s: %v", what, t.Context().Err())
		case <-tick.C:
		}
	}
}

func podCondition(p *corev1.Pod, ct corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == ct {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func nodeCondition(n *corev1.Node, ct corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == ct {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func sortedValues(m map[string]string) []string {
	var v []string
	for _, s := range m {
		v = append(v, s)
	}
	sort.Strings(v)
	return v
}
