package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/bulkhead-router/bulkhead/internal/testpods"
)

const (
	// ingressClass is the class bulkhead serves in this run.
	ingressClass = "bulkhead"
	// controllerName is bulkhead's default -controller-name.
	controllerName = "bulkhead.io/ingress-controller"
)

// upstream is a Service of two pods that every proxy in a run forwards to:
// bulkhead finds them through an Ingress and the EndpointSlice testpods
// writes, the peers through their generated configuration.
type upstream struct {
	// Host is the Host header clients send; bulkhead routes by it, the
	// peers accept any.
	Host string
	Pods []*testpods.Pod
}

// Addrs are the pods' ip:port.
func (u upstream) Addrs() []string {
	addrs := make([]string, len(u.Pods))
	for i, p := range u.Pods {
		addrs[i] = p.Addr
	}
	return addrs
}

// PodNames are the names the pods report in their answers.
func (u upstream) PodNames() []string {
	names := make([]string, len(u.Pods))
	for i, p := range u.Pods {
		names[i] = p.Name
	}
	return names
}

// createIngressClass makes the class bulkhead serves.
func createIngressClass(ctx context.Context, client kubernetes.Interface) error {
	ic := &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: ingressClass},
		Spec:       networkingv1.IngressClassSpec{Controller: controllerName},
	}
	if _, err := client.NetworkingV1().IngressClasses().Create(ctx, ic, metav1.CreateOptions{}); err != nil &&
		!apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create IngressClass %s: %w", ingressClass, err)
	}
	return nil
}

// startUpstream starts two pods of namespace/service, published ready in
// their EndpointSlice, and an Ingress routing host to the Service.
func startUpstream(ctx context.Context, pods *testpods.Cluster, client kubernetes.Interface, namespace, service, host string) (upstream, error) {
	u := upstream{Host: host}
	for i := range 2 {
		p, err := pods.StartPod(ctx, testpods.PodSpec{Namespace: namespace, Service: service, Name: fmt.Sprintf("%s-%d", service, i)})
		if err != nil {
			return u, err
		}
		u.Pods = append(u.Pods, p)
	}
	prefix := networkingv1.PathTypePrefix
	class := ingressClass
	ing := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: service},
		Spec: networkingv1.IngressSpec{
			IngressClassName: &class,
			Rules: []networkingv1.IngressRule{{
				Host: host,
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
					Paths: []networkingv1.HTTPIngressPath{{
						Path: "/", PathType: &prefix,
						Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
							Name: service, Port: networkingv1.ServiceBackendPort{Number: testpods.ServicePort},
						}},
					}},
				}},
			}},
		},
	}
	if _, err := client.NetworkingV1().Ingresses(namespace).Create(ctx, ing, metav1.CreateOptions{}); err != nil {
		return u, fmt.Errorf("create Ingress %s/%s: %w", namespace, service, err)
	}
	return u, nil
}

// awaitServing polls url (with the upstream's Host) until every pod of the
// upstream has answered through the proxy: then its routes, its load
// balancer and its health checks all have both pods in.
func awaitServing(ctx context.Context, p *process, url string, u upstream) error {
	client := testpods.DirectClient(2 * time.Second)
	seen := map[string]bool{}
	return awaitCondition(ctx, p, proxyStartLimit, 20*time.Millisecond, p.name+" to serve both pods", func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Host = u.Host
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		e, err := testpods.DecodeEcho(resp.Body)
		if err != nil {
			return err
		}
		seen[e.Pod] = true
		for _, name := range u.PodNames() {
			if !seen[name] {
				return fmt.Errorf("pod %s not seen yet", name)
			}
		}
		return nil
	})
}
