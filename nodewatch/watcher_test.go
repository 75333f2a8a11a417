package nodewatch_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/bulkhead-router/bulkhead/nodewatch"
)

// These tests use client-go's fake clientset: fast, and able to inject
// failures exactly. integration_test.go runs the same behaviour against a
// real kube-apiserver.

func node(name string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func cordoned(n *corev1.Node) *corev1.Node {
	n.Spec.Unschedulable = true
	return n
}

func TestNewRejectsBadArguments(t *testing.T) {
	cs := fake.NewClientset()
	for _, tc := range []struct {
		name   string
		client *fake.Clientset
		node   string
	}{
		{"no client", nil, "n1"},
		{"no node name", cs, ""},
		{"not a node name", cs, "Not_A_Name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.client == nil {
				_, err = nodewatch.New(nil, tc.node, nodewatch.Options{})
			} else {
				_, err = nodewatch.New(tc.client, tc.node, nodewatch.Options{})
			}
			if err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
	// Metrics on an explicit registry: a second watcher on the same one
	// is an error, not a panic.
	reg := prometheus.NewRegistry()
	if _, err := nodewatch.New(cs, "n1", nodewatch.Options{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := nodewatch.New(cs, "n1", nodewatch.Options{Registerer: reg}); err == nil {
		t.Fatal("registering the metrics twice on one registry succeeded")
	}
}

func TestRunTwiceIsAnError(t *testing.T) {
	w, err := nodewatch.New(fake.NewClientset(), "n1", nodewatch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the first Run returns at once
	if err := w.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Run(ctx); err == nil {
		t.Error("a second Run succeeded")
	}
}

// TestWatcherFollowsItsNode walks one Node through cordon, uncordon,
// deletion and re-creation, and checks the decision, the callback, the
// metrics and the log at each step. Another Node's changes are ignored.
func TestWatcherFollowsItsNode(t *testing.T) {
	t.Parallel() // each test has its own fake API server and registry
	ctx := context.Background()
	cs := fake.NewClientset(node("n1"), node("n2"))
	nodes := cs.CoreV1().Nodes()
	h := start(t, cs, "n1")
	await(t, "the Node known", func() bool { return h.metric(t, nodewatch.MetricNodeKnown) == 1 })
	if d, r := h.w.Draining(); d || r != "" {
		t.Fatalf("a plain Node: Draining() = (%v, %q)", d, r)
	}

	// Another node cordoned: the fake clientset ignores field selectors, so
	// this also checks the watcher's own guard.
	if _, err := nodes.Update(ctx, cordoned(node("n2")), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes.Update(ctx, cordoned(node("n1")), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.awaitDecision(t, true, nodewatch.ReasonCordoned)
	if got := h.metric(t, nodewatch.MetricDraining); got != 1 {
		t.Errorf("%s = %v while cordoned", nodewatch.MetricDraining, got)
	}
	if got := h.metric(t, nodewatch.MetricDrainReason, "reason", nodewatch.ReasonCordoned); got != 1 {
		t.Errorf("%s{reason=cordoned} = %v", nodewatch.MetricDrainReason, got)
	}
	if got := h.metric(t, nodewatch.MetricDrainReason, "reason", nodewatch.ReasonClusterAutoscaler); got != 0 {
		t.Errorf("%s{reason=autoscaler} = %v", nodewatch.MetricDrainReason, got)
	}
	// The decision is published first, then logged and announced.
	await(t, "one log line for the change", func() bool { return len(h.log.lines("leaving service", "reason=cordoned", "name=n1")) == 1 })

	if _, err := nodes.Update(ctx, node("n1"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.awaitDecision(t, false, "")
	if got := h.metric(t, nodewatch.MetricDraining); got != 0 {
		t.Errorf("%s = %v after uncordon", nodewatch.MetricDraining, got)
	}
	if got := h.metric(t, nodewatch.MetricDrainReason, "reason", nodewatch.ReasonCordoned); got != 0 {
		t.Errorf("%s{reason=cordoned} = %v after uncordon", nodewatch.MetricDrainReason, got)
	}

	// Deleted: the machine is leaving; then it comes back.
	if err := nodes.Delete(ctx, "n1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.awaitDecision(t, true, nodewatch.ReasonDeleted)
	if got := h.metric(t, nodewatch.MetricNodeKnown); got != 0 {
		t.Errorf("%s = %v after deletion", nodewatch.MetricNodeKnown, got)
	}
	if _, err := nodes.Create(ctx, node("n1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.awaitDecision(t, false, "")

	want := []string{"true cordoned", "false ", "true " + nodewatch.ReasonDeleted, "false "}
	await(t, fmt.Sprintf("OnChange calls %q", want), func() bool { return slices.Equal(h.changeLog(), want) })
}

// failingAPI makes every list and watch of cs fail with err while
// failing is set, and lets the test end the current watch, as a lost
// connection would.
type failingAPI struct {
	failing atomic.Bool
	err     error

	mu      sync.Mutex
	watches []*watch.FakeWatcher
	cs      *fake.Clientset
}

func newFailingAPI(cs *fake.Clientset, err error) *failingAPI {
	f := &failingAPI{cs: cs, err: err}
	cs.PrependReactor("list", "nodes", func(clienttesting.Action) (bool, runtime.Object, error) {
		if f.failing.Load() {
			return true, nil, f.err
		}
		return false, nil, nil
	})
	cs.PrependWatchReactor("nodes", func(clienttesting.Action) (bool, watch.Interface, error) {
		if f.failing.Load() {
			return true, nil, f.err
		}
		// A watch the test controls: it delivers nothing unless told, and
		// breaking it forces the reflector to reconnect.
		w := watch.NewFake()
		f.mu.Lock()
		f.watches = append(f.watches, w)
		f.mu.Unlock()
		return true, w, nil
	})
	return f
}

// breakWatches ends every open watch.
func (f *failingAPI) breakWatches() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.watches {
		w.Stop()
	}
	f.watches = nil
}

func (f *failingAPI) watchCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.watches)
}

// TestUnreadableNodeAtStartIsNotDrainingAndRetried: without permission to
// read its Node, the router is not held unready; once the permission is
// there, the Node is read and its state applies.
func TestUnreadableNodeAtStartIsNotDrainingAndRetried(t *testing.T) {
	t.Parallel() // each test has its own fake API server and registry
	cs := fake.NewClientset(cordoned(node("n1")))
	api := newFailingAPI(cs, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "",
		errors.New(`User "system:serviceaccount:bulkhead:bulkhead" cannot list resource "nodes"`)))
	api.failing.Store(true)
	h := start(t, cs, "n1")

	await(t, "a watch error counted", func() bool { return h.metric(t, nodewatch.MetricWatchErrors) >= 1 })
	if d, r := h.w.Draining(); d {
		t.Fatalf("an unreadable Node made the router drain (%q)", r)
	}
	if got := h.metric(t, nodewatch.MetricNodeKnown); got != 0 {
		t.Errorf("%s = %v without permission", nodewatch.MetricNodeKnown, got)
	}
	await(t, "the RBAC hint in the log", func() bool { return len(h.log.lines("level=WARN", "RBAC", "cannot list")) > 0 })

	api.failing.Store(false) // the ClusterRole is fixed
	h.awaitDecision(t, true, nodewatch.ReasonCordoned)
	if got := h.metric(t, nodewatch.MetricNodeKnown); got != 1 {
		t.Errorf("%s = %v once readable", nodewatch.MetricNodeKnown, got)
	}
}

// TestUnknownNodeAtStartIsNotDraining: a node name that matches no Node
// (a wrong -node-name) is logged and not draining; the Node is picked up
// if it appears.
func TestUnknownNodeAtStartIsNotDraining(t *testing.T) {
	t.Parallel() // each test has its own fake API server and registry
	ctx := context.Background()
	cs := fake.NewClientset(node("other"))
	h := start(t, cs, "n1")
	await(t, "the not-found warning", func() bool { return len(h.log.lines("level=WARN", "not found")) == 1 })
	if d, r := h.w.Draining(); d {
		t.Fatalf("an unknown Node made the router drain (%q)", r)
	}
	if got := h.metric(t, nodewatch.MetricNodeKnown); got != 0 {
		t.Errorf("%s = %v for a Node that does not exist", nodewatch.MetricNodeKnown, got)
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, cordoned(node("n1")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.awaitDecision(t, true, nodewatch.ReasonCordoned)
}

// TestFailingWatchKeepsTheDecision: an API server that goes away changes
// nothing, whichever way the decision stood; when it is back, the Node's
// current state applies.
func TestFailingWatchKeepsTheDecision(t *testing.T) {
	t.Parallel() // each test has its own fake API server and registry
	for _, draining := range []bool{true, false} {
		name := map[bool]string{true: "draining stays draining", false: "serving stays serving"}[draining]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			initial := node("n1")
			initial.Spec.Unschedulable = draining
			cs := fake.NewClientset(initial)
			api := newFailingAPI(cs, errors.New("dial tcp 127.0.0.1:6443: connect: connection refused"))
			h := start(t, cs, "n1")
			await(t, "the Node known", func() bool { return h.metric(t, nodewatch.MetricNodeKnown) == 1 })
			await(t, "the watch open", func() bool { return api.watchCount() > 0 })
			if d, _ := h.w.Draining(); d != draining {
				t.Fatalf("Draining() = %v at start, want %v", d, draining)
			}

			api.failing.Store(true)
			api.breakWatches()
			await(t, "repeated watch errors", func() bool { return h.metric(t, nodewatch.MetricWatchErrors) >= 2 })
			if d, _ := h.w.Draining(); d != draining {
				t.Fatalf("Draining() = %v during the outage, want %v as before", d, draining)
			}
			if got := h.metric(t, nodewatch.MetricNodeKnown); got != 1 {
				t.Errorf("%s = %v during the outage; the Node was not deleted", nodewatch.MetricNodeKnown, got)
			}
			// However many errors (the first may be the broken watch itself,
			// the rest refused connections), one warning: rate-limited.
			if n := len(h.log.lines("level=WARN", "keeping the last decision")); n != 1 {
				t.Errorf("%d warnings for the outage, want one (rate-limited); log:\n%s", n, h.log)
			}

			// While away, the Node flipped; the relist after the outage
			// brings the new state.
			flipped := node("n1")
			flipped.Spec.Unschedulable = !draining
			if err := cs.Tracker().Update(corev1.SchemeGroupVersion.WithResource("nodes"), flipped, ""); err != nil {
				t.Fatal(err)
			}
			api.failing.Store(false)
			reason := ""
			if !draining {
				reason = nodewatch.ReasonCordoned
			}
			h.awaitDecision(t, !draining, reason)
		})
	}
}

// TestDeletionSeenInARelist: a Node deleted while the watch was down is
// noticed by the relist (a tombstone), which is an answer from the API
// server, and drains.
func TestDeletionSeenInARelist(t *testing.T) {
	t.Parallel() // each test has its own fake API server and registry
	cs := fake.NewClientset(node("n1"))
	api := newFailingAPI(cs, errors.New("connection refused"))
	h := start(t, cs, "n1")
	await(t, "the Node known", func() bool { return h.metric(t, nodewatch.MetricNodeKnown) == 1 })
	await(t, "the watch open", func() bool { return api.watchCount() > 0 })

	api.failing.Store(true)
	api.breakWatches()
	await(t, "a watch error", func() bool { return h.metric(t, nodewatch.MetricWatchErrors) >= 1 })
	if err := cs.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("nodes"), "", "n1"); err != nil {
		t.Fatal(err)
	}
	if d, _ := h.w.Draining(); d {
		t.Fatal("draining before the API server said anything")
	}
	api.failing.Store(false)
	h.awaitDecision(t, true, nodewatch.ReasonDeleted)
	await(t, "OnChange told of the deletion", func() bool {
		return slices.Equal(h.changeLog(), []string{"true " + nodewatch.ReasonDeleted})
	})
}

// TestWatcherAnnouncesNodeAddresses: the Node's IP addresses reach
// OnAddresses when first seen and on every change, not on updates that
// leave them alone (a heartbeat), and a deleted Node takes none back (the
// router keeps refusing them).
func TestWatcherAnnouncesNodeAddresses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	withAddresses := func(n *corev1.Node, addrs ...string) *corev1.Node {
		for _, a := range addrs {
			typ := corev1.NodeInternalIP
			if a == "ip-10-0-0-1.internal" {
				typ = corev1.NodeHostName
			}
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: typ, Address: a})
		}
		return n
	}
	cs := fake.NewClientset(withAddresses(node("n1"), "10.0.0.1", "ip-10-0-0-1.internal", "fd00::1", "10.0.0.1"))
	nodes := cs.CoreV1().Nodes()
	h := start(t, cs, "n1")
	await(t, "the first addresses", func() bool { return len(h.addressLog()) == 1 })
	if got := h.addressLog()[0]; got != "[10.0.0.1 fd00::1]" {
		t.Fatalf("first addresses %s, want [10.0.0.1 fd00::1] (IPs only, sorted, once each)", got)
	}

	// Same addresses, another change: processed (the decision follows) but
	// not announced again.
	if _, err := nodes.Update(ctx, cordoned(withAddresses(node("n1"), "fd00::1", "10.0.0.1")), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.awaitDecision(t, true, nodewatch.ReasonCordoned)
	if got := h.addressLog(); len(got) != 1 {
		t.Fatalf("addresses announced again without a change: %v", got)
	}

	if _, err := nodes.Update(ctx, withAddresses(node("n1"), "10.0.0.2"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	await(t, "the changed addresses", func() bool { return len(h.addressLog()) == 2 })
	if got := h.addressLog()[1]; got != "[10.0.0.2]" {
		t.Fatalf("changed addresses %s, want [10.0.0.2]", got)
	}

	if err := nodes.Delete(ctx, "n1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.awaitDecision(t, true, nodewatch.ReasonDeleted)
	if got := h.addressLog(); len(got) != 2 {
		t.Fatalf("a deleted Node announced addresses: %v", got)
	}
}
