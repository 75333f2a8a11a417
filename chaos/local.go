package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/bulkhead-router/bulkhead/dataclient"
	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	"github.com/bulkhead-router/bulkhead/internal/nodeagent"
	"github.com/bulkhead-router/bulkhead/internal/testpods"
	"github.com/bulkhead-router/bulkhead/internal/testrouter"
	"github.com/bulkhead-router/bulkhead/internal/toxiproxy"
	"github.com/bulkhead-router/bulkhead/internal/workloads"
)

const (
	// Namespace holds every object of a local scenario.
	Namespace = "chaos"
	// Host is the Host header of the load; the Ingress "web" matches it.
	Host = "web.chaos.example"
	// className is the IngressClass bulkhead serves in local scenarios.
	className      = "bulkhead"
	controllerName = "bulkhead.io/ingress-controller"
)

// LocalOptions configure local environments.
type LocalOptions struct {
	// Binaries of etcd and kube-apiserver (controlplane.EnsureBinaries).
	// Zero: built or taken from the cache by every environment.
	Binaries controlplane.Binaries
	// Outage and Rate are copied into Common. Zero: 10 s and 50/s.
	Outage time.Duration
	Rate   float64
	// Log receives progress. Nil: t.Logf.
	Log *slog.Logger
}

// Local is one scenario's own control plane, pods and router.
type Local struct {
	Common
	CP     *controlplane.ControlPlane
	Client kubernetes.Interface
	Pods   *testpods.Cluster
	// Router is the bulkhead process, started by Start.
	Router *testrouter.Router
	// Proxy is toxiproxy between the router and the API server, when
	// StartOptions.ViaToxiproxy was set.
	Proxy *toxiproxy.Proxy
	// Web are the pods of service "web", in start order (none when it is
	// a Deployment).
	Web []*testpods.Pod
	// Agent runs the pods of Deployments, when StartOptions.Deployment
	// was set.
	Agent *nodeagent.Agent
	app   workloads.App
	// grpc is the gRPC Deployment of the grpc- scenarios.
	grpc *grpcState

	http *http.Client
	// Measurements some bounds need: how long the router was down on
	// purpose and took from start to ready (router-restart-during-outage),
	// and how long a change after an outage took to go live.
	down, startToReady, changeLive time.Duration
	drainStart                     time.Time
	podShutdownDelay               time.Duration
}

// updateNode changes a Node object.
func (e *Local) updateNode(name string, change func(*corev1.Node)) error {
	ctx, cancel := context.WithTimeout(e.Context(), 10*time.Second)
	defer cancel()
	n, err := e.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	change(n)
	_, err = e.Client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
	return err
}

// NewLocal returns a constructor of local environments for Run: a fresh
// control plane and pod cluster per scenario, stopped by t's cleanups.
func NewLocal(o LocalOptions) func(testing.TB) (*Local, error) {
	if o.Outage == 0 {
		o.Outage = 10 * time.Second
	}
	if o.Rate == 0 {
		o.Rate = 50
	}
	return func(t testing.TB) (*Local, error) {
		log := o.Log
		if log == nil {
			log = slog.New(slog.NewTextHandler(tbWriter{t}, nil))
		}
		log = log.With("scenario", t.Name())
		cp, err := controlplane.Start(t.Context(), controlplane.Options{Dir: t.TempDir(), Binaries: o.Binaries})
		if err != nil {
			return nil, fmt.Errorf("control plane: %w", err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				for _, name := range []string{"etcd.log", "kube-apiserver.log"} {
					t.Logf("--- control plane log: %s", filepath.Join(cp.Dir(), "logs", name))
				}
			}
			cp.Stop()
		})
		e := &Local{
			Common: Common{T: t, Log: log, Outage: o.Outage, Rate: o.Rate},
			CP:     cp,
			Client: cp.Client(),
			http: &http.Client{
				Timeout:       5 * time.Second,
				Transport:     &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4},
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			},
		}
		t.Cleanup(e.http.CloseIdleConnections)
		// Before the router: cleanups run last-registered first, so the
		// router stops before its pods go.
		e.Pods = testpods.ForTest(t, e.Client, testpods.Options{})
		return e, nil
	}
}

// tbWriter sends log lines to t.Logf.
type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// StartOptions shape the standard setup.
type StartOptions struct {
	// Pods of service "web" (default 2).
	Pods int
	// ViaToxiproxy puts toxiproxy between the router and the API server.
	ViaToxiproxy bool
	// RouterArgs are extra bulkhead flags.
	RouterArgs []string
	// Annotations go on the Ingress "web".
	Annotations map[string]string
	// PodShutdownDelay is how long every pod started from now on keeps
	// serving after SIGTERM (a preStop sleep); 0: they shut down at once.
	PodShutdownDelay time.Duration
	// Deployment, when set, replaces the hand-made pods: the control
	// plane's controllers and the node agent are started, and service
	// "web" is this Deployment (its Namespace and Name are set here) of the
	// node agent's test image, with a selector Service whose EndpointSlices
	// the real EndpointSlice controller writes. Pods is ignored.
	Deployment *workloads.App
}

// Start is the standard setup: IngressClass "bulkhead", service "web" with
// its pods, Ingress "web" (Host → web), the router, ready and sending to
// every pod. It sets Target.
func (e *Local) Start(o StartOptions) error {
	if o.Pods == 0 {
		o.Pods = 2
	}
	ctx := e.Context()
	ic := &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: className},
		Spec:       networkingv1.IngressClassSpec{Controller: controllerName},
	}
	if _, err := e.Client.NetworkingV1().IngressClasses().Create(ctx, ic, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create IngressClass: %w", err)
	}
	e.podShutdownDelay = o.PodShutdownDelay
	if o.Deployment != nil {
		if err := e.startDeployment(*o.Deployment); err != nil {
			return err
		}
	}
	for i := range o.Pods {
		if o.Deployment != nil {
			break
		}
		p, err := e.StartPod("web", fmt.Sprintf("web-%d", i))
		if err != nil {
			return err
		}
		e.Web = append(e.Web, p)
	}
	ing := Ingress("web", Host, "web")
	ing.Annotations = o.Annotations
	if err := e.Apply(ing); err != nil {
		return err
	}
	kubeconfig := e.CP.Kubeconfig()
	if o.ViaToxiproxy {
		tp := toxiproxy.ForTest(e.T)
		e.Proxy = tp.NewProxy(e.T, "kube-apiserver", strings.TrimPrefix(e.CP.URL(), "https://"))
		var err error
		if kubeconfig, err = kubeconfigVia(kubeconfig, "https://"+e.Proxy.Listen, e.T.TempDir()); err != nil {
			return err
		}
	}
	e.Router = testrouter.Start(e.T, testrouter.Options{Kubeconfig: kubeconfig, Args: o.RouterArgs})
	e.Target = Target{URL: e.Router.ProxyURL, Host: Host, ReadyURL: e.Router.HealthURL + "/readyz"}
	if err := e.Await(30*time.Second, "router ready", func() error {
		if !e.Router.Ready() {
			return errNotYet
		}
		return nil
	}); err != nil {
		return err
	}
	names := make([]string, len(e.Web))
	for i, p := range e.Web {
		names[i] = p.Name
	}
	if o.Deployment != nil {
		var err error
		if names, err = e.DeploymentPods(); err != nil {
			return err
		}
	}
	return e.ExpectPods(15*time.Second, names...)
}

// startDeployment starts the controllers and the node agent, and creates
// app as service "web" and waits for its rollout.
func (e *Local) startDeployment(app workloads.App) error {
	ctx, cancel := context.WithTimeout(e.Context(), 3*time.Minute)
	defer cancel()
	if err := e.CP.StartControllers(ctx); err != nil {
		return err
	}
	e.Agent = nodeagent.ForTest(e.T, e.Client, nodeagent.Options{Logger: e.Log.With("component", "nodeagent")})
	app.Namespace, app.Name = Namespace, "web"
	e.app = app
	if err := workloads.Create(ctx, e.Client, app); err != nil {
		return err
	}
	return workloads.AwaitRollout(ctx, e.Client, app.Namespace, app.Name)
}

// DeploymentPods returns the names of the running, ready pods of the
// Deployment "web".
func (e *Local) DeploymentPods() ([]string, error) {
	names, _, err := workloads.RunningPods(e.Context(), e.Client, e.app.Namespace, e.app.Selector())
	return names, err
}

// Kubectl runs the real kubectl against the scenario's cluster.
func (e *Local) Kubectl(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(e.Context(), timeout)
	defer cancel()
	return workloads.Kubectl{Binary: e.CP.Binaries().Kubectl, Kubeconfig: e.CP.Kubeconfig()}.Run(ctx, args...)
}

// AwaitRollout waits until the Deployment "web" is rolled out with no old
// pod left, then until exactly its pods answer.
func (e *Local) AwaitRollout(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(e.Context(), timeout)
	defer cancel()
	if err := workloads.AwaitRollout(ctx, e.Client, e.app.Namespace, e.app.Name); err != nil {
		return err
	}
	names, err := e.DeploymentPods()
	if err != nil {
		return err
	}
	return e.ExpectPods(15*time.Second, names...)
}

// kubeconfigVia copies a kubeconfig with another server address (the
// serving certificate is for 127.0.0.1, so any port on it works).
func kubeconfigVia(path, server, dir string) (string, error) {
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return "", err
	}
	for _, c := range cfg.Clusters {
		c.Server = server
	}
	out := filepath.Join(dir, "kubeconfig-via-toxiproxy")
	return out, clientcmd.WriteToFile(*cfg, out)
}

// StartPod starts a pod of service in Namespace, published ready.
func (e *Local) StartPod(service, name string) (*testpods.Pod, error) {
	ctx, cancel := context.WithTimeout(e.Context(), 30*time.Second)
	defer cancel()
	return e.Pods.StartPod(ctx, testpods.PodSpec{Namespace: Namespace, Service: service, Name: name, ShutdownDelay: e.podShutdownDelay})
}

// Sync writes the service's EndpointSlice as the pods now stand.
func (e *Local) Sync(service string) error {
	ctx, cancel := context.WithTimeout(e.Context(), 30*time.Second)
	defer cancel()
	return e.Pods.SyncEndpointSlice(ctx, Namespace, service)
}

// Ingress is an Ingress of class "bulkhead" in Namespace sending every
// path of host to port 80 of service.
func Ingress(name, host, service string) *networkingv1.Ingress {
	prefix := networkingv1.PathTypePrefix
	class := className
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: name},
		Spec: networkingv1.IngressSpec{
			IngressClassName: &class,
			Rules: []networkingv1.IngressRule{{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{
				HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
					Path: "/", PathType: &prefix,
					Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
						Name: service, Port: networkingv1.ServiceBackendPort{Number: 80},
					}},
				}}},
			}}},
		},
	}
}

// Apply creates or replaces an Ingress.
func (e *Local) Apply(ing *networkingv1.Ingress) error {
	ctx, cancel := context.WithTimeout(e.Context(), 10*time.Second)
	defer cancel()
	api := e.Client.NetworkingV1().Ingresses(ing.Namespace)
	old, err := api.Get(ctx, ing.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, ing, metav1.CreateOptions{})
	case err == nil:
		ing.ResourceVersion = old.ResourceVersion
		_, err = api.Update(ctx, ing, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("apply Ingress %s/%s: %w", ing.Namespace, ing.Name, err)
	}
	return nil
}

// Answer is what one request through the router got.
type Answer struct {
	Status int
	Pod    string // the pod that answered, "" if none
	Body   string
}

// Get sends one GET for host and path through the router.
func (e *Local) Get(host, path string) (Answer, error) {
	req, err := http.NewRequestWithContext(e.Context(), http.MethodGet, e.Router.ProxyURL+path, nil)
	if err != nil {
		return Answer{}, err
	}
	req.Host = host
	resp, err := e.http.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return Answer{}, err
	}
	return Answer{Status: resp.StatusCode, Pod: resp.Header.Get("X-Testpod-Pod"), Body: string(body)}, nil
}

// ExpectPods waits until 30 requests in a row to Host are answered 200 by
// exactly the given pods, all of them.
func (e *Local) ExpectPods(timeout time.Duration, pods ...string) error {
	want := map[string]bool{}
	for _, p := range pods {
		want[p] = true
	}
	return e.Await(timeout, fmt.Sprintf("%s served by exactly %v", Host, pods), func() error {
		seen := map[string]bool{}
		for range 30 {
			a, err := e.Get(Host, "/")
			if err != nil {
				return err
			}
			if a.Status != http.StatusOK {
				return fmt.Errorf("status %d: %.100s", a.Status, a.Body)
			}
			seen[a.Pod] = true
		}
		for p := range seen {
			if !want[p] {
				return notYet("answered by %s; seen %v", p, seen)
			}
		}
		if len(seen) != len(want) {
			return notYet("seen %v", seen)
		}
		return nil
	})
}

// ExpectStatus waits until Host answers status without reaching a pod.
func (e *Local) ExpectStatus(timeout time.Duration, status int) error {
	return e.Await(timeout, fmt.Sprintf("%s answering %d", Host, status), func() error {
		a, err := e.Get(Host, "/")
		if err != nil {
			return err
		}
		if a.Status != status || a.Pod != "" {
			return notYet("status %d from pod %q", a.Status, a.Pod)
		}
		return nil
	})
}

// Metric returns the sum of every sample of a metric family on the
// router's admin endpoint (0 if absent), or of one sample when name
// carries labels.
func (e *Local) Metric(name string) (float64, error) {
	resp, err := e.http.Get(e.Router.AdminURL + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		sample := fields[0]
		if sample != name && !(strings.HasPrefix(sample, name+"{") && !strings.Contains(name, "{")) {
			continue
		}
		if v, err := strconv.ParseFloat(fields[1], 64); err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}

// AwaitMetric waits until cond holds for a metric's value.
func (e *Local) AwaitMetric(timeout time.Duration, name string, cond func(float64) bool) error {
	return e.Await(timeout, "metric "+name, func() error {
		v, err := e.Metric(name)
		if err != nil {
			return err
		}
		if !cond(v) {
			return notYet("%s = %v", name, v)
		}
		return nil
	})
}

// Status reads the router's /status.
func (e *Local) Status() (dataclient.Status, error) {
	var st dataclient.Status
	resp, err := e.http.Get(e.Router.AdminURL + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("/status: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// AdminPost POSTs to a path of the admin endpoint and returns the status.
func (e *Local) AdminPost(path string) (int, string, error) {
	resp, err := e.http.Post(e.Router.AdminURL+path, "", nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), nil
}

// AwaitConnected waits for the router's view of the API server.
func (e *Local) AwaitConnected(want bool, timeout time.Duration) error {
	return e.AwaitMetric(timeout, dataclient.MetricConnected, func(v float64) bool { return (v == 1) == want })
}

// ChangeAfterOutage publishes a new pod of "web" as soon as the API
// server accepts writes and returns how long it took from the write until
// the router sent it traffic. The load keeps running meanwhile. The pod is
// started (unpublished) first, so that only the API write is retried.
func (e *Local) ChangeAfterOutage() (time.Duration, error) {
	ctx, cancel := context.WithTimeout(e.Context(), 30*time.Second)
	defer cancel()
	p, err := e.Pods.StartPod(ctx, testpods.PodSpec{Namespace: Namespace, Service: "web", Name: "web-new", Unpublished: true})
	if err != nil {
		return 0, err
	}
	e.Pods.AddToEndpoints(p)
	back := time.Now()
	if err := e.Await(60*time.Second, "API server accepting writes", func() error {
		ctx, cancel := context.WithTimeout(e.Context(), 2*time.Second)
		defer cancel()
		return e.Pods.SyncEndpointSlice(ctx, Namespace, "web")
	}); err != nil {
		return 0, err
	}
	written := time.Now()
	if err := e.Await(30*time.Second, "the new pod serving", func() error {
		for range 20 {
			if a, err := e.Get(Host, "/"); err == nil && a.Pod == p.Name {
				return nil
			}
		}
		return errNotYet
	}); err != nil {
		return 0, err
	}
	took := time.Since(written)
	e.Web = append(e.Web, p)
	e.Note("a change right after the outage: written %s after the API server was back, live %s after the write",
		written.Sub(back).Round(time.Millisecond), took.Round(time.Millisecond))
	return took, nil
}
