package nodeagent

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/podnet"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
)

// servesUntil polls the pod's data port and returns when a connection is
// refused, i.e. when the process has received SIGTERM and closed its
// listener.
func servesUntil(t *testing.T, podIP string, within time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", podIP+":8080", time.Second)
		if err != nil {
			return time.Now()
		}
		c.Close()
		time.Sleep(20 * time.Millisecond) // polling a port: nothing to wait on
	}
	t.Fatalf("pod %s still accepted connections %s after deletion", podIP, within)
	return time.Time{}
}

func TestDeletionRunsPreStopThenSIGTERMAndDeletes(t *testing.T) {
	client, a := setUp(t, testOptions())
	hooks := map[string]*corev1.LifecycleHandler{
		"exec-sleep": {Exec: &corev1.ExecAction{Command: []string{"sleep", "2"}}},
		"http-get":   {HTTPGet: &corev1.HTTPGetAction{Path: "/?sleep=2s", Port: intstr.FromString("http")}},
		"sleep":      {Sleep: &corev1.SleepAction{Seconds: 2}},
	}
	names := []string{"exec-sleep", "http-get", "sleep"}
	for i, name := range names {
		pod := testpodPod(name, a.Nodes()[i].Name)
		pod.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: hooks[name]}
		// Ready means it listens: refusals then come from the shutdown.
		pod.Spec.Containers[0].ReadinessProbe = fastProbe("http")
		createPod(t, client, pod)
	}
	for _, name := range names {
		p := awaitPod(t, client, "default", name, 30*time.Second, "ready", podReady)
		start := time.Now()
		if err := client.CoreV1().Pods("default").Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		refused := servesUntil(t, p.Status.PodIP, 15*time.Second)
		took := refused.Sub(start)
		t.Logf("%s: served %s after deletion (preStop 2s, then SIGTERM)", name, took.Round(time.Millisecond))
		if took < 1800*time.Millisecond {
			t.Errorf("%s: SIGTERM %s after deletion, before the 2s preStop hook could have finished", name, took)
		}
		awaitPod(t, client, "default", name, 15*time.Second, "gone", func(*corev1.Pod) bool { return false })
		t.Logf("%s: object gone %s after deletion", name, time.Since(start).Round(time.Millisecond))
	}
}

func TestDeletionKillsAfterGracePeriod(t *testing.T) {
	client, a := setUp(t, testOptions())
	pod := testpodPod("stubborn", a.Nodes()[0].Name)
	// Keeps serving for a minute after SIGTERM: only SIGKILL ends it.
	pod.Spec.Containers[0].Args = []string{"-listen", ":8080", "-control", ":15000", "-shutdown-delay", "60s"}
	pod.Spec.TerminationGracePeriodSeconds = ptr.To[int64](3)
	// Ready means it answers, so its SIGTERM handler is in place.
	pod.Spec.Containers[0].ReadinessProbe = fastProbe("http")
	createPod(t, client, pod)
	p := awaitPod(t, client, "default", "stubborn", 30*time.Second, "ready", podReady)
	pid := containerPID(t, p)
	w, err := client.CoreV1().Pods("default").Watch(t.Context(), metav1.ListOptions{
		FieldSelector: "metadata.name=stubborn", ResourceVersion: p.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	start := time.Now()
	if err := client.CoreV1().Pods("default").Delete(t.Context(), "stubborn", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Terminating: the object shows it, and the process still serves.
	p = awaitPod(t, client, "default", "stubborn", 5*time.Second, "terminating", func(p *corev1.Pod) bool { return p.DeletionTimestamp != nil })
	refused := servesUntil(t, p.Status.PodIP, 20*time.Second)
	awaitPod(t, client, "default", "stubborn", 20*time.Second, "gone", func(*corev1.Pod) bool { return false })
	gone := time.Since(start)
	t.Logf("killed %s and deleted %s after deletion with a 3s grace period", refused.Sub(start).Round(time.Millisecond), gone.Round(time.Millisecond))
	if took := refused.Sub(start); took < 2800*time.Millisecond || took > 10*time.Second {
		t.Errorf("process stopped serving %s after deletion; want SIGKILL at the 3s grace period", took)
	}
	if podnet.ProcessRunning(pid) {
		t.Errorf("process %d still running", pid)
	}
	// The last status before the object went, as a kubelet writes it.
	var final *corev1.Pod
	for ev := range w.ResultChan() {
		if ev.Type == watch.Deleted {
			break
		}
		if pod, ok := ev.Object.(*corev1.Pod); ok {
			final = pod
		}
	}
	if final == nil || final.Status.Phase != corev1.PodFailed || podReady(final) ||
		final.Status.ContainerStatuses[0].State.Terminated == nil || final.Status.ContainerStatuses[0].State.Terminated.ExitCode != 137 {
		t.Errorf("final status: %s", describe(final))
	}
}

func containerPID(t *testing.T, p *corev1.Pod) int {
	t.Helper()
	id := p.Status.ContainerStatuses[0].ContainerID
	pid, err := strconv.Atoi(strings.TrimPrefix(id, "bulkhead://"))
	if err != nil {
		t.Fatalf("container ID %q: %v", id, err)
	}
	return pid
}

func TestCloseLeavesNothingBehind(t *testing.T) {
	client, a := setUp(t, testOptions())
	var pids []int
	for i, n := range a.Nodes() {
		name := "p" + strconv.Itoa(i)
		createPod(t, client, testpodPod(name, n.Name))
		pids = append(pids, containerPID(t, awaitPod(t, client, "default", name, 30*time.Second, "ready", podReady)))
	}
	tool := podnet.NewTool()
	ours := func() (found []string) {
		namespaces, err := tool.NetnsNames(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		links, err := tool.LinkNames(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range a.Nodes() {
			prefix := strings.TrimSuffix(n.Bridge, "b")
			for _, name := range slices.Concat(namespaces, links) {
				if name == n.Bridge || strings.HasPrefix(name, prefix+"-") || strings.HasPrefix(name, prefix+"h") {
					found = append(found, name)
				}
			}
		}
		return found
	}
	if before := ours(); len(before) != 3*3+0 { // per node: bridge, veth, netns
		t.Fatalf("before Close: %v, want a bridge, a veth and a netns per node", before)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if after := ours(); len(after) > 0 {
		t.Errorf("left behind after Close: %v", after)
	}
	for _, pid := range pids {
		if podnet.ProcessRunning(pid) {
			t.Errorf("pod process %d still running after Close", pid)
		}
	}
	// Pod objects are left to the API server (a node going away).
	if _, err := client.CoreV1().Pods("default").Get(t.Context(), "p0", metav1.GetOptions{}); err != nil {
		t.Errorf("pod object after Close: %v", err)
	}
}

func TestNodesRegisterAndLeasesRenew(t *testing.T) {
	opts := testOptions()
	client, a := setUp(t, opts)
	zones := map[string]bool{}
	cidrs := map[string]bool{}
	for _, info := range a.Nodes() {
		n, err := client.CoreV1().Nodes().Get(t.Context(), info.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		zones[n.Labels[LabelZone]] = true
		cidrs[n.Spec.PodCIDR] = true
		if n.Labels[LabelHostname] != info.Name || n.Labels[LabelOS] != "linux" || n.Spec.PodCIDR != info.PodCIDR ||
			!strings.HasPrefix(n.Spec.PodCIDR, "10.213.") || !strings.HasSuffix(n.Spec.PodCIDR, "/24") {
			t.Errorf("node %s: labels %v podCIDR %s", info.Name, n.Labels, n.Spec.PodCIDR)
		}
		ready := false
		for _, c := range n.Status.Conditions {
			ready = ready || c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
		}
		if !ready || n.Status.Addresses[0].Address != info.InternalIP || n.Status.Allocatable.Pods().Value() != 110 ||
			n.Status.Capacity.Cpu().String() != "4" {
			t.Errorf("node %s status %+v", info.Name, n.Status)
		}
	}
	if len(zones) < 2 || len(cidrs) != 3 {
		t.Errorf("zones %v, pod ranges %v: want two zones and distinct ranges", zones, cidrs)
	}

	leases := client.CoordinationV1().Leases("kube-node-lease")
	first, err := leases.Get(t.Context(), "bulkhead-node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *first.Spec.HolderIdentity != "bulkhead-node-1" || *first.Spec.LeaseDurationSeconds != 8 {
		t.Errorf("lease %+v", first.Spec)
	}
	// Renewed every LeaseDuration/4 = 2s.
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := leases.Get(t.Context(), "bulkhead-node-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if l.Spec.RenewTime.After(first.Spec.RenewTime.Time) {
			t.Logf("lease renewed after %s", l.Spec.RenewTime.Sub(first.Spec.RenewTime.Time).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("lease not renewed within 10s")
		}
		time.Sleep(100 * time.Millisecond) // polling an object the agent writes on its own clock
	}

	// Closed: no more renewals (3 renewal periods pass unrenewed), nodes stay.
	a.Close()
	closed, err := leases.Get(t.Context(), "bulkhead-node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second) // proving an absence: nothing to wait on
	after, err := leases.Get(t.Context(), "bulkhead-node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !after.Spec.RenewTime.Equal(closed.Spec.RenewTime) {
		t.Errorf("lease renewed after Close: %s then %s", closed.Spec.RenewTime, after.Spec.RenewTime)
	}

	// A new agent takes the names over (new ranges) and, asked to, deletes
	// its nodes on Close.
	opts.DeleteNodesOnClose = true
	b := ForTest(t, client, opts)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, info := range b.Nodes() {
		if _, err := client.CoreV1().Nodes().Get(t.Context(), info.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("node %s after Close with DeleteNodesOnClose: %v", info.Name, err)
		}
	}
}

// Exec handlers run host commands in the pod's netns; a command that does
// not exist here is a FailedPreStopHook event and termination goes on.
func TestExecProbeAndMissingPreStopCommand(t *testing.T) {
	client, a := setUp(t, testOptions())
	pod := testpodPod("exec", a.Nodes()[0].Name)
	pod.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
		// Succeeds only inside the pod's netns, where eth0 has the pod IP.
		ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "ip -4 addr show eth0 | grep -q 10.213."}}},
		PeriodSeconds: 1, FailureThreshold: 1, SuccessThreshold: 1, TimeoutSeconds: 2,
	}
	pod.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
		Exec: &corev1.ExecAction{Command: []string{"/no/such/nginx", "-s", "quit"}}}}
	createPod(t, client, pod)
	p := awaitPod(t, client, "default", "exec", 30*time.Second, "ready", podReady)
	if err := client.CoreV1().Pods("default").Delete(t.Context(), "exec", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	awaitPod(t, client, "default", "exec", 15*time.Second, "gone", func(*corev1.Pod) bool { return false })
	events, err := client.CoreV1().Events("default").List(t.Context(), metav1.ListOptions{
		FieldSelector: "involvedObject.uid=" + string(p.UID)})
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	found := false
	for _, e := range events.Items {
		reasons = append(reasons, e.Reason)
		found = found || e.Reason == "FailedPreStopHook" && strings.Contains(e.Message, "/no/such/nginx")
	}
	if !found {
		t.Errorf("no FailedPreStopHook event naming the command; events: %v", reasons)
	}
}
