package nodewatch_test

import (
	"context"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	"github.com/bulkhead-router/bulkhead/nodewatch"
)

// TestAgainstARealAPIServer runs the watcher against a real kube-apiserver
// and etcd: Nodes created, cordoned, tainted, labelled, deleted (with and
// without a finalizer) through the API, a Node that does not exist yet, a
// service account without permission, and an API server killed while a
// decision stands. Skipped with -short (make unit), like every test that
// needs the control plane.
func TestAgainstARealAPIServer(t *testing.T) {
	cp := controlplane.ForTest(t)
	client := cp.Client()
	ctx := context.Background()
	nodes := client.CoreV1().Nodes()
	for _, name := range []string{"edge-a", "edge-b"} {
		if _, err := nodes.Create(ctx, node(name), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// edit changes a Node through the API, the way kubectl cordon, the
	// autoscalers and operators do.
	edit := func(t *testing.T, name string, change func(*corev1.Node)) {
		t.Helper()
		n, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		change(n)
		if _, err := nodes.Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The main watcher's requests are counted, so the outage case can wait
	// until it has really tried and failed to reach the API server: client-go
	// retries a refused watch on its own without reporting an error.
	var failedRequests atomic.Int64
	cfg := cp.RESTConfig()
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(r)
			if err != nil {
				failedRequests.Add(1)
			}
			return resp, err
		})
	}
	h := start(t, kubernetes.NewForConfigOrDie(cfg), "edge-a")
	await(t, "edge-a known", func() bool { return h.metric(t, nodewatch.MetricNodeKnown) == 1 })

	t.Run("only its own Node is watched", func(t *testing.T) {
		edit(t, "edge-b", func(n *corev1.Node) { n.Spec.Unschedulable = true })
		edit(t, "edge-a", func(n *corev1.Node) { n.Spec.Unschedulable = true })
		h.awaitDecision(t, true, nodewatch.ReasonCordoned)
		// One watch delivers events in resourceVersion order: had it covered
		// every node, edge-b's earlier change would be cached by now. (The
		// handlers ignore other nodes, so only the cache shows this.)
		if got := h.w.CachedNodes(); !slices.Equal(got, []string{"edge-a"}) {
			t.Fatalf("informer cache holds %v: the field selector is missing", got)
		}
		edit(t, "edge-a", func(n *corev1.Node) { n.Spec.Unschedulable = false })
		h.awaitDecision(t, false, "")
	})

	for _, tc := range []struct {
		name         string
		mark, unmark func(*corev1.Node)
		reason       string
	}{
		{
			name:   "cordon",
			mark:   func(n *corev1.Node) { n.Spec.Unschedulable = true },
			unmark: func(n *corev1.Node) { n.Spec.Unschedulable = false },
			reason: nodewatch.ReasonCordoned,
		},
		{
			name:   "cluster autoscaler taint",
			mark:   addTaint(corev1.Taint{Key: "ToBeDeletedByClusterAutoscaler", Value: "1700000000", Effect: corev1.TaintEffectNoSchedule}),
			unmark: removeTaint("ToBeDeletedByClusterAutoscaler"),
			reason: nodewatch.ReasonClusterAutoscaler,
		},
		{
			name:   "karpenter taint",
			mark:   addTaint(corev1.Taint{Key: "karpenter.sh/disrupted", Effect: corev1.TaintEffectNoSchedule}),
			unmark: removeTaint("karpenter.sh/disrupted"),
			reason: nodewatch.ReasonKarpenter,
		},
		{
			name:   "karpenter v1beta1 taint",
			mark:   addTaint(corev1.Taint{Key: "karpenter.sh/disruption", Value: "disrupting", Effect: corev1.TaintEffectNoSchedule}),
			unmark: removeTaint("karpenter.sh/disruption"),
			reason: nodewatch.ReasonKarpenterBeta,
		},
		{
			name: "exclude-from-external-load-balancers label",
			mark: func(n *corev1.Node) {
				if n.Labels == nil {
					n.Labels = map[string]string{}
				}
				n.Labels[nodewatch.LabelExcludeFromLB] = ""
			},
			unmark: func(n *corev1.Node) { delete(n.Labels, nodewatch.LabelExcludeFromLB) },
			reason: nodewatch.ReasonExcludeFromLBLabel,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			edit(t, "edge-a", tc.mark)
			h.awaitDecision(t, true, tc.reason)
			edit(t, "edge-a", tc.unmark)
			h.awaitDecision(t, false, "")
		})
	}

	t.Run("deleted, then back", func(t *testing.T) {
		if err := nodes.Delete(ctx, "edge-a", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		h.awaitDecision(t, true, nodewatch.ReasonDeleted)
		if _, err := nodes.Create(ctx, node("edge-a"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		h.awaitDecision(t, false, "")
	})

	t.Run("deleted behind a finalizer, as Karpenter does", func(t *testing.T) {
		edit(t, "edge-a", func(n *corev1.Node) { n.Finalizers = []string{"karpenter.sh/termination"} })
		if err := nodes.Delete(ctx, "edge-a", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		h.awaitDecision(t, true, nodewatch.ReasonDeleting)
		edit(t, "edge-a", func(n *corev1.Node) { n.Finalizers = nil }) // the drain is over: the Node goes
		h.awaitDecision(t, true, nodewatch.ReasonDeleted)
		if _, err := nodes.Create(ctx, node("edge-a"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		h.awaitDecision(t, false, "")
	})

	t.Run("a Node that does not exist yet", func(t *testing.T) {
		late := start(t, client, "edge-late")
		await(t, "the not-found warning", func() bool { return len(late.log.lines("level=WARN", "not found")) == 1 })
		if d, r := late.w.Draining(); d {
			t.Fatalf("an unknown Node drains (%q)", r)
		}
		if _, err := nodes.Create(ctx, cordoned(node("edge-late")), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		late.awaitDecision(t, true, nodewatch.ReasonCordoned)
	})

	t.Run("no permission to read nodes, then granted", func(t *testing.T) {
		if _, err := nodes.Create(ctx, cordoned(node("edge-rbac")), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		restricted := serviceAccountClient(t, cp, client, "default", "nodewatch-test")
		w := start(t, restricted, "edge-rbac")
		await(t, "a forbidden list counted", func() bool { return w.metric(t, nodewatch.MetricWatchErrors) >= 1 })
		await(t, "the RBAC hint in the log", func() bool { return len(w.log.lines("level=WARN", "RBAC", "forbidden")) > 0 })
		if d, r := w.w.Draining(); d {
			t.Fatalf("a Node it may not read drains (%q)", r)
		}
		grantNodeReading(t, client, "default", "nodewatch-test", "edge-rbac")
		w.awaitDecision(t, true, nodewatch.ReasonCordoned)
	})

	// Last: it kills the API server.
	t.Run("API server killed: the decision stands", func(t *testing.T) {
		edit(t, "edge-a", func(n *corev1.Node) { n.Spec.Unschedulable = true })
		h.awaitDecision(t, true, nodewatch.ReasonCordoned)
		before := failedRequests.Load()
		if err := cp.KillAPIServer(); err != nil {
			t.Fatal(err)
		}
		await(t, "two failed attempts to reach the API server", func() bool { return failedRequests.Load() >= before+2 })
		if d, r := h.w.Draining(); !d || r != nodewatch.ReasonCordoned {
			t.Fatalf("during the outage Draining() = (%v, %q), want the last decision", d, r)
		}
		if got := h.metric(t, nodewatch.MetricNodeKnown); got != 1 {
			t.Fatalf("%s = %v during the outage", nodewatch.MetricNodeKnown, got)
		}
		if err := cp.StartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		edit(t, "edge-a", func(n *corev1.Node) { n.Spec.Unschedulable = false })
		h.awaitDecision(t, false, "")
	})
}

func addTaint(taint corev1.Taint) func(*corev1.Node) {
	return func(n *corev1.Node) { n.Spec.Taints = append(n.Spec.Taints, taint) }
}

func removeTaint(key string) func(*corev1.Node) {
	return func(n *corev1.Node) {
		n.Spec.Taints = slices.DeleteFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == key })
	}
}

// serviceAccountClient makes a service account and returns a client that
// authenticates as it, with whatever RBAC grants it (nothing, at first).
func serviceAccountClient(t *testing.T, cp *controlplane.ControlPlane, admin kubernetes.Interface, namespace, name string) kubernetes.Interface {
	t.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if _, err := admin.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expiry := int64(3600)
	tr, err := admin.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(&rest.Config{
		Host:            cp.URL(),
		BearerToken:     tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: cp.CAFile()},
	})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// grantNodeReading lets the service account read one Node. The rule names
// the Node (resourceNames): the API server authorises a list or watch by
// name only when it carries a metadata.name field selector, so the watcher
// working under this rule shows that every request it makes is scoped to
// its own Node. (deploy/base cannot use such a rule: one ServiceAccount
// serves the routers of all nodes.)
func grantNodeReading(t *testing.T, admin kubernetes.Interface, namespace, name, node string) {
	t.Helper()
	ctx := context.Background()
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, ResourceNames: []string{node},
			Verbs: []string{"get", "list", "watch"}}},
	}
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: namespace, Name: name}},
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
