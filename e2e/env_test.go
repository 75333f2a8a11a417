package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	"github.com/bulkhead-router/bulkhead/internal/testpods"
	"github.com/bulkhead-router/bulkhead/internal/testrouter"
)

const controllerName = "bulkhead.io/ingress-controller"

// env is one control plane, one set of test pods and one router.
type env struct {
	t      *testing.T
	cp     *controlplane.ControlPlane
	client kubernetes.Interface
	pods   *testpods.Cluster
	router *testrouter.Router
	http   *http.Client
}

func newEnv(t *testing.T, routerArgs ...string) *env {
	t.Helper()
	e := newEnvNoRouter(t)
	e.router = testrouter.Start(t, testrouter.Options{Kubeconfig: e.cp.Kubeconfig(), Args: routerArgs})
	return e
}

// newEnvNoRouter is newEnv for tests that start the router themselves.
func newEnvNoRouter(t *testing.T) *env {
	t.Helper()
	return newEnvOn(t, controlplane.ForTest(t))
}

// newEnvOn is newEnvNoRouter on a control plane of the test's own making.
func newEnvOn(t *testing.T, cp *controlplane.ControlPlane) *env {
	t.Helper()
	e := &env{t: t, cp: cp, client: cp.Client()}
	e.pods = testpods.ForTest(t, e.client, testpods.Options{})
	e.http = newTestHTTPClient()
	return e
}

// newTestHTTPClient is the client tests send requests through the router
// with.
func newTestHTTPClient() *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8},
		// Redirects are answers to check, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// errNotYet is what a condition returns while it does not hold yet.
var errNotYet = errors.New("not yet")

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

// startPods starts n pods of a service, published ready in its EndpointSlice.
func (e *env) startPods(namespace, service string, n int) []*testpods.Pod {
	e.t.Helper()
	var pods []*testpods.Pod
	for i := range n {
		p, err := e.pods.StartPod(e.ctx(), testpods.PodSpec{Namespace: namespace, Service: service, Name: fmt.Sprintf("%s-%d", service, i)})
		if err != nil {
			e.t.Fatalf("start pod: %v", err)
		}
		pods = append(pods, p)
	}
	return pods
}

func (e *env) ingressClass(name string, isDefault bool) {
	e.t.Helper()
	ic := &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       networkingv1.IngressClassSpec{Controller: controllerName},
	}
	if isDefault {
		ic.Annotations = map[string]string{networkingv1.AnnotationIsDefaultIngressClass: "true"}
	}
	if _, err := e.client.NetworkingV1().IngressClasses().Create(e.ctx(), ic, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("create IngressClass: %v", err)
	}
}

// apply creates or replaces an Ingress.
func (e *env) apply(ing *networkingv1.Ingress) {
	e.t.Helper()
	ensureNamespace(e.t, e.client, ing.Namespace)
	api := e.client.NetworkingV1().Ingresses(ing.Namespace)
	old, err := api.Get(e.ctx(), ing.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(e.ctx(), ing, metav1.CreateOptions{})
	case err == nil:
		ing.ResourceVersion = old.ResourceVersion
		_, err = api.Update(e.ctx(), ing, metav1.UpdateOptions{})
	}
	if err != nil {
		e.t.Fatalf("apply Ingress %s/%s: %v", ing.Namespace, ing.Name, err)
	}
}

func (e *env) deleteIngress(namespace, name string) {
	e.t.Helper()
	if err := e.client.NetworkingV1().Ingresses(namespace).Delete(e.ctx(), name, metav1.DeleteOptions{}); err != nil {
		e.t.Fatalf("delete Ingress: %v", err)
	}
}

func ensureNamespace(t testing.TB, client kubernetes.Interface, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := client.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace: %v", err)
	}
}

// answer is what one request through the router got.
type answer struct {
	status int
	body   string
	echo   testpods.Echo // zero unless a pod answered
	header http.Header
}

// get sends one request through the router with the given Host header.
func (e *env) get(host, path string, headers ...string) (answer, error) {
	req, err := http.NewRequest(http.MethodGet, e.router.ProxyURL+path, nil)
	if err != nil {
		return answer{}, err
	}
	req.Host = host
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{status: resp.StatusCode, body: string(body), header: resp.Header}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		a.echo, _ = testpods.DecodeEcho(strings.NewReader(a.body))
	}
	return a, nil
}

// eventually retries check until it returns nil, failing after timeout.
// Route changes propagate asynchronously (watch → rebuild → skipper), so
// each expectation about routing is awaited rather than slept for.
func (e *env) eventually(timeout time.Duration, what string, check func() error) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = check(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
		}
		time.Sleep(25 * time.Millisecond) // polling an external process; there is no event to wait on
	}
}

// expectPod awaits host+path being answered by a pod of the service
// (any of its pods when pod is "").
func (e *env) expectPod(host, path, service, pod string) {
	e.t.Helper()
	e.eventually(10*time.Second, fmt.Sprintf("%s%s -> %s", host, path, service), func() error {
		a, err := e.get(host, path)
		if err != nil {
			return err
		}
		if a.status != http.StatusOK || a.echo.Service != service || (pod != "" && a.echo.Pod != pod) {
			return fmt.Errorf("got %d from service %q pod %q: %.200s", a.status, a.echo.Service, a.echo.Pod, a.body)
		}
		return nil
	})
}

// expectStatus awaits host+path answering status without reaching a pod.
func (e *env) expectStatus(host, path string, status int) answer {
	e.t.Helper()
	var last answer
	e.eventually(10*time.Second, fmt.Sprintf("%s%s -> %d", host, path, status), func() error {
		a, err := e.get(host, path)
		if err != nil {
			return err
		}
		last = a
		if a.status != status || a.echo.Pod != "" {
			return fmt.Errorf("got %d (pod %q): %.200s", a.status, a.echo.Pod, a.body)
		}
		return nil
	})
	return last
}

func prefix() *networkingv1.PathType {
	t := networkingv1.PathTypePrefix
	return &t
}

func exact() *networkingv1.PathType {
	t := networkingv1.PathTypeExact
	return &t
}

func ptr[T any](v T) *T { return &v }

// path is one Ingress HTTP path to a service's port 80.
func path(p string, pathType *networkingv1.PathType, service string) networkingv1.HTTPIngressPath {
	return networkingv1.HTTPIngressPath{Path: p, PathType: pathType, Backend: backend(service)}
}

func backend(service string) networkingv1.IngressBackend {
	return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
		Name: service, Port: networkingv1.ServiceBackendPort{Number: 80},
	}}
}

func rule(host string, paths ...networkingv1.HTTPIngressPath) networkingv1.IngressRule {
	return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{
		HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths},
	}}
}

func ingress(namespace, name, class string, rules ...networkingv1.IngressRule) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       networkingv1.IngressSpec{Rules: rules},
	}
	if class != "" {
		ing.Spec.IngressClassName = ptr(class)
	}
	return ing
}
