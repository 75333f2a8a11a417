package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// ClusterOptions point the scenarios at a real cluster.
type ClusterOptions struct {
	// Kubeconfig is the path of a kubeconfig (its current context is used).
	Kubeconfig string
	// Namespace and Deployment name the workload behind the Ingress.
	Namespace, Deployment string
	// RouterURL is where clients reach bulkhead (an ALB, a node's port).
	RouterURL string
	// Host is the Host header the Ingress matches; Path the request path.
	Host, Path string
	// Rate is the steady load. Zero: 50/s.
	Rate float64
	// Settle bounds each wait for the Deployment to recover. Zero: 5 min.
	Settle time.Duration
	Log    *slog.Logger
}

// Cluster is a real cluster's Deployment, reached through bulkhead.
type Cluster struct {
	Common
	Client     kubernetes.Interface
	Namespace  string
	Deployment string
	settle     time.Duration
}

// NewCluster returns a constructor of cluster environments for Run. It
// checks that the Deployment exists and is available, and that the router
// answers 200 for Host and Path, so a wrong flag fails before any fault.
func NewCluster(o ClusterOptions) func(testing.TB) (*Cluster, error) {
	if o.Rate == 0 {
		o.Rate = 50
	}
	if o.Settle == 0 {
		o.Settle = 5 * time.Minute
	}
	if o.Path == "" {
		o.Path = "/"
	}
	return func(t testing.TB) (*Cluster, error) {
		log := o.Log
		if log == nil {
			log = slog.New(slog.NewTextHandler(tbWriter{t}, nil))
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig: %w", err)
		}
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, err
		}
		c := &Cluster{
			Common:     Common{T: t, Log: log.With("scenario", t.Name()), Rate: o.Rate, Target: Target{URL: strings.TrimRight(o.RouterURL, "/"), Host: o.Host}},
			Client:     client,
			Namespace:  o.Namespace,
			Deployment: o.Deployment,
			settle:     o.Settle,
		}
		if err := c.AwaitSettled(time.Minute); err != nil {
			return nil, fmt.Errorf("deployment %s/%s is not settled before the fault: %w", c.Namespace, c.Deployment, err)
		}
		if err := c.checkRouter(o.Path); err != nil {
			return nil, err
		}
		return c, nil
	}
}

// checkRouter sends one request the way the load will.
func (c *Cluster) checkRouter(path string) error {
	req, err := http.NewRequestWithContext(c.Context(), http.MethodGet, c.Target.URL+path, nil)
	if err != nil {
		return err
	}
	req.Host = c.Target.Host
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("router at %s: %w", c.Target.URL, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("router at %s answers %s for Host %q path %s, want 200 before any fault: %s",
			c.Target.URL, resp.Status, c.Target.Host, path, strings.TrimSpace(string(body)))
	}
	return nil
}

// poll is Await at a pace a real API server does not mind.
func (c *Cluster) poll(timeout time.Duration, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(c.Context(), timeout)
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not after %s: %w", what, timeout, err)
		case <-tick.C:
		}
	}
}

// Settled reports whether a Deployment has rolled out completely (the same
// test as `kubectl rollout status`), has as many ready pods as replicas,
// and has no pod still terminating: terminating pods may still take
// traffic, so a scenario is only over when they are gone.
func Settled(d *appsv1.Deployment, pods []corev1.Pod) error {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	switch {
	case d.Generation > s.ObservedGeneration:
		return notYet("the controller has not observed generation %d", d.Generation)
	case s.UpdatedReplicas < want:
		return notYet("%d of %d replicas updated", s.UpdatedReplicas, want)
	case s.Replicas > s.UpdatedReplicas:
		return notYet("%d old replicas pending termination", s.Replicas-s.UpdatedReplicas)
	case s.AvailableReplicas < s.UpdatedReplicas:
		return notYet("%d of %d updated replicas available", s.AvailableReplicas, s.UpdatedReplicas)
	}
	ready := int32(0)
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			return notYet("pod %s still terminating", p.Name)
		}
		if podReady(&p) {
			ready++
		}
	}
	// The status may lag a pod that was just deleted: count them too.
	if ready < want {
		return notYet("%d of %d pods ready", ready, want)
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (c *Cluster) get(ctx context.Context) (*appsv1.Deployment, []corev1.Pod, error) {
	d, err := c.Client.AppsV1().Deployments(c.Namespace).Get(ctx, c.Deployment, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, nil, err
	}
	if sel.Empty() {
		return nil, nil, errors.New("the Deployment's selector is empty")
	}
	list, err := c.Client.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, nil, err
	}
	return d, list.Items, nil
}

// AwaitSettled waits until the Deployment is settled (see Settled).
func (c *Cluster) AwaitSettled(timeout time.Duration) error {
	return c.poll(timeout, fmt.Sprintf("deployment %s/%s settled", c.Namespace, c.Deployment), func(ctx context.Context) error {
		d, pods, err := c.get(ctx)
		if err != nil {
			return err
		}
		return Settled(d, pods)
	})
}

// PickPod returns a ready, not terminating pod of the Deployment (the first
// by name, so runs are repeatable).
func PickPod(ctx context.Context, client kubernetes.Interface, namespace string, selector labels.Selector) (*corev1.Pod, error) {
	list, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return nil, err
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	for i := range list.Items {
		p := &list.Items[i]
		if p.DeletionTimestamp == nil && podReady(p) {
			return p, nil
		}
	}
	return nil, fmt.Errorf("no ready pod matches %s in %s", selector, namespace)
}

// DeletePod deletes a pod as kubectl delete or a chaoskube-style killer
// does. grace nil: the pod's own terminationGracePeriodSeconds (SIGTERM,
// then SIGKILL); 0: immediately (SIGKILL). The UID precondition makes sure
// it is the pod that was picked.
func DeletePod(ctx context.Context, client kubernetes.Interface, p *corev1.Pod, grace *int64) error {
	uid := p.UID
	return client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
		GracePeriodSeconds: grace,
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
}

// RestartRollout does what `kubectl rollout restart` does: it stamps the
// pod template with kubectl.kubernetes.io/restartedAt, so the Deployment
// replaces every pod according to its strategy.
func RestartRollout(ctx context.Context, client kubernetes.Interface, namespace, name string, now time.Time) error {
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`,
		now.Format(time.RFC3339))
	_, err := client.AppsV1().Deployments(namespace).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// Scale sets the Deployment's replicas through the scale subresource, as
// `kubectl scale` does, and returns the previous count.
func Scale(ctx context.Context, client kubernetes.Interface, namespace, name string, replicas int32) (int32, error) {
	s, err := client.AppsV1().Deployments(namespace).GetScale(ctx, name, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	before := s.Spec.Replicas
	s.Spec.Replicas = replicas
	_, err = client.AppsV1().Deployments(namespace).UpdateScale(ctx, name, s, metav1.UpdateOptions{})
	return before, err
}

func (c *Cluster) deleteOne(grace *int64) error {
	d, _, err := c.get(c.Context())
	if err != nil {
		return err
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return err
	}
	p, err := PickPod(c.Context(), c.Client, c.Namespace, sel)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := DeletePod(c.Context(), c.Client, p, grace); err != nil {
		return fmt.Errorf("delete pod %s: %w", p.Name, err)
	}
	if err := c.poll(c.settle, "pod "+p.Name+" gone", func(ctx context.Context) error {
		_, err := c.Client.CoreV1().Pods(c.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return errNotYet
	}); err != nil {
		return err
	}
	gone := time.Since(start)
	if err := c.AwaitSettled(c.settle); err != nil {
		return err
	}
	c.Note("pod %s deleted: gone after %s, deployment settled again after %s", p.Name, gone.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))
	return nil
}

// ClusterScenarios are the scenarios that run against a real cluster. The
// local-only ones are listed too, skipped with the reason, so that a -run
// pattern shows what cannot be done there.
func ClusterScenarios(o ClusterOptions) []Scenario[*Cluster] {
	path := o.Path
	get := []LoadSpec{{Method: http.MethodGet, Path: path}}
	zero := int64(0)
	scenarios := []Scenario[*Cluster]{
		{
			Name:    "pod-kill",
			Summary: "a ready pod of the Deployment deleted with grace period 0 (SIGKILL); the Deployment replaces it",
			Bound:   "0 failed",
			Short:   true,
			Loads:   get,
			Fault:   func(c *Cluster) error { return c.deleteOne(&zero) },
		},
		{
			Name:    "pod-delete",
			Summary: "a ready pod deleted with its own grace period, as kubectl delete pod or chaoskube does",
			Bound:   "0 failed",
			Short:   true,
			Loads:   get,
			Fault:   func(c *Cluster) error { return c.deleteOne(nil) },
		},
		{
			Name:    "rolling-update",
			Summary: "kubectl rollout restart of the Deployment (pod template annotation), until every old pod is gone; GETs and POSTs",
			Bound:   "0 failed of any method",
			Loads:   []LoadSpec{{Method: http.MethodGet, Path: path}, {Method: http.MethodPost, Path: path, Share: 0.5}},
			Fault: func(c *Cluster) error {
				start := time.Now()
				if err := RestartRollout(c.Context(), c.Client, c.Namespace, c.Deployment, start); err != nil {
					return fmt.Errorf("rollout restart: %w", err)
				}
				if err := c.AwaitSettled(c.settle); err != nil {
					return err
				}
				c.Note("rollout complete and old pods gone after %s", time.Since(start).Round(100*time.Millisecond))
				return nil
			},
		},
		{
			Name:    "scale-down-up",
			Summary: "the Deployment scaled down by one replica (a pod terminates) and back up (a new pod joins)",
			Bound:   "0 failed",
			Loads:   get,
			Fault: func(c *Cluster) error {
				s, err := c.Client.AppsV1().Deployments(c.Namespace).GetScale(c.Context(), c.Deployment, metav1.GetOptions{})
				if err != nil {
					return err
				}
				n := s.Spec.Replicas
				if n < 2 {
					return fmt.Errorf("the Deployment has %d replicas; scaling down needs at least 2", n)
				}
				restore := func() {
					ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Context()), 30*time.Second)
					defer cancel()
					Scale(ctx, c.Client, c.Namespace, c.Deployment, n)
				}
				for _, to := range []int32{n - 1, n} {
					start := time.Now()
					if _, err := Scale(c.Context(), c.Client, c.Namespace, c.Deployment, to); err != nil {
						restore()
						return err
					}
					if err := c.AwaitSettled(c.settle); err != nil {
						restore()
						return err
					}
					c.Note("scaled to %d, settled after %s", to, time.Since(start).Round(100*time.Millisecond))
				}
				return nil
			},
		},
	}
	const (
		controlPlane = "a fault of the control plane cannot be injected into a real cluster from outside; run it locally (make chaos)"
		switchable   = "needs pods whose behaviour can be switched (the local test pods); run it locally (make chaos)"
	)
	skipped := map[string]string{
		"apiserver-kill":                  controlPlane,
		"apiserver-freeze":                controlPlane,
		"apiserver-partition":             controlPlane,
		"apiserver-restart-changed-state": controlPlane,
		"router-restart-during-outage":    "needs an API server outage: " + controlPlane,
		"pod-hang":                        switchable,
		"pod-flap":                        switchable,
		"mass-deletion":                   "deletes every Ingress: this tool never does that to a real cluster; run it locally (make chaos)",
		// Both act on the router's own pods and nodes, which this tool
		// leaves alone in a real cluster; docs/CHAOS.md says how to run
		// them by hand (kubectl delete pod / kubectl cordon under load).
		"router-drain-sigterm":     "acts on bulkhead's own pods: run by hand with kubectl delete pod (docs/CHAOS.md)",
		"node-cordon":              "acts on a node: run by hand with kubectl cordon (docs/CHAOS.md)",
		"node-drain":               "drains a node: run by hand with kubectl drain under load (docs/CHAOS.md)",
		"pod-force-delete":         "force-deletes a pod of a Deployment: pod-delete is this tool's gentle form; run by hand with kubectl delete pod --grace-period=0 --force",
		"grpc-rolling-update":      "its load is gRPC calls to the grpc-echo test pod, which a real cluster does not run; run it locally (make chaos)",
		"rolling-update-exact-lag": "writes its EndpointSlice by hand to control the lag exactly; a real cluster's controller writes them (rolling-update runs there)",
	}
	for _, s := range LocalScenarios() {
		if reason, ok := skipped[s.Name]; ok {
			scenarios = append(scenarios, Scenario[*Cluster]{Name: s.Name, Summary: s.Summary, Bound: s.Bound, Skip: reason})
		}
	}
	return scenarios
}
