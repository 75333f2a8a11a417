package nodeagent

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// endpointsOf lists the endpoints of a Service's EndpointSlices as
// "ip ready/serving/terminating node zone", sorted.
func endpointsOf(t *testing.T, client kubernetes.Interface, ns, svc string) []string {
	t.Helper()
	list, err := client.DiscoveryV1().EndpointSlices(ns).List(t.Context(), metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			c := e.Conditions
			out = append(out, fmt.Sprintf("%s %v/%v/%v %s %s", e.Addresses[0], ptr.Deref(c.Ready, false),
				ptr.Deref(c.Serving, false), ptr.Deref(c.Terminating, false), ptr.Deref(e.NodeName, ""), ptr.Deref(e.Zone, "")))
		}
	}
	sort.Strings(out)
	return out
}

// With the real controller-manager and scheduler: a Deployment's pods are
// scheduled onto the agent's nodes, run, and the real EndpointSlice
// controller lists them as ready; a deleted pod's endpoint turns
// terminating while its preStop hook runs and is then replaced.
func TestDeploymentEndpointSlicesFromTheRealController(t *testing.T) {
	cp := controlplane.ForTestWith(t, controlplane.Options{Controllers: true, NodeMonitorGracePeriod: 8 * time.Second})
	client := cp.Client()
	a := ForTest(t, client, testOptions())
	ensureServiceAccount(t, client, "default")
	zoneOf := map[string]string{}
	for _, n := range a.Nodes() {
		zoneOf[n.Name] = n.Zone
	}

	labels := map[string]string{"app": "web"}
	pod := testpodPod("", "")
	pod.Spec.Containers[0].ReadinessProbe = fastProbe("http")
	pod.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
		Exec: &corev1.ExecAction{Command: []string{"sleep", "3"}}}}
	start := time.Now()
	if _, err := client.AppsV1().Deployments("default").Create(t.Context(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod.Spec},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Services("default").Create(t.Context(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	var pods []corev1.Pod
	awaitEndpoints := func(what string, cond func(eps []string, pods []corev1.Pod) bool) []string {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			eps := endpointsOf(t, client, "default", "web")
			list, err := client.CoreV1().Pods("default").List(t.Context(), metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				t.Fatal(err)
			}
			pods = list.Items
			if cond(eps, pods) {
				return eps
			}
			if time.Now().After(deadline) {
				t.Fatalf("EndpointSlice of web: not %s within 60s; endpoints %q", what, eps)
			}
			time.Sleep(100 * time.Millisecond) // polling objects another process writes
		}
	}
	want := func(pods []corev1.Pod, onlyReady bool) []string {
		var out []string
		for _, p := range pods {
			if p.DeletionTimestamp != nil || (onlyReady && !podReady(&p)) || p.Status.PodIP == "" {
				continue
			}
			out = append(out, fmt.Sprintf("%s true/true/false %s %s", p.Status.PodIP, p.Spec.NodeName, zoneOf[p.Spec.NodeName]))
		}
		sort.Strings(out)
		return out
	}
	eps := awaitEndpoints("3 ready endpoints matching the pods", func(eps []string, pods []corev1.Pod) bool {
		return len(eps) == 3 && slices.Equal(eps, want(pods, true))
	})
	t.Logf("Deployment of 3: endpoints ready %s after creation: %q", time.Since(start).Round(time.Millisecond), eps)

	// Delete one pod: its endpoint is terminating (not ready, still serving
	// while preStop sleeps) and a replacement comes up.
	victim := pods[0]
	start = time.Now()
	if err := client.CoreV1().Pods("default").Delete(t.Context(), victim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	terminating := fmt.Sprintf("%s false/true/true %s %s", victim.Status.PodIP, victim.Spec.NodeName, zoneOf[victim.Spec.NodeName])
	awaitEndpoints("showing the deleted pod terminating", func(eps []string, _ []corev1.Pod) bool {
		return slices.Contains(eps, terminating)
	})
	t.Logf("deleted pod's endpoint terminating (serving during preStop) after %s", time.Since(start).Round(time.Millisecond))
	eps = awaitEndpoints("back to 3 ready endpoints without the deleted pod", func(eps []string, pods []corev1.Pod) bool {
		for _, e := range eps {
			if len(e) > len(victim.Status.PodIP) && e[:len(victim.Status.PodIP)+1] == victim.Status.PodIP+" " {
				return false
			}
		}
		return len(eps) == 3 && slices.Equal(eps, want(pods, true))
	})
	t.Logf("replaced and the deleted pod's endpoint gone after %s: %q", time.Since(start).Round(time.Millisecond), eps)

	// Closed, the agent stops renewing: the node lifecycle controller
	// marks its nodes Ready=Unknown (NodeMonitorGracePeriod 8s here).
	a.Close()
	start = time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for _, info := range a.Nodes() {
		for {
			n, err := client.CoreV1().Nodes().Get(t.Context(), info.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			unknown := false
			for _, c := range n.Status.Conditions {
				unknown = unknown || c.Type == corev1.NodeReady && c.Status == corev1.ConditionUnknown
			}
			if unknown {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s not marked Ready=Unknown within 60s of Close: %+v", info.Name, n.Status.Conditions)
			}
			time.Sleep(200 * time.Millisecond) // polling what another process writes
		}
	}
	t.Logf("nodes Ready=Unknown %s after Close", time.Since(start).Round(time.Millisecond))
}
