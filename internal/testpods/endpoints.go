package testpods

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
)

const (
	// ManagedBy is the endpointslice.kubernetes.io/managed-by value of the
	// EndpointSlices this package writes, so the real EndpointSlice
	// controller (if one runs) leaves them alone.
	ManagedBy = "testpods.bulkhead.io"
	// ServicePortName names the single port of every Service and
	// EndpointSlice this package writes.
	ServicePortName = "http"
	// ServicePort is the Service's port.
	ServicePort = 80
)

// ErrNoClient is returned by the Kubernetes methods of a Cluster made
// without a client.
var ErrNoClient = errors.New("testpods: cluster has no Kubernetes client")

// EndpointSliceName is the name of the one EndpointSlice this package
// writes for a service.
func EndpointSliceName(service string) string { return service + "-testpods" }

// EnsureService creates the namespace if missing and a ClusterIP Service
// named service with one port: name "http", port 80, targetPort "http" (by
// name). The Service has no selector: its endpoints are whatever
// SyncEndpointSlice writes, and the EndpointSlice's port named "http"
// carries the pods' real port, so a consumer resolves the target port the
// way it must for named ports in a real cluster. An existing Service is
// left as it is.
func (c *Cluster) EnsureService(ctx context.Context, namespace, service string) error {
	if c.client == nil {
		return ErrNoClient
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil &&
		!apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("testpods: create namespace %s: %w", namespace, err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:      service,
			Namespace: namespace,
			Labels:    map[string]string{"app.kubernetes.io/managed-by": ManagedBy},
		},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{
				Name:       ServicePortName,
				Protocol:   corev1.ProtocolTCP,
				Port:       ServicePort,
				TargetPort: intstr.FromString(ServicePortName),
			}},
		},
	}
	if _, err := c.client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil &&
		!apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("testpods: create service %s/%s: %w", namespace, service, err)
	}
	return nil
}

// SetConditions sets the endpoint conditions the next SyncEndpointSlice
// writes for this pod. Pods start ready and serving, not terminating.
func (p *Pod) SetConditions(ready, serving, terminating bool) {
	p.cluster.mu.Lock()
	defer p.cluster.mu.Unlock()
	p.conditions = endpointConditions{ready: ready, serving: serving, terminating: terminating}
}

// AddToEndpoints makes the next SyncEndpointSlice list the pod, with its
// current conditions.
func (c *Cluster) AddToEndpoints(p *Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p.published = true
}

// RemoveFromEndpoints makes the next SyncEndpointSlice leave the pod out.
// The pod keeps running.
func (c *Cluster) RemoveFromEndpoints(p *Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p.published = false
}

// publish is StartPod's default: Service, pod in the slice, sync.
func (c *Cluster) publish(ctx context.Context, p *Pod) error {
	if err := c.EnsureService(ctx, p.Namespace, p.Service); err != nil {
		return err
	}
	c.AddToEndpoints(p)
	return c.SyncEndpointSlice(ctx, p.Namespace, p.Service)
}

// SyncEndpointSlice writes the EndpointSlice of a service so it lists
// exactly the service's pods that are in the endpoints (see AddToEndpoints,
// RemoveFromEndpoints), with their current conditions, replacing whatever
// the slice listed before. The slice is labelled like one of the real
// controller's (kubernetes.io/service-name) but managed by ManagedBy, and
// its endpoints.kubernetes.io/last-change-trigger-time is now.
func (c *Cluster) SyncEndpointSlice(ctx context.Context, namespace, service string) error {
	if c.client == nil {
		return ErrNoClient
	}
	slices := c.client.DiscoveryV1().EndpointSlices(namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		// Rebuilt on every attempt so a conflict retry writes the
		// newest pod state.
		desired := c.desiredEndpointSlice(namespace, service)
		if svc, err := c.client.CoreV1().Services(namespace).Get(ctx, service, metav1.GetOptions{}); err == nil {
			// Like the real controller: deleting the Service lets the
			// garbage collector delete the slice.
			desired.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(svc,
				corev1.SchemeGroupVersion.WithKind("Service"))}
		}
		current, err := slices.Get(ctx, desired.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = slices.Create(ctx, desired, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				// Created meanwhile; retry as an update.
				return apierrors.NewConflict(discoveryv1.Resource("endpointslices"), desired.Name, err)
			}
			return err
		}
		if err != nil {
			return err
		}
		desired.ResourceVersion = current.ResourceVersion
		_, err = slices.Update(ctx, desired, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("testpods: write EndpointSlice %s/%s: %w", namespace, EndpointSliceName(service), err)
	}
	return nil
}

// desiredEndpointSlice builds the slice from the pods' current state.
func (c *Cluster) desiredEndpointSlice(namespace, service string) *discoveryv1.EndpointSlice {
	c.mu.Lock()
	defer c.mu.Unlock()
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      EndpointSliceName(service),
			Namespace: namespace,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: service,
				discoveryv1.LabelManagedBy:   ManagedBy,
			},
			Annotations: map[string]string{
				corev1.EndpointsLastChangeTriggerTime: time.Now().UTC().Format(time.RFC3339Nano),
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{},
	}
	if port, ok := c.servicePorts[serviceKey{namespace, service}]; ok {
		slice.Ports = []discoveryv1.EndpointPort{{
			Name:     ptr(ServicePortName),
			Protocol: ptr(corev1.ProtocolTCP),
			Port:     ptr(port),
		}}
	}
	for _, p := range c.pods {
		if p.Namespace != namespace || p.Service != service || !p.published {
			continue
		}
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{p.IP.String()},
			Conditions: discoveryv1.EndpointConditions{
				Ready:       ptr(p.conditions.ready),
				Serving:     ptr(p.conditions.serving),
				Terminating: ptr(p.conditions.terminating),
			},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: namespace, Name: p.Name},
		})
	}
	return slice
}

func ptr[T any](v T) *T { return &v }
