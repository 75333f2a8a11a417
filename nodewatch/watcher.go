package nodewatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/bulkhead-router/bulkhead/internal/logging"
)

// errorLogInterval bounds how often a failing watch is logged: the
// reflector retries every second or so at first, and an outage is one
// event for an operator, not hundreds of lines.
const errorLogInterval = time.Minute

// Options configure a Watcher. The zero value is usable.
type Options struct {
	// Log receives a line on every change of the decision and on watch
	// trouble. Nil: discarded.
	Log *slog.Logger
	// Registerer gets the package's metrics. Nil: not registered.
	Registerer prometheus.Registerer
	// OnChange, if set, is called with the new decision every time it
	// changes (never for the initial "not draining"). Calls come one at a
	// time, in order, from the informer's goroutine: keep it quick and do
	// not block.
	OnChange func(draining bool, reason string)
	// OnAddresses, if set, is called with the Node's IP addresses
	// (status.addresses, host names left out, sorted) when they are first
	// seen and every time they change, so the router can refuse endpoints
	// at its own node. A deleted or vanished Node changes nothing: the
	// last addresses stay refused. Same calling rules as OnChange.
	OnAddresses func([]netip.Addr)
}

// Watcher follows one Node and keeps the drain decision for it.
type Watcher struct {
	name     string
	log      *slog.Logger
	onChange func(bool, string)
	onAddrs  func([]netip.Addr)
	addrs    []netip.Addr // last announced; the handler goroutine only
	metrics  *metrics
	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
	handler  cache.ResourceEventHandlerRegistration

	state   atomic.Pointer[decision]
	started atomic.Bool

	errMu         sync.Mutex
	errLoggedAt   time.Time
	errSuppressed int
}

type decision struct {
	draining bool
	reason   string
}

// New returns a Watcher for the Node named nodeName. It talks to the API
// server only once Run is called.
func New(client kubernetes.Interface, nodeName string, opts Options) (*Watcher, error) {
	if client == nil {
		return nil, errors.New("nodewatch: no Kubernetes client")
	}
	if nodeName == "" {
		return nil, errors.New("nodewatch: no node name (set it from the downward API: spec.nodeName)")
	}
	if msgs := validation.IsDNS1123Subdomain(nodeName); len(msgs) > 0 {
		return nil, fmt.Errorf("nodewatch: node name %q: %s", nodeName, strings.Join(msgs, "; "))
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{name: nodeName, log: log.With(logging.KeyKind, "Node", logging.KeyName, nodeName), onChange: opts.OnChange, onAddrs: opts.OnAddresses, metrics: m}
	w.state.Store(&decision{})
	m.set(false, "")

	// The field selector keeps the watch traffic and the cache to this one
	// Node: one event per change of it, not of every node in the cluster.
	// It also makes every request authorisable by an RBAC rule naming the
	// Node (resourceNames), which integration_test.go relies on.
	w.factory = informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", nodeName).String()
		}),
		informers.WithTransform(lean))
	w.informer = w.factory.Core().V1().Nodes().Informer()
	if err := w.informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) { w.watchError(err) }); err != nil {
		return nil, fmt.Errorf("nodewatch: %w", err) // cannot happen before the informer starts
	}
	if w.handler, err = w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.observe(obj) },
		UpdateFunc: func(_, obj any) { w.observe(obj) },
		DeleteFunc: w.deleted,
	}); err != nil {
		return nil, fmt.Errorf("nodewatch: %w", err)
	}
	return w, nil
}

// Draining reports whether the router should fail readiness because its
// Node is leaving service, and why. It takes no lock: call it from the
// readiness handler as often as needed.
func (w *Watcher) Draining() (bool, string) {
	d := w.state.Load()
	return d.draining, d.reason
}

// Run watches the Node until ctx ends. It returns nil then, and an error
// only if called a second time.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("nodewatch: Run called twice")
	}
	w.factory.Start(ctx.Done())
	defer w.factory.Shutdown()
	// A Node that is forbidden never syncs; the watch error log says why.
	if cache.WaitForCacheSync(ctx.Done(), w.handler.HasSynced) {
		if _, exists, _ := w.informer.GetStore().GetByKey(w.name); exists {
			draining, reason := w.Draining()
			w.log.Info("watching own Node", "draining", draining, "reason", reason)
		} else {
			w.log.Warn("own Node not found: treating it as not draining and watching for it to appear (is the node name right?)")
		}
	}
	<-ctx.Done()
	return nil
}

// observe handles an added or updated Node.
func (w *Watcher) observe(obj any) {
	node, ok := obj.(*corev1.Node)
	if !ok || node.Name != w.name { // the field selector already ensures it; a cheap guard
		return
	}
	w.metrics.known.Set(1)
	reason, draining := DrainReason(node)
	w.decide(draining, reason)
	w.noteAddresses(node)
}

// noteAddresses announces the Node's IP addresses when they changed.
// Status updates come with every heartbeat; only a change is passed on.
func (w *Watcher) noteAddresses(node *corev1.Node) {
	addrs := NodeAddresses(node)
	if w.onAddrs == nil || (w.addrs != nil && slices.Equal(addrs, w.addrs)) {
		return
	}
	if addrs == nil {
		addrs = []netip.Addr{}
	}
	w.addrs = addrs
	w.log.Info("own Node addresses", "addresses", addrs)
	w.onAddrs(slices.Clone(addrs))
}

// NodeAddresses returns the IP addresses of a Node's status.addresses
// (InternalIP, ExternalIP and any other type that holds an IP; host names
// are skipped), sorted and without repeats.
func NodeAddresses(node *corev1.Node) []netip.Addr {
	var out []netip.Addr
	for _, a := range node.Status.Addresses {
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			out = append(out, ip.WithZone("").Unmap())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// deleted handles a deleted Node: a watch event, or a tombstone when a
// successful relist no longer contains it. Either way the API server
// answered that the Node is gone; see the package doc for why that drains.
func (w *Watcher) deleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if node, ok := obj.(*corev1.Node); ok && node.Name != w.name {
		return
	}
	w.metrics.known.Set(0)
	w.decide(true, ReasonDeleted)
}

// decide records a decision and announces it if it changed. It runs only
// on the informer's handler goroutine, so there is no race between the
// load and the store.
func (w *Watcher) decide(draining bool, reason string) {
	old := w.state.Load()
	if old.draining == draining && old.reason == reason {
		return
	}
	w.metrics.set(draining, reason) // first, so a reader who sees the new decision sees the metric too
	w.state.Store(&decision{draining: draining, reason: reason})
	switch {
	case draining && !old.draining:
		w.log.Warn("own Node is leaving service: failing readiness so the load balancer stops sending traffic here", "reason", reason)
	case draining:
		w.log.Info("own Node still leaving service, for another reason", "reason", reason, "previous_reason", old.reason)
	default:
		w.log.Info("own Node back in service: readiness no longer held down", "previous_reason", old.reason)
	}
	if w.onChange != nil {
		w.onChange(draining, reason)
	}
}

// watchError counts and logs a failed list or watch. It never touches the
// decision: an API server out of reach says nothing about the node.
func (w *Watcher) watchError(err error) {
	if errors.Is(err, io.EOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		return // a watch closed or expired in the normal course; the reflector relists
	}
	w.metrics.watchErrors.Inc()
	w.errMu.Lock()
	now := time.Now()
	if !w.errLoggedAt.IsZero() && now.Sub(w.errLoggedAt) < errorLogInterval {
		w.errSuppressed++
		w.errMu.Unlock()
		return
	}
	suppressed := w.errSuppressed
	w.errLoggedAt, w.errSuppressed = now, 0
	w.errMu.Unlock()

	draining, reason := w.Draining()
	msg := "watching own Node failed: keeping the last decision and retrying"
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		msg = "not allowed to read own Node (RBAC needs get, list and watch on nodes): keeping the last decision and retrying"
	}
	w.log.Warn(msg, logging.KeyError, err, "draining", draining, "reason", reason, "errors_not_logged", suppressed)
}

// lean keeps only what DrainReason and NodeAddresses read: a Node's status
// (images, conditions) is most of its size and changes on every
// heartbeat-driven update; its addresses are small.
func lean(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil // a tombstone passes through
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:              n.Name,
			UID:               n.UID,
			ResourceVersion:   n.ResourceVersion,
			Labels:            n.Labels,
			DeletionTimestamp: n.DeletionTimestamp,
		},
		Spec:   corev1.NodeSpec{Unschedulable: n.Spec.Unschedulable, Taints: n.Spec.Taints},
		Status: corev1.NodeStatus{Addresses: n.Status.Addresses},
	}, nil
}
