package dataclient

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/informers/internalinterfaces"
	networkinginformers "k8s.io/client-go/informers/networking/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/bulkhead-router/bulkhead/routing"
)

// maxPendingChanges caps the change times kept for the latency histogram
// during a burst (a mass update of thousands of objects); past it, later
// changes in the same burst are not sampled.
const maxPendingChanges = 4096

// watcher owns the informers. Its handlers only record and signal.
type watcher struct {
	kube           kubernetes.Interface
	gatewayClient  gatewayclient.Interface // nil: the Gateway API is not read
	factory        informers.SharedInformerFactory
	ingressClasses cache.SharedIndexInformer
	ingresses      cache.SharedIndexInformer
	services       cache.SharedIndexInformer
	slices         cache.SharedIndexInformer
	sliceIndex     sliceIndex // the slices' names by Service
	// secrets are the kubernetes.io/tls Secrets (secrets.go), from a
	// factory of their own (a field selector).
	secretFactory informers.SharedInformerFactory
	secrets       cache.SharedIndexInformer
	metrics       *metrics

	changed chan<- struct{} // size 1, owned by the Client: a pending rebuild request
	// onWatchError hears every failed list or watch (connection lost,
	// server gone, server erring); the client decides what it means.
	onWatchError func(error)
	// handlersSynced report when our handlers have seen each informer's
	// initial listing (an informer can be synced before its handlers are).
	handlersSynced []cache.InformerSynced

	mu sync.Mutex
	gw *gatewayWatch // nil until discovery finds the Gateway API served
	// gwDiscovered: discovery has answered (served or not), so the first
	// table can be built.
	gwDiscovered bool
	changes      []time.Time
	gone         goneSet // how objects left since the last takeGone
	dirty        dirtySet
	// listed is the last snapshot's lists, and stale the kinds that
	// changed since: a kind that did not change keeps its list, the same
	// slice in the same order, and the translator then skips indexing it
	// again (at 10,000 Services and EndpointSlices, a third of a
	// translation's CPU).
	listed routing.Snapshot // under listMu
	stale  map[string]bool
	listMu sync.Mutex
	// The Ingresses and EndpointSlices are listed in a stable order
	// (stablelist.go), brought up to date from the names touched since
	// the last snapshot (under mu), so that the translator finds the few
	// that changed without a full translation.
	touched     map[string]map[types.NamespacedName]struct{}
	ingressList stableList[*networkingv1.Ingress]  // under listMu
	sliceList   stableList[*routing.EndpointSlice] // under listMu
}

// dirtySet is what changed since the last takeDirty: the Services whose
// EndpointSlices changed, the Services and Ingresses that changed, or
// "all" when anything else did (a class, an initial listing). A rebuild
// with only slices dirty re-resolves the endpoints of those Services and
// nothing else; one whose changed Services and Ingresses no route uses and
// that are not ours does nothing more.
type dirtySet struct {
	all       bool
	services  map[types.NamespacedName]bool // whose slices changed
	objects   map[types.NamespacedName]bool // Services that changed
	ingresses map[types.NamespacedName]bool
	secrets   map[types.NamespacedName]bool // TLS Secrets that changed
}

// onlySlices reports whether nothing but EndpointSlices changed.
func (d *dirtySet) onlySlices() bool {
	return !d.all && len(d.objects) == 0 && len(d.ingresses) == 0 && len(d.secrets) == 0
}

func (d *dirtySet) mark(kind string, obj any) {
	if d.all {
		return
	}
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	add := func(m *map[types.NamespacedName]bool, n types.NamespacedName) {
		if *m == nil {
			*m = map[types.NamespacedName]bool{}
		}
		(*m)[n] = true
	}
	switch o := obj.(type) {
	case *routing.EndpointSlice:
		if kind == "EndpointSlice" {
			add(&d.services, types.NamespacedName{Namespace: o.Namespace, Name: o.Service})
			return
		}
	case *routing.Service:
		if kind == "Service" {
			add(&d.objects, types.NamespacedName{Namespace: o.Namespace, Name: o.Name})
			return
		}
	case *networkingv1.Ingress:
		if kind == "Ingress" {
			add(&d.ingresses, types.NamespacedName{Namespace: o.Namespace, Name: o.Name})
			return
		}
	case *corev1.Secret:
		if kind == kindSecret {
			add(&d.secrets, types.NamespacedName{Namespace: o.Namespace, Name: o.Name})
			return
		}
	}
	*d = dirtySet{all: true}
}

func newWatcher(clients Clients, m *metrics, changed chan<- struct{}, onWatchError func(error)) *watcher {
	f := informers.NewSharedInformerFactoryWithOptions(clients.Kube, 0, informers.WithTransform(lean))
	w := &watcher{
		kube:           clients.Kube,
		gatewayClient:  clients.Gateway,
		factory:        f,
		ingressClasses: f.Networking().V1().IngressClasses().Informer(),
		ingresses:      f.InformerFor(&networkingv1.Ingress{}, unindexed(networkinginformers.NewIngressInformerWithOptions)),
		services:       f.InformerFor(&corev1.Service{}, unindexed(coreinformers.NewServiceInformerWithOptions)),
		slices:         f.InformerFor(&discoveryv1.EndpointSlice{}, unindexed(discoveryinformers.NewEndpointSliceInformerWithOptions)),
		metrics:        m,
		changed:        changed,
		onWatchError:   onWatchError,
		stale:          map[string]bool{"IngressClass": true, "Ingress": true, "Service": true, "EndpointSlice": true, kindSecret: true},
	}
	w.secretFactory, w.secrets = newSecretInformer(w)
	for kind, inf := range map[string]cache.SharedIndexInformer{
		"IngressClass": w.ingressClasses, "Ingress": w.ingresses, "Service": w.services, "EndpointSlice": w.slices,
	} {
		if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) { w.onWatchError(err) }); err != nil {
			panic(fmt.Sprintf("setting the %s watch error handler before start: %v", kind, err))
		}
		reg, err := inf.AddEventHandler(w.handler(kind))
		if err != nil {
			panic(fmt.Sprintf("adding %s handler before start: %v", kind, err)) // cannot fail on an informer not yet started
		}
		w.handlersSynced = append(w.handlersSynced, reg.HasSynced)
	}
	w.handlersSynced = append(w.handlersSynced, w.watchSecrets(), w.gatewaySynced)
	return w
}

// unindexed makes an informer without the namespace index the factory's
// informers have: nothing lists Ingresses, Services or EndpointSlices by
// namespace, and that index held every object's key once more (about 45
// bytes an object, 1.3 MB at 10,000 of each).
func unindexed(newInformer func(kubernetes.Interface, string, internalinterfaces.InformerOptions) cache.SharedIndexInformer) internalinterfaces.NewInformerFunc {
	return func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return newInformer(c, metav1.NamespaceAll, internalinterfaces.InformerOptions{ResyncPeriod: resync, Indexers: cache.Indexers{}})
	}
}

func (w *watcher) start(ctx context.Context) {
	w.factory.Start(ctx.Done())
	w.secretFactory.Start(ctx.Done())
	go w.discoverGateway(ctx, w.kube, w.gatewayClient)
}

// waitForSync waits until every informer has listed and our handlers have
// seen the listing, or ctx ends.
func (w *watcher) waitForSync(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), w.handlersSynced...)
}

// sliceLabel is the service-name label of an EndpointSlice, "" for
// anything else.
func sliceLabel(obj any) string {
	if es, ok := obj.(*routing.EndpointSlice); ok {
		return es.Service
	}
	return ""
}

// handler records the change time and signals; it never blocks and never
// builds anything, so a slow rebuild cannot back up the watch.
func (w *watcher) handler(kind string) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initialList bool) {
			if kind == "EndpointSlice" {
				w.sliceIndex.update(nil, obj)
			}
			w.markTouched(kind, obj)
			w.metrics.events.WithLabelValues(kind, "add").Inc()
			w.markDirty(kind, obj, initialList)
			if initialList {
				w.signal(time.Time{}) // the first build after sync covers these
				return
			}
			w.signal(changeTime(obj))
		},
		UpdateFunc: func(oldObj, newObj any) {
			// The cache holds a new object even when nothing changed (a
			// relist): the next snapshot lists it, not the old one.
			if kind == "EndpointSlice" {
				w.sliceIndex.update(oldObj, newObj)
			}
			w.markTouched(kind, newObj)
			if rv := resourceVersion(newObj); rv != "" && rv == resourceVersion(oldObj) {
				return // a relist or resync delivered the same object: nothing changed
			}
			if statusOnly(oldObj, newObj) {
				// Our own status writes come back as updates; they change
				// no route, and at 10,000 Ingresses they would otherwise
				// cost a rebuild storm after every election.
				w.metrics.events.WithLabelValues(kind, "status").Inc()
				return
			}
			w.metrics.events.WithLabelValues(kind, "update").Inc()
			w.markDirty(kind, newObj, false)
			if kind == "EndpointSlice" && sliceLabel(oldObj) != sliceLabel(newObj) {
				// A slice moved to another Service (its label changed):
				// the Service it left loses its endpoints too.
				w.markDirty(kind, oldObj, false)
			}
			w.signal(changeTime(newObj))
		},
		DeleteFunc: func(obj any) {
			if kind == "EndpointSlice" {
				w.sliceIndex.update(obj, nil)
			}
			w.markTouched(kind, obj)
			// A tombstone (DeletedFinalStateUnknown) means a relist found
			// the object missing: nobody announced its deletion. The
			// rebuild reads the cache either way; the deletion guard
			// weighs the two differently.
			announced := true
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				announced, obj = false, tomb.Obj
			}
			w.metrics.events.WithLabelValues(kind, "delete").Inc()
			w.markDirty(kind, obj, false)
			if ref, ok := goneRef(obj); ok {
				w.mu.Lock()
				if w.gone == nil {
					w.gone = goneSet{}
				}
				w.gone.add(ref, announced)
				w.mu.Unlock()
			}
			w.signal(time.Now())
		},
	}
}

// markStale records that the cache of kind changed: the next snapshot
// lists it again.
func (w *watcher) markStale(kinds ...string) {
	w.mu.Lock()
	for _, kind := range kinds {
		w.stale[kind] = true
	}
	w.mu.Unlock()
}

// stableKinds are the kinds listed in a stable order (stableList).
var stableKinds = map[string]bool{"Ingress": true, "EndpointSlice": true}

// markTouched marks kind stale and, for a kind listed in a stable order,
// records the name of the object its cache added, replaced or removed.
func (w *watcher) markTouched(kind string, obj any) {
	if !stableKinds[kind] {
		w.markStale(kind)
		return
	}
	n, _ := objectName(obj) // the zero name when unknown: the list is made afresh
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stale[kind] = true
	if w.touched == nil {
		w.touched = map[string]map[types.NamespacedName]struct{}{}
	}
	names := w.touched[kind]
	if names == nil {
		names = map[types.NamespacedName]struct{}{}
		w.touched[kind] = names
	}
	names[n] = struct{}{}
}

func (w *watcher) markDirty(kind string, obj any, initialList bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if initialList {
		kind = "" // a listing: everything
	}
	w.dirty.mark(kind, obj)
}

// onlySlicesDirty reports whether only EndpointSlices changed since the
// last takeDirty.
func (w *watcher) onlySlicesDirty() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dirty.onlySlices()
}

// takeDirty returns and forgets what changed since the last call.
func (w *watcher) takeDirty() dirtySet {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.dirty
	w.dirty = dirtySet{}
	return d
}

func (w *watcher) signal(at time.Time) {
	if !at.IsZero() {
		w.mu.Lock()
		if len(w.changes) < maxPendingChanges {
			w.changes = append(w.changes, at)
		}
		w.mu.Unlock()
	}
	select {
	case w.changed <- struct{}{}:
	default: // a rebuild is already pending; it will see this change too
	}
}

// hasSynced reports whether every informer has listed and our handlers
// have seen the listing.
func (w *watcher) hasSynced() bool {
	for _, synced := range w.handlersSynced {
		if !synced() {
			return false
		}
	}
	return true
}

// takeChanges returns and forgets the change times recorded so far.
func (w *watcher) takeChanges() []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.changes
	w.changes = nil
	return c
}

// forgetGone forgets how the slices of these Services left: a rebuild of
// their endpoints alone has dealt with them (none lost its last endpoint).
func (w *watcher) forgetGone(services map[types.NamespacedName]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for name := range services {
		delete(w.gone, serviceRef(name.Namespace, name.Name))
	}
}

// forgetGoneOf forgets how the Services and Ingresses of dirty left: a
// rebuild found nothing served depends on them.
func (w *watcher) forgetGoneOf(d dirtySet) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for n := range d.objects {
		delete(w.gone, serviceRef(n.Namespace, n.Name))
	}
	for n := range d.ingresses {
		delete(w.gone, ingressRef(n))
	}
}

// removalPending reports whether an object left since the last takeGone.
func (w *watcher) removalPending() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.gone) > 0
}

// takeGone returns and forgets how objects left since the last call.
func (w *watcher) takeGone() goneSet {
	w.mu.Lock()
	defer w.mu.Unlock()
	g := w.gone
	w.gone = nil
	return g
}

// inheritGone records, as unannounced, every object that old's caches
// have and w's do not: informers restarted on a new connection relist, and
// what the relist no longer finds was deleted while nobody watched (or
// the API server lost it).
func (w *watcher) inheritGone(old *watcher) {
	if old == nil {
		return
	}
	missing := goneSet{}
	pairs := [][2]cache.SharedIndexInformer{
		{old.ingressClasses, w.ingressClasses}, {old.ingresses, w.ingresses},
		{old.services, w.services}, {old.slices, w.slices},
	}
	old.mu.Lock()
	oldGW := old.gw
	old.mu.Unlock()
	w.mu.Lock()
	newGW := w.gw
	w.mu.Unlock()
	if oldGW != nil && newGW != nil {
		pairs = append(pairs, [2]cache.SharedIndexInformer{oldGW.classes, newGW.classes},
			[2]cache.SharedIndexInformer{oldGW.gateways, newGW.gateways}, [2]cache.SharedIndexInformer{oldGW.routes, newGW.routes})
		if oldGW.grpcRoutes != nil && newGW.grpcRoutes != nil {
			pairs = append(pairs, [2]cache.SharedIndexInformer{oldGW.grpcRoutes, newGW.grpcRoutes})
		}
	}
	for _, pair := range pairs {
		now := pair[1].GetStore()
		for _, obj := range pair[0].GetStore().List() {
			if _, exists, err := now.Get(obj); err == nil && !exists {
				if ref, ok := goneRef(obj); ok {
					missing.add(ref, false)
				}
			}
		}
	}
	if len(missing) == 0 {
		return
	}
	w.mu.Lock()
	if w.gone == nil {
		w.gone = goneSet{}
	}
	for ref := range missing {
		w.gone.add(ref, false)
	}
	w.mu.Unlock()
}

// goneRef is what the deletion guard counts an object as: EndpointSlices
// under their Service. Classes and Gateways it does not count, but how
// they left tells it how their Ingresses and HTTPRoutes did.
func goneRef(obj any) (objectRef, bool) {
	switch o := obj.(type) {
	case *networkingv1.Ingress:
		return objectRef{Kind: kindIngress, Namespace: o.Namespace, Name: o.Name}, true
	case *gatewayv1.HTTPRoute:
		return objectRef{Kind: kindHTTPRoute, Namespace: o.Namespace, Name: o.Name}, true
	case *gatewayv1.GRPCRoute:
		return objectRef{Kind: kindGRPCRoute, Namespace: o.Namespace, Name: o.Name}, true
	case *gatewayv1.Gateway:
		return objectRef{Kind: kindGateway, Namespace: o.Namespace, Name: o.Name}, true
	case *gatewayv1.GatewayClass:
		return objectRef{Kind: kindGatewayClass, Name: o.Name}, true
	case *routing.Service:
		return serviceRef(o.Namespace, o.Name), true
	case *routing.EndpointSlice:
		if svc := o.Service; svc != "" {
			return serviceRef(o.Namespace, svc), true
		}
	case *networkingv1.IngressClass:
		return objectRef{Kind: kindIngressClass, Name: o.Name}, true
	}
	return objectRef{}, false
}

// snapshot lists the caches. The objects are shared with the informers and
// must not be modified; routing.Translate only reads them. The lists are
// shared with earlier snapshots where their kind did not change: they must
// not be modified either (they are clipped, so an append copies). The
// Ingresses and EndpointSlices keep their order from one snapshot to the
// next (stableList): the translator then finds the few that changed.
func (w *watcher) snapshot() *routing.Snapshot {
	w.listMu.Lock()
	defer w.listMu.Unlock()
	w.mu.Lock()
	stale, touched := w.stale, w.touched
	w.stale, w.touched = map[string]bool{}, nil
	w.mu.Unlock()
	// A change that lands after the lock was released is listed now or,
	// its handler marking it stale again, next time.
	if stale["IngressClass"] {
		w.listed.IngressClasses = listOf[*networkingv1.IngressClass](w.ingressClasses)
	}
	if stale["Ingress"] {
		w.listed.Ingresses = w.ingressList.update(w.ingresses.GetStore(), touched["Ingress"])
	}
	if stale["Service"] {
		w.listed.Services = listOf[*routing.Service](w.services)
	}
	if stale["EndpointSlice"] {
		w.listed.EndpointSlices = w.sliceList.update(w.slices.GetStore(), touched["EndpointSlice"])
	}
	if stale[kindSecret] {
		w.listed.Secrets = listOf[*corev1.Secret](w.secrets)
	}
	w.mu.Lock()
	g := w.gw
	w.mu.Unlock()
	if g != nil {
		if stale[kindGatewayClass] {
			w.listed.GatewayClasses = listOf[*gatewayv1.GatewayClass](g.classes)
		}
		if stale[kindGateway] {
			w.listed.Gateways = listOf[*gatewayv1.Gateway](g.gateways)
		}
		if stale[kindHTTPRoute] {
			w.listed.HTTPRoutes = listOf[*gatewayv1.HTTPRoute](g.routes)
		}
		if stale[kindGRPCRoute] && g.grpcRoutes != nil {
			w.listed.GRPCRoutes = listOf[*gatewayv1.GRPCRoute](g.grpcRoutes)
		}
		if stale[kindReferenceGrant] {
			w.listed.ReferenceGrants = listOf[*gatewayv1.ReferenceGrant](g.grants)
		}
		if stale[kindNamespace] {
			w.listed.Namespaces = listOf[*corev1.Namespace](g.namespaces)
		}
	}
	s := w.listed
	return &s
}

func listOf[T any](inf cache.SharedIndexInformer) []T {
	objs := inf.GetStore().List()
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(T))
	}
	return slices.Clip(out)
}

// slicesForService returns the cached EndpointSlices of one Service.
func (w *watcher) slicesForService(namespace, service string) []*routing.EndpointSlice {
	names := w.sliceIndex.names(types.NamespacedName{Namespace: namespace, Name: service})
	out := make([]*routing.EndpointSlice, 0, len(names))
	store := w.slices.GetStore()
	for _, name := range names {
		if obj, ok, _ := store.GetByKey(namespace + "/" + name); ok {
			if es, ok := obj.(*routing.EndpointSlice); ok && es.Service == service {
				out = append(out, es)
			}
		}
	}
	return out
}

// statusOnly reports whether an update of an Ingress or a Gateway API
// object changed nothing translation reads: the spec (tracked by
// metadata.generation), labels and annotations. Our own status writes come
// back as such updates.
func statusOnly(oldObj, newObj any) bool {
	switch oldObj.(type) {
	case *networkingv1.Ingress, *gatewayv1.GatewayClass, *gatewayv1.Gateway, *gatewayv1.HTTPRoute, *gatewayv1.GRPCRoute, *gatewayv1.ReferenceGrant:
	default:
		return false
	}
	o, err1 := meta.Accessor(oldObj)
	n, err2 := meta.Accessor(newObj)
	return err1 == nil && err2 == nil && o.GetGeneration() != 0 && o.GetGeneration() == n.GetGeneration() &&
		maps.Equal(o.GetAnnotations(), n.GetAnnotations()) && maps.Equal(o.GetLabels(), n.GetLabels())
}

func resourceVersion(obj any) string {
	if m, err := meta.Accessor(obj); err == nil {
		return m.GetResourceVersion()
	}
	return ""
}

// changeTime is when the change behind obj happened, as well as we can
// tell: the EndpointSlice controller stamps the time of the Pod or Service
// change that triggered it; for everything else, now (the watch delivered
// it moments ago).
func changeTime(obj any) time.Time {
	if s, ok := obj.(*routing.EndpointSlice); ok {
		if t, err := time.Parse(time.RFC3339Nano, s.ChangeTriggerTime); err == nil {
			return t
		}
	}
	return time.Now()
}
