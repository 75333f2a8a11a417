package dataclient

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gatewayinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"
)

// Gateway API kinds, as the watcher names them (metrics, staleness).
const (
	kindGatewayClass   = "GatewayClass"
	kindGateway        = "Gateway"
	kindHTTPRoute      = "HTTPRoute"
	kindGRPCRoute      = "GRPCRoute"
	kindReferenceGrant = "ReferenceGrant"
	kindNamespace      = "Namespace"
)

// gatewayKinds are the kinds read only while the Gateway API is served.
var gatewayKinds = []string{kindGatewayClass, kindGateway, kindHTTPRoute, kindGRPCRoute, kindReferenceGrant, kindNamespace}

// gatewayRediscover is how often a router whose API server does not serve
// the Gateway API asks again (its CRDs may be installed later). One small
// discovery GET per node; jittered so a fleet does not ask at once.
const gatewayRediscover = time.Minute

// gatewayWatch holds the Gateway API informers (and the Namespace informer,
// read only for allowedRoutes selectors). They exist only once discovery
// says the API server serves gateway.networking.k8s.io/v1: an informer for
// a kind the server does not know would never sync, and the router would
// never be ready.
type gatewayWatch struct {
	factory    gatewayinformers.SharedInformerFactory
	classes    cache.SharedIndexInformer
	gateways   cache.SharedIndexInformer
	routes     cache.SharedIndexInformer
	grants     cache.SharedIndexInformer
	namespaces cache.SharedIndexInformer
	// grpcRoutes is nil where the API server serves the Gateway API
	// without GRPCRoute (CRDs from before v1.1, or installed without it):
	// an informer for it would never sync. Such a router reads GRPCRoutes
	// once restarted after their CRD is installed.
	grpcRoutes cache.SharedIndexInformer
	// The kubernetes.io/tls Secrets that certificateRefs name are watched
	// whether or not the Gateway API is served (secrets.go).
	synced []cache.InformerSynced
}

func (g *gatewayWatch) informers() map[string]cache.SharedIndexInformer {
	m := map[string]cache.SharedIndexInformer{
		kindGatewayClass: g.classes, kindGateway: g.gateways, kindHTTPRoute: g.routes,
		kindReferenceGrant: g.grants, kindNamespace: g.namespaces,
	}
	if g.grpcRoutes != nil {
		m[kindGRPCRoute] = g.grpcRoutes
	}
	return m
}

// discoverGateway finds out whether the API server serves the Gateway API
// and, once it does, starts its informers. Until the first answer (served
// or not) the watcher does not count as synced, so the first table never
// lacks Gateway routes the API server has (a restart would otherwise drop
// them for a moment). Requests go through the gate like the informers'.
func (w *watcher) discoverGateway(ctx context.Context, kube kubernetes.Interface, gw gatewayclient.Interface) {
	if gw == nil {
		w.setGatewayDiscovered(nil)
		return
	}
	retry := 200 * time.Millisecond
	for {
		resources, err := kube.Discovery().ServerResourcesForGroupVersion(gatewayv1.GroupVersion.String())
		switch {
		case err == nil:
			w.setGatewayDiscovered(w.startGateway(ctx, gw, servesResource(resources, "grpcroutes")))
			return
		case apierrors.IsNotFound(err):
			w.setGatewayDiscovered(nil)
			retry = gatewayRediscover/2 + rand.N(gatewayRediscover)
		default:
			// The server is away or erring: the gate holds requests while
			// it is away, so this is rare; ask again soon.
			w.onWatchError(fmt.Errorf("Gateway API discovery: %w", err))
			retry = min(2*retry, 5*time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

// servesResource reports whether a discovery answer lists the resource.
func servesResource(l *metav1.APIResourceList, name string) bool {
	if l == nil {
		return false
	}
	for _, r := range l.APIResources {
		if r.Name == name {
			return true
		}
	}
	return false
}

func (w *watcher) setGatewayDiscovered(g *gatewayWatch) {
	w.mu.Lock()
	if g != nil {
		w.gw = g
	}
	first := !w.gwDiscovered
	w.gwDiscovered = true
	w.mu.Unlock()
	if first || g != nil {
		w.signal(time.Time{})
	}
}

// startGateway makes, hooks up and starts the Gateway API informers; the
// GRPCRoute one only when grpc (the API server serves the kind).
func (w *watcher) startGateway(ctx context.Context, gw gatewayclient.Interface, grpc bool) *gatewayWatch {
	f := gatewayinformers.NewSharedInformerFactoryWithOptions(gw, 0, gatewayinformers.WithTransform(lean))
	v1 := f.Gateway().V1()
	g := &gatewayWatch{
		factory:  f,
		classes:  v1.GatewayClasses().Informer(),
		gateways: v1.Gateways().Informer(),
		routes:   v1.HTTPRoutes().Informer(),
		grants:   v1.ReferenceGrants().Informer(),
	}
	if grpc {
		g.grpcRoutes = v1.GRPCRoutes().Informer()
	}
	// Namespaces from a factory of their own on the same client, so they
	// are listed only where the Gateway API is served.
	nsFactory := informers.NewSharedInformerFactoryWithOptions(w.kube, 0, informers.WithTransform(lean))
	g.namespaces = nsFactory.Core().V1().Namespaces().Informer()
	for kind, inf := range g.informers() {
		if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) { w.onWatchError(err) }); err != nil {
			panic(fmt.Sprintf("setting the %s watch error handler before start: %v", kind, err))
		}
		reg, err := inf.AddEventHandler(w.handler(kind))
		if err != nil {
			panic(fmt.Sprintf("adding %s handler before start: %v", kind, err))
		}
		g.synced = append(g.synced, reg.HasSynced)
	}
	w.markStale(gatewayKinds...)
	f.Start(ctx.Done())
	nsFactory.Start(ctx.Done())
	return g
}

// gatewaySynced reports whether discovery has answered and, where the
// Gateway API is served, its informers have listed and our handlers have
// seen the listing.
func (w *watcher) gatewaySynced() bool {
	w.mu.Lock()
	g, discovered := w.gw, w.gwDiscovered
	w.mu.Unlock()
	if !discovered {
		return false
	}
	if g == nil {
		return true
	}
	for _, s := range g.synced {
		if !s() {
			return false
		}
	}
	return true
}

// leanNamespace keeps what translation reads of a Namespace: its name and
// labels (allowedRoutes selectors).
func leanNamespace(n *corev1.Namespace) *corev1.Namespace {
	out := &corev1.Namespace{TypeMeta: n.TypeMeta, ObjectMeta: leanMeta(n.ObjectMeta)}
	out.Labels = n.Labels
	return out
}

// GatewayClasses, Gateways, HTTPRoutes and GRPCRoutes list the cached
// Gateway API objects (for the status writer); nil while the Gateway API
// (or GRPCRoute) is not served. They are shared with the informers and
// must not be modified.
func (c *Client) GatewayClasses() []*gatewayv1.GatewayClass {
	return gatewayList[*gatewayv1.GatewayClass](c, func(g *gatewayWatch) cache.SharedIndexInformer { return g.classes })
}

func (c *Client) Gateways() []*gatewayv1.Gateway {
	return gatewayList[*gatewayv1.Gateway](c, func(g *gatewayWatch) cache.SharedIndexInformer { return g.gateways })
}

func (c *Client) HTTPRoutes() []*gatewayv1.HTTPRoute {
	return gatewayList[*gatewayv1.HTTPRoute](c, func(g *gatewayWatch) cache.SharedIndexInformer { return g.routes })
}

func (c *Client) GRPCRoutes() []*gatewayv1.GRPCRoute {
	return gatewayList[*gatewayv1.GRPCRoute](c, func(g *gatewayWatch) cache.SharedIndexInformer { return g.grpcRoutes })
}

func gatewayList[T any](c *Client, inf func(*gatewayWatch) cache.SharedIndexInformer) []T {
	w := c.currentWatcher()
	if w == nil {
		return nil
	}
	w.mu.Lock()
	g := w.gw
	w.mu.Unlock()
	if g == nil || inf(g) == nil {
		return nil
	}
	return listOf[T](inf(g))
}

// namedByHTTPRoute reports whether a cached HTTPRoute's or GRPCRoute's
// backendRefs (of its rules or their filters) name one of the Services.
func (w *watcher) namedByHTTPRoute(services map[types.NamespacedName]bool) bool {
	w.mu.Lock()
	g := w.gw
	w.mu.Unlock()
	if g == nil {
		return false
	}
	names := func(ns string, ref gatewayv1.BackendObjectReference) bool {
		if ref.Group != nil && *ref.Group != "" || ref.Kind != nil && *ref.Kind != "Service" {
			return false
		}
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		return services[types.NamespacedName{Namespace: ns, Name: string(ref.Name)}]
	}
	for _, obj := range g.routes.GetStore().List() {
		hr := obj.(*gatewayv1.HTTPRoute)
		for _, rule := range hr.Spec.Rules {
			for _, br := range rule.BackendRefs {
				if names(hr.Namespace, br.BackendObjectReference) {
					return true
				}
			}
			for _, f := range rule.Filters {
				if f.RequestMirror != nil && names(hr.Namespace, f.RequestMirror.BackendRef) {
					return true
				}
			}
		}
	}
	if g.grpcRoutes == nil {
		return false
	}
	for _, obj := range g.grpcRoutes.GetStore().List() {
		gr := obj.(*gatewayv1.GRPCRoute)
		for _, rule := range gr.Spec.Rules {
			for _, br := range rule.BackendRefs {
				if names(gr.Namespace, br.BackendObjectReference) {
					return true
				}
			}
			for _, f := range rule.Filters {
				if f.RequestMirror != nil && names(gr.Namespace, f.RequestMirror.BackendRef) {
					return true
				}
			}
		}
	}
	return false
}
