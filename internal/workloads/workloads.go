package workloads

import (
	"bytes"
	"context"

	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/bulkhead-router/bulkhead/internal/nodeagent"
)

// TestImage is the image of App's pods: the node agent runs the test pod
// program for it (HTTP on 8080, its control endpoint on 15000).
const TestImage = nodeagent.TestpodImage + ":latest"

// App is a Deployment of the test image behind a Service of the same name
// (port "http" 80 → container port "http" 8080), as a user would write it.
type App struct {
	Namespace, Name string
	// Replicas defaults to 2.
	Replicas int32
	// PreStopSleep, when positive, gives the container a preStop hook
	// sleeping that long (Kubernetes' sleep action): the pod keeps serving
	// while routers learn that it is terminating, before SIGTERM arrives.
	PreStopSleep time.Duration
	// TerminationGracePeriod defaults to 30 s.
	TerminationGracePeriod time.Duration
	// ReadinessPeriod is the readiness probe's period (default 1 s; an
	// HTTP GET of "/" on the "http" port, one failure makes it unready).
	ReadinessPeriod time.Duration
	// MaxSurge and MaxUnavailable of the rolling update; default 1 and 0,
	// the settings for a rollout without lost capacity.
	MaxSurge, MaxUnavailable *intstr.IntOrString
}

func (a App) labels() map[string]string { return map[string]string{"app": a.Name} }

// Selector is the label selector of App's pods.
func (a App) Selector() string { return "app=" + a.Name }

// Deployment is App's Deployment.
func (a App) Deployment() *appsv1.Deployment {
	replicas := a.Replicas
	if replicas == 0 {
		replicas = 2
	}
	grace := a.TerminationGracePeriod
	if grace == 0 {
		grace = 30 * time.Second
	}
	period := a.ReadinessPeriod
	if period == 0 {
		period = time.Second
	}
	surge, unavailable := a.MaxSurge, a.MaxUnavailable
	if surge == nil {
		surge = ptr(intstr.FromInt32(1))
	}
	if unavailable == nil {
		unavailable = ptr(intstr.FromInt32(0))
	}
	c := corev1.Container{
		Name:  "web",
		Image: TestImage,
		Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
			{Name: "control", ContainerPort: 15000, Protocol: corev1.ProtocolTCP},
		},
		Env: []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "SERVICE_NAME", Value: a.Name},
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("http")}},
			PeriodSeconds:    int32(max(1, period/time.Second)),
			FailureThreshold: 1,
			SuccessThreshold: 1,
			TimeoutSeconds:   1,
		},
	}
	if a.PreStopSleep > 0 {
		c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
			Sleep: &corev1.SleepAction{Seconds: int64(max(1, a.PreStopSleep/time.Second))},
		}}
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: a.Namespace, Name: a.Name, Labels: a.labels()},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: a.labels()},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: surge, MaxUnavailable: unavailable},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: a.labels()},
				Spec: corev1.PodSpec{
					Containers:                    []corev1.Container{c},
					TerminationGracePeriodSeconds: ptr(int64(grace / time.Second)),
				},
			},
		},
	}
}

// Service is App's Service: a selector Service whose EndpointSlices the
// EndpointSlice controller writes.
func (a App) Service() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: a.Namespace, Name: a.Name, Labels: a.labels()},
		Spec: corev1.ServiceSpec{
			Selector: a.labels(),
			Ports: []corev1.ServicePort{{
				Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP,
			}},
		},
	}
}

// Create makes App's namespace (if missing), Deployment and Service.
func Create(ctx context.Context, client kubernetes.Interface, a App) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.Namespace}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", a.Namespace, err)
	}
	if _, err := client.AppsV1().Deployments(a.Namespace).Create(ctx, a.Deployment(), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create deployment %s/%s: %w", a.Namespace, a.Name, err)
	}
	if _, err := client.CoreV1().Services(a.Namespace).Create(ctx, a.Service(), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create service %s/%s: %w", a.Namespace, a.Name, err)
	}
	return nil
}

// Kubectl runs the real kubectl against a cluster.
type Kubectl struct {
	Binary     string
	Kubeconfig string
}

// Run runs kubectl with args and returns its standard output; an error
// carries its standard error.
func (k Kubectl) Run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, k.Binary, append([]string{"--kubeconfig", k.Kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// pollEvery is how often the waits below read the API server again.
const pollEvery = 100 * time.Millisecond

// Await calls check until it returns nil or ctx ends; the error then names
// what was awaited and check's last complaint.
func Await(ctx context.Context, what string, check func(context.Context) error) error {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// AwaitRollout waits until a Deployment's rollout is complete as `kubectl
// rollout status` defines it, and moreover no pod of an older revision is
// left (not even terminating): the moment a rolling update is over for
// its clients.
func AwaitRollout(ctx context.Context, client kubernetes.Interface, namespace, name string) error {
	return Await(ctx, "rollout of deployment "+namespace+"/"+name, func(ctx context.Context) error {
		d, err := client.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		s := d.Status
		if s.ObservedGeneration < d.Generation || s.UpdatedReplicas != want || s.Replicas != want || s.AvailableReplicas != want {
			return fmt.Errorf("generation %d observed %d; replicas %d updated %d available %d, want %d",
				d.Generation, s.ObservedGeneration, s.Replicas, s.UpdatedReplicas, s.AvailableReplicas, want)
		}
		pods, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(d.Spec.Selector)})
		if err != nil {
			return err
		}
		if len(pods.Items) != int(want) {
			return fmt.Errorf("%d pods, want %d (old ones still terminating)", len(pods.Items), want)
		}
		return nil
	})
}

// ReadyAddresses returns the sorted addresses the EndpointSlices of a
// Service list as ready.
func ReadyAddresses(ctx context.Context, client kubernetes.Interface, namespace, service string) ([]string, error) {
	slices, err := client.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				out = append(out, ep.Addresses...)
			}
		}
	}
	return sortedUnique(out), nil
}

// AwaitReadyAddresses waits until the Service's slices list exactly n
// ready addresses and returns them.
func AwaitReadyAddresses(ctx context.Context, client kubernetes.Interface, namespace, service string, n int) ([]string, error) {
	var got []string
	err := Await(ctx, fmt.Sprintf("%d ready endpoints of %s/%s", n, namespace, service), func(ctx context.Context) error {
		var err error
		got, err = ReadyAddresses(ctx, client, namespace, service)
		if err != nil {
			return err
		}
		if len(got) != n {
			return fmt.Errorf("%d ready: %v", len(got), got)
		}
		return nil
	})
	return got, err
}

// RunningPods returns the names of the pods matching selector that are
// running, ready and not terminating, sorted, and the nodes they run on.
func RunningPods(ctx context.Context, client kubernetes.Interface, namespace, selector string) (names []string, nodes map[string]string, err error) {
	pods, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, nil, err
	}
	nodes = map[string]string{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning || !podReady(&p) {
			continue
		}
		names = append(names, p.Name)
		nodes[p.Name] = p.Spec.NodeName
	}
	slices.Sort(names)
	return names, nodes, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// AwaitNoPods waits until no pod matches selector, terminating ones
// included.
func AwaitNoPods(ctx context.Context, client kubernetes.Interface, namespace, selector string) error {
	return Await(ctx, "no pods "+selector+" in "+namespace, func(ctx context.Context) error {
		pods, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		if n := len(pods.Items); n > 0 {
			return fmt.Errorf("%d pods left", n)
		}
		return nil
	})
}

func sortedUnique(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

func ptr[T any](v T) *T { return &v }
