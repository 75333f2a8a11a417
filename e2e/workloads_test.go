package e2e

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	"github.com/bulkhead-router/bulkhead/internal/loadgen"
	"github.com/bulkhead-router/bulkhead/internal/nodeagent"
	"github.com/bulkhead-router/bulkhead/internal/testrouter"
	"github.com/bulkhead-router/bulkhead/internal/workloads"
)

// The tests in this file run on real workloads: kube-controller-manager
// and kube-scheduler run beside kube-apiserver, the node agent runs the
// pods of Deployments as processes in network namespaces on three Nodes,
// and the real EndpointSlice controller writes the slices the router reads,
// with its own lag and in its own order. Pods are moved the way users move
// them, with the real kubectl: rollout restart, delete pod, scale, drain.

// workloadEnv is env on a cluster with controllers and a node agent.
type workloadEnv struct {
	*env
	agent   *nodeagent.Agent
	kubectl workloads.Kubectl
}

func newWorkloadEnv(t *testing.T, routerArgs ...string) *workloadEnv {
	t.Helper()
	cp := controlplane.ForTestWith(t, controlplane.Options{Controllers: true})
	e := &env{t: t, cp: cp, client: cp.Client(), http: newTestHTTPClient()}
	agent := nodeagent.ForTest(t, e.client, nodeagent.Options{})
	e.router = testrouter.Start(t, testrouter.Options{Kubeconfig: cp.Kubeconfig(), Args: routerArgs})
	e.ingressClass("bulkhead", false)
	return &workloadEnv{env: e, agent: agent, kubectl: workloads.Kubectl{Binary: cp.Binaries().Kubectl, Kubeconfig: cp.Kubeconfig()}}
}

// kubectlRun runs kubectl and fails the test if it fails.
func (w *workloadEnv) kubectlRun(timeout time.Duration, args ...string) string {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := w.kubectl.Run(ctx, args...)
	if err != nil {
		w.t.Fatal(err)
	}
	return out
}

// deploy creates an app, routes host to it and waits until every replica
// answers through the router.
func (w *workloadEnv) deploy(app workloads.App, host string) []string {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := workloads.Create(ctx, w.client, app); err != nil {
		w.t.Fatal(err)
	}
	w.apply(ingress(app.Namespace, app.Name, "bulkhead", rule(host, path("/", prefix(), app.Name))))
	if err := workloads.AwaitRollout(ctx, w.client, app.Namespace, app.Name); err != nil {
		w.t.Fatal(err)
	}
	pods := w.runningPods(app)
	w.router.WaitReady(30 * time.Second)
	w.expectAllPods(host, pods...)
	return pods
}

func (w *workloadEnv) runningPods(app workloads.App) []string {
	w.t.Helper()
	names, _, err := workloads.RunningPods(w.ctx(), w.client, app.Namespace, app.Selector())
	if err != nil {
		w.t.Fatal(err)
	}
	return names
}

func (w *workloadEnv) awaitRollout(app workloads.App) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := workloads.AwaitRollout(ctx, w.client, app.Namespace, app.Name); err != nil {
		w.t.Fatal(err)
	}
}

// traffic is GETs and POSTs through the router to one host.
type traffic struct {
	gets, posts *loadgen.Load
}

func (w *workloadEnv) startTraffic(host string) traffic {
	w.t.Helper()
	tr := traffic{
		gets: loadgen.Start(loadgen.Target{URL: w.router.ProxyURL + "/items", Host: host}, loadgen.Options{Rate: 40}),
		posts: loadgen.Start(loadgen.Target{Method: http.MethodPost, URL: w.router.ProxyURL + "/orders", Host: host,
			Body: []byte(`{"item":"book","qty":1}`)}, loadgen.Options{Rate: 20}),
	}
	w.eventually(10*time.Second, "load flowing", func() error {
		if sent, _ := tr.posts.Snapshot(); sent < 10 {
			return errNotYet
		}
		return nil
	})
	return tr
}

func (tr traffic) stop() (gets, posts loadgen.Result) { return *tr.gets.Stop(), *tr.posts.Stop() }

// TestDeploymentRollingRestart: `kubectl rollout restart` of a Deployment
// of three pods (maxSurge 1, maxUnavailable 0) under GETs and POSTs, once
// with a 1 s preStop sleep and once without. The Deployment controller
// replaces the pods, the EndpointSlice controller marks the old ones
// terminating and the node agent sends SIGTERM, in Kubernetes' own order
// and timing. With the preStop sleep: 0 failures of any method. Without:
// 0 failed GETs (a GET that met a closing pod is retried on another), and
// POSTs fail only with 502 (one the pod may have taken is never
// replayed). The figures are logged for the README's table.
func TestDeploymentRollingRestart(t *testing.T) {
	t.Parallel()
	w := newWorkloadEnv(t)
	for _, preStop := range []time.Duration{time.Second, 0} {
		name := "web-prestop-" + strconv.Itoa(int(preStop/time.Second)) + "s"
		app := workloads.App{Namespace: "rollout", Name: name, Replicas: 3, PreStopSleep: preStop}
		host := name + ".example"
		before := w.deploy(app, host)
		tr := w.startTraffic(host)
		w.kubectlRun(time.Minute, "-n", app.Namespace, "rollout", "restart", "deployment/"+app.Name)
		w.awaitRollout(app)
		after := w.runningPods(app)
		for _, p := range after {
			if slices.Contains(before, p) {
				t.Fatalf("pod %s survived the rollout restart", p)
			}
		}
		w.expectAllPods(host, after...)
		gets, posts := tr.stop()
		t.Logf("rolling restart of 3 pods, preStop sleep %s: GETs: %s", preStop, gets.String())
		t.Logf("rolling restart of 3 pods, preStop sleep %s: POSTs: %s", preStop, posts.String())
		if gets.Sent == 0 || gets.Failed != 0 {
			t.Errorf("preStop %s: %d of %d GETs failed: %s", preStop, gets.Failed, gets.Sent, gets.String())
		}
		switch {
		case posts.Sent == 0:
			t.Errorf("preStop %s: no POSTs sent", preStop)
		case preStop > 0 && posts.Failed != 0:
			t.Errorf("preStop %s: %d of %d POSTs failed: %s", preStop, posts.Failed, posts.Sent, posts.String())
		case posts.Failed != posts.ByStatus[http.StatusBadGateway]:
			t.Errorf("preStop %s: POSTs failed otherwise than 502: %s", preStop, posts.String())
		}
	}
}

// TestDeploymentPodDeleted: `kubectl delete pod` of one of three pods
// under load, first gracefully (preStop sleep, SIGTERM), then forced
// (--grace-period=0 --force: the Pod object goes at once and the agent
// kills the process while the router may still send to it). The
// ReplicaSet replaces each; 0 failed GETs either way, and 0 failed POSTs
// for the graceful deletion.
func TestDeploymentPodDeleted(t *testing.T) {
	t.Parallel()
	w := newWorkloadEnv(t)
	app := workloads.App{Namespace: "podkill", Name: "web", Replicas: 3, PreStopSleep: time.Second}
	host := "web.example"
	pods := w.deploy(app, host)

	tr := w.startTraffic(host)
	w.kubectlRun(time.Minute, "-n", app.Namespace, "delete", "pod", pods[0])
	w.awaitRollout(app)
	gets, posts := tr.stop()
	t.Logf("graceful delete of 1 of 3 pods: GETs: %s; POSTs: %s", gets.String(), posts.String())
	if gets.Sent == 0 || gets.Failed != 0 || posts.Sent == 0 || posts.Failed != 0 {
		t.Errorf("graceful pod deletion: GETs: %s; POSTs: %s", gets.String(), posts.String())
	}
	w.expectAllPods(host, w.runningPods(app)...)

	pods = w.runningPods(app)
	tr = w.startTraffic(host)
	w.kubectlRun(time.Minute, "-n", app.Namespace, "delete", "pod", pods[1], "--grace-period=0", "--force")
	w.awaitRollout(app)
	gets, posts = tr.stop()
	t.Logf("forced delete of 1 of 3 pods: GETs: %s; POSTs: %s", gets.String(), posts.String())
	if gets.Sent == 0 || gets.Failed != 0 {
		t.Errorf("forced pod deletion: GETs: %s", gets.String())
	}
	if posts.Failed != posts.ByStatus[http.StatusBadGateway] {
		t.Errorf("forced pod deletion: POSTs failed otherwise than 502: %s", posts.String())
	}
	w.expectAllPods(host, w.runningPods(app)...)
}

// TestDeploymentScaleToZeroAndBack: `kubectl scale --replicas=0` under
// load. Both pods terminate at once; they stay listed as serving and
// terminating through their preStop sleep (bulkhead keeps using them, as
// nothing else can serve), then exit. Until the EndpointSlice controller
// drops them (milliseconds), a request finds every endpoint gone: a 502
// where the pod's address refuses the connection, a 504 after the 1 s
// connect timeout where the address has vanished with its network
// namespace (as a deleted pod's IP does in a real cluster). Once none is
// listed, the route answers 503 (its backend has no endpoints: not a 404,
// not a hang, and the route stays). `kubectl scale --replicas=2` brings
// 200s back from the new pods. Nothing else is answered at any time: no
// client timeouts, resets or 404s.
func TestDeploymentScaleToZeroAndBack(t *testing.T) {
	t.Parallel()
	w := newWorkloadEnv(t)
	app := workloads.App{Namespace: "scale", Name: "web", Replicas: 2, PreStopSleep: time.Second}
	host := "web.example"
	w.deploy(app, host)

	gets := loadgen.Start(loadgen.Target{URL: w.router.ProxyURL + "/items", Host: host},
		loadgen.Options{Rate: 40})
	w.kubectlRun(time.Minute, "-n", app.Namespace, "scale", "deployment/"+app.Name, "--replicas=0")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := workloads.AwaitNoPods(ctx, w.client, app.Namespace, app.Selector()); err != nil {
		t.Fatal(err)
	}
	w.expectStatus(host, "/", http.StatusServiceUnavailable)
	w.kubectlRun(time.Minute, "-n", app.Namespace, "scale", "deployment/"+app.Name, "--replicas=2")
	w.awaitRollout(app)
	pods := w.runningPods(app)
	w.expectAllPods(host, pods...)
	r := gets.Stop()
	t.Logf("scale 2 → 0 → 2: GETs: %s", r.String())
	if r.Sent == 0 || r.Failed != r.ByStatus[http.StatusBadGateway]+r.ByStatus[http.StatusServiceUnavailable]+r.ByStatus[http.StatusGatewayTimeout] {
		t.Errorf("answers other than 200, 502, 503 and 504 while scaling to zero and back: %s", r.String())
	}
	if r.OK == 0 {
		t.Errorf("no answers at all: %s", r.String())
	}
}

// TestNodeDrain: three pods spread over the three Nodes; `kubectl drain`
// of the Node of one of them under load evicts it (preStop sleep,
// SIGTERM) while the Deployment controller starts a replacement on
// another Node: 0 failures of any method, and afterwards no pod on the
// drained Node. `kubectl uncordon` makes it schedulable again.
func TestNodeDrain(t *testing.T) {
	t.Parallel()
	w := newWorkloadEnv(t)
	app := workloads.App{Namespace: "drain", Name: "web", Replicas: 3, PreStopSleep: time.Second}
	host := "web.example"
	w.deploy(app, host)
	_, nodes, err := workloads.RunningPods(w.ctx(), w.client, app.Namespace, app.Selector())
	if err != nil {
		t.Fatal(err)
	}
	var node string
	for _, n := range nodes {
		node = n
		break
	}

	tr := w.startTraffic(host)
	out := w.kubectlRun(3*time.Minute, "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=150s")
	t.Logf("kubectl drain %s:\n%s", node, out)
	w.awaitRollout(app)
	after, nodesAfter, err := workloads.RunningPods(w.ctx(), w.client, app.Namespace, app.Selector())
	if err != nil {
		t.Fatal(err)
	}
	for p, n := range nodesAfter {
		if n == node {
			t.Errorf("pod %s still runs on drained node %s", p, node)
		}
	}
	w.expectAllPods(host, after...)
	gets, posts := tr.stop()
	t.Logf("drain of node %s: GETs: %s; POSTs: %s", node, gets.String(), posts.String())
	if gets.Sent == 0 || gets.Failed != 0 || posts.Sent == 0 || posts.Failed != 0 {
		t.Errorf("node drain: GETs: %s; POSTs: %s", gets.String(), posts.String())
	}
	w.kubectlRun(time.Minute, "uncordon", node)
	nodeObj, err := w.client.CoreV1().Nodes().Get(w.ctx(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if nodeObj.Spec.Unschedulable {
		t.Errorf("node %s still unschedulable after uncordon", node)
	}
}
