package chaos

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	"github.com/bulkhead-router/bulkhead/internal/loadgen"
)

// TestChaosShort runs the CI subset of the chaos scenarios (the same as
// `go run ./hack/chaos -short`) against a real local control plane, real
// pods and the built router, and fails if any scenario exceeds its bound.
// As for the other control-plane tests, only -short leaves it out; a host
// that cannot run pods skips it, except in CI (CI=true), where it fails.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a real control plane, root and network namespaces; not run with -short (make unit)")
	}
	bins, err := controlplane.EnsureBinaries(t.Context(), nil)
	if err != nil {
		t.Fatalf("control plane binaries: %v", err)
	}
	newEnv := NewLocal(LocalOptions{Binaries: bins})
	var outcomes []*Outcome
	start := time.Now()
	for _, s := range Select(LocalScenarios(), nil, true) {
		o := &Outcome{}
		outcomes = append(outcomes, o)
		t.Run(s.Name, func(t *testing.T) { Run(t, s, newEnv, o) })
	}
	var b strings.Builder
	WriteTable(&b, outcomes)
	t.Logf("\n%s%s", b.String(), Summary(outcomes, time.Since(start)))
}

// TestShortSubset keeps the CI subset what CI can afford and what it
// must cover: a control-plane fault, a pod fault, a rolling update with
// POSTs and the deletion guard, none of them skipped.
func TestShortSubset(t *testing.T) {
	var names []string
	for _, s := range Select(LocalScenarios(), nil, true) {
		if s.Skip != "" {
			t.Errorf("%s is in the CI subset but skipped: %s", s.Name, s.Skip)
		}
		names = append(names, s.Name)
	}
	if got, want := strings.Join(names, ","), "apiserver-kill,pod-kill,rolling-update,mass-deletion"; got != want {
		t.Errorf("CI subset = %s, want %s", got, want)
	}
	if n := len(Select(LocalScenarios(), regexp.MustCompile(`^pod-`), false)); n != 4 {
		t.Errorf("-run ^pod- selects %d scenarios, want 4", n)
	}
	seen := map[string]bool{}
	for _, s := range LocalScenarios() {
		if seen[s.Name] {
			t.Errorf("two scenarios named %s", s.Name)
		}
		seen[s.Name] = true
		if s.Summary == "" || s.Bound == "" || (s.Skip == "" && s.Fault == nil) {
			t.Errorf("%s lacks a summary, a bound or a fault", s.Name)
		}
	}
	// Every local scenario is listed for a real cluster, run or skipped
	// with a reason.
	for _, s := range ClusterScenarios(ClusterOptions{}) {
		delete(seen, s.Name)
	}
	for name := range seen {
		t.Errorf("%s is not listed for real clusters", name)
	}
}

// TestSkippedScenarioNeverPasses: a scenario that cannot run is reported
// as skipped with its reason, not as passed, and creates no environment.
func TestSkippedScenarioNeverPasses(t *testing.T) {
	o := &Outcome{}
	Run(t, Scenario[*Local]{Name: "x", Skip: "not implemented yet"}, func(testing.TB) (*Local, error) {
		t.Fatal("environment built for a skipped scenario")
		return nil, nil
	}, o)
	if o.Passed() || o.Verdict() != "SKIP" || o.Skipped != "not implemented yet" {
		t.Errorf("outcome %+v", o)
	}
}

func TestZeroFailures(t *testing.T) {
	ok := &Outcome{Loads: []LoadResult{{Method: "GET", Result: &loadgen.Result{Sent: 10, OK: 10}}}}
	if err := ZeroFailures[*Local](nil, ok); err != nil {
		t.Errorf("all ok: %v", err)
	}
	for name, o := range map[string]*Outcome{
		"a failed request": {Loads: []LoadResult{{Method: "GET", Result: &loadgen.Result{Sent: 10, OK: 9, Failed: 1, ByStatus: map[int]int{502: 1}}}}},
		"nothing sent":     {Loads: []LoadResult{{Method: "GET", Result: &loadgen.Result{}}}},
		"unready":          {Loads: ok.Loads, Probes: 5, Unready: 1},
	} {
		if err := ZeroFailures[*Local](nil, o); err == nil {
			t.Errorf("%s passes", name)
		}
	}
}

// TestCommandT: outside go test, a Fatal ends only the scenario, its
// cleanups run last-registered first, and the message is kept.
func TestCommandT(t *testing.T) {
	var order []string
	ct := runCommandT(t.Context(), "s", t.TempDir(), testWriter{t}, time.Minute, func(st testing.TB) {
		st.Cleanup(func() { order = append(order, "first") })
		st.Cleanup(func() {
			order = append(order, "second")
			st.Fatalf("cleanup fails too")
		})
		dir := st.TempDir()
		if dir == "" || dir == st.TempDir() {
			t.Errorf("TempDir %q not fresh", dir)
		}
		st.Fatalf("boom %d", 1)
		order = append(order, "after Fatal")
	})
	if !ct.Failed() || strings.Join(order, ",") != "second,first" {
		t.Errorf("failed %v, order %v", ct.Failed(), order)
	}
	if len(ct.fatals) != 2 || ct.fatals[0] != "boom 1" {
		t.Errorf("fatals %q", ct.fatals)
	}
	if ct.Context().Err() == nil {
		t.Error("context not cancelled after the scenario")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestSettled(t *testing.T) {
	three := int32(3)
	d := func(gen, observed int64, replicas, updated, available int32) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Generation: gen},
			Spec:       appsv1.DeploymentSpec{Replicas: &three},
			Status: appsv1.DeploymentStatus{ObservedGeneration: observed, Replicas: replicas,
				UpdatedReplicas: updated, AvailableReplicas: available},
		}
	}
	pod := func(ready bool, leaving bool) corev1.Pod {
		p := corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}}}
		if ready {
			p.Status.Conditions[0].Status = corev1.ConditionTrue
		}
		if leaving {
			now := metav1.Now()
			p.DeletionTimestamp = &now
		}
		return p
	}
	ready3 := []corev1.Pod{pod(true, false), pod(true, false), pod(true, false)}
	for name, c := range map[string]struct {
		d    *appsv1.Deployment
		pods []corev1.Pod
		ok   bool
	}{
		"settled":                {d(2, 2, 3, 3, 3), ready3, true},
		"not observed":           {d(3, 2, 3, 3, 3), ready3, false},
		"updating":               {d(2, 2, 3, 2, 3), ready3, false},
		"old replicas left":      {d(2, 2, 4, 3, 3), ready3, false},
		"not available":          {d(2, 2, 3, 3, 2), ready3, false},
		"a pod still leaving":    {d(2, 2, 3, 3, 3), append(slices.Clone(ready3), pod(true, true)), false},
		"status behind the pods": {d(2, 2, 3, 3, 3), ready3[:2], false},
		"a pod not ready (yet)":  {d(2, 2, 3, 3, 3), append(slices.Clone(ready3[:2]), pod(false, false)), false},
	} {
		if err := Settled(c.d, c.pods); (err == nil) != c.ok {
			t.Errorf("%s: Settled = %v", name, err)
		}
	}
}

// TestClusterFaultsAgainstAPIServer: the real-cluster faults are the API
// calls kubectl makes, accepted by a real kube-apiserver; and the example
// workload in docs/examples passes server-side validation. (No kubelet or
// controllers run here, so nothing rolls out; Settled is tested above.)
func TestClusterFaultsAgainstAPIServer(t *testing.T) {
	cp := controlplane.ForTest(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	example := filepath.Join("..", "docs", "examples", "chaos-workload.yaml")
	if out, err := exec.CommandContext(ctx, cp.Binaries().Kubectl, "--kubeconfig", cp.Kubeconfig(),
		"apply", "--server-side", "-f", example).CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply %s: %v\n%s", example, err, out)
	}
	client := cp.Client()
	const ns, name = "chaos", "echo"
	dep, err := client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// rollout restart: the pod template is stamped.
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := RestartRollout(ctx, client, ns, name, at); err != nil {
		t.Fatal(err)
	}
	got, err := client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v := got.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"]; v != "2030-01-02T03:04:05Z" {
		t.Errorf("restartedAt = %q", v)
	}
	if got.Generation == dep.Generation {
		t.Error("the restart did not change the Deployment's generation")
	}

	// scale through the subresource.
	before, err := Scale(ctx, client, ns, name, 1)
	if err != nil {
		t.Fatal(err)
	}
	if before != *dep.Spec.Replicas {
		t.Errorf("scale returned %d replicas before, want %d", before, *dep.Spec.Replicas)
	}
	if got, _ := client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); *got.Spec.Replicas != 1 {
		t.Errorf("replicas after scaling = %d", *got.Spec.Replicas)
	}

	// Pick a ready pod and delete it with grace 0. Without a kubelet the
	// pods are bare objects whose status this test writes (and without a
	// controller manager, their service account too).
	sel := labels.SelectorFromSet(dep.Spec.Selector.MatchLabels)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}
	if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		name  string
		ready corev1.ConditionStatus
	}{{"echo-b", corev1.ConditionTrue}, {"echo-a", corev1.ConditionFalse}} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: ns, Labels: dep.Spec.Selector.MatchLabels},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/none"}}},
		}
		created, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: p.ready}}
		if _, err := client.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	picked, err := PickPod(ctx, client, ns, sel)
	if err != nil {
		t.Fatal(err)
	}
	if picked.Name != "echo-b" {
		t.Errorf("picked %s, want the ready pod echo-b", picked.Name)
	}
	zero := int64(0)
	if err := DeletePod(ctx, client, picked, &zero); err != nil {
		t.Fatal(err)
	}
	// With grace 0 and no kubelet to wait for, the pod is gone at once.
	if _, err := client.CoreV1().Pods(ns).Get(ctx, picked.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod %s still there after a delete with grace 0: %v", picked.Name, err)
	}
	// The UID precondition: a pod of the same name recreated meanwhile is
	// not deleted by mistake.
	if err := DeletePod(ctx, client, picked, &zero); !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		t.Errorf("deleting the picked pod twice: %v", err)
	}
}

// TestClusterModeEndToEnd runs the real-cluster scenarios through RunAll
// (the command's path) against a real kube-apiserver holding the example
// workload. There is no kubelet or controller manager here, so a stand-in
// for the Deployment controller keeps the pods and the status in step,
// and a plain HTTP server stands in for the router: what is tested is the
// tool (faults, waits, load, report), not a cluster. The stand-in creates
// pods without a node, which the API server deletes at once whatever the
// grace period.
func TestClusterModeEndToEnd(t *testing.T) {
	cp := controlplane.ForTest(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	example := filepath.Join("..", "docs", "examples", "chaos-workload.yaml")
	if out, err := exec.CommandContext(ctx, cp.Binaries().Kubectl, "--kubeconfig", cp.Kubeconfig(),
		"apply", "--server-side", "-f", example).CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply %s: %v\n%s", example, err, out)
	}
	client := cp.Client()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "chaos"}}
	if _, err := client.CoreV1().ServiceAccounts("chaos").Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deleted := make(chan string, 100)
	go standInController(ctx, t, client, "chaos", "echo", deleted)

	router := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "echo.example.com" {
			http.NotFound(w, r)
		}
	}))
	defer router.Close()

	outcomes, err := RunAll(ctx, Config{
		Run:  regexp.MustCompile(`^(pod-kill|pod-delete|rolling-update|scale-down-up|apiserver-kill)$`),
		Rate: 20, WorkDir: t.TempDir(),
		Cluster: &ClusterOptions{Kubeconfig: cp.Kubeconfig(), Namespace: "chaos", Deployment: "echo",
			RouterURL: router.URL, Host: "echo.example.com", Path: "/", Settle: 30 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	WriteTable(&b, outcomes)
	t.Logf("\n%s", b.String())
	verdicts := map[string]string{}
	for _, o := range outcomes {
		verdicts[o.Scenario] = o.Verdict()
	}
	want := map[string]string{"pod-kill": "PASS", "pod-delete": "PASS", "rolling-update": "PASS", "scale-down-up": "PASS", "apiserver-kill": "SKIP"}
	for name, v := range want {
		if verdicts[name] != v {
			t.Errorf("%s: %s, want %s", name, verdicts[name], v)
		}
	}
	close(deleted)
	n := 0
	for range deleted {
		n++
	}
	if n != 2 { // pod-kill and pod-delete
		t.Errorf("the faults deleted %d pods themselves, want 2", n)
	}
	// The restart replaced every pod, and the scaling ended where it began.
	d, err := client.AppsV1().Deployments("chaos").Get(ctx, "echo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods, err := client.CoreV1().Pods("chaos").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stamp := d.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"]
	if *d.Spec.Replicas != 3 || len(pods.Items) != 3 || stamp == "" {
		t.Errorf("after the faults: %d replicas, %d pods, restartedAt %q", *d.Spec.Replicas, len(pods.Items), stamp)
	}
	for _, p := range pods.Items {
		if p.Annotations["kubectl.kubernetes.io/restartedAt"] != stamp {
			t.Errorf("pod %s is of the template before the restart", p.Name)
		}
	}
}

// standInController does the Deployment controller's part for
// TestClusterModeEndToEnd: it keeps spec.replicas ready pods of the
// current template (replacing pods of an older restartedAt) and writes
// the status, and reports pods that went away without it deleting them
// (those the faults deleted).
func standInController(ctx context.Context, t *testing.T, client kubernetes.Interface, ns, name string, gone chan<- string) {
	const key = "kubectl.kubernetes.io/restartedAt"
	seen := map[string]bool{}
	next := 0
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		d, err := client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			continue
		}
		list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(d.Spec.Selector.MatchLabels).String()})
		if err != nil {
			continue
		}
		current := map[string]bool{}
		var fresh []corev1.Pod
		for _, p := range list.Items {
			current[p.Name] = true
			if p.Annotations[key] == d.Spec.Template.Annotations[key] {
				fresh = append(fresh, p)
			}
		}
		for p := range seen {
			if !current[p] {
				delete(seen, p)
				select {
				case gone <- p:
				default:
				}
			}
		}
		want := int(*d.Spec.Replicas)
		switch {
		case len(fresh) < want: // surge: a new pod first
			next++
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("echo-%d", next), Namespace: ns,
					Labels: d.Spec.Selector.MatchLabels, Annotations: map[string]string{key: d.Spec.Template.Annotations[key]}},
				Spec: *d.Spec.Template.Spec.DeepCopy(),
			}
			created, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
			if err != nil {
				t.Logf("stand-in controller: %v", err)
				continue
			}
			created.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
			if _, err := client.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
				t.Logf("stand-in controller: %v", err)
			}
			seen[created.Name] = true
			continue
		case len(list.Items) > want: // then an old or extra pod goes
			victim := list.Items[0]
			for _, p := range list.Items {
				if p.Annotations[key] != d.Spec.Template.Annotations[key] {
					victim = p
					break
				}
			}
			client.CoreV1().Pods(ns).Delete(ctx, victim.Name, metav1.DeleteOptions{})
			delete(seen, victim.Name)
			continue
		}
		if len(seen) < len(list.Items) {
			for _, p := range list.Items {
				seen[p.Name] = true
			}
		}
		n := int32(len(fresh))
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n,
			ReadyReplicas: n, AvailableReplicas: n}
		client.AppsV1().Deployments(ns).UpdateStatus(ctx, d, metav1.UpdateOptions{})
	}
}
