package gatewaystatus

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/util/retry"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/bulkhead-router/bulkhead/internal/logging"
	"github.com/bulkhead-router/bulkhead/routing"
)

// Metric names.
const (
	MetricLeader = "bulkhead_gateway_status_leader"
	MetricWrites = "bulkhead_gateway_status_writes_total"
)

// Kinds, as in the kind label of MetricWrites and the log lines.
const (
	KindGatewayClass = "GatewayClass"
	KindGateway      = "Gateway"
	KindHTTPRoute    = "HTTPRoute"
	KindGRPCRoute    = "GRPCRoute"
)

// writeTimeout bounds each API call of a write.
const writeTimeout = 10 * time.Second

// Options configure New.
type Options struct {
	// Client takes part in the election (coordination.k8s.io Leases).
	Client kubernetes.Interface
	// Gateway writes the status: UpdateStatus, and GET after a conflict.
	Gateway gatewayclient.Interface
	// ControllerName is the GatewayClass controllerName we implement, the
	// controllerName of our entries in HTTPRoute status.parents; it must
	// be the translation's (routing.Options.GatewayControllerName). Empty:
	// routing.DefaultGatewayControllerName.
	ControllerName string
	// LeaseNamespace and LeaseName name the election Lease; not the
	// Ingress status writer's, so that each can lead on its own.
	LeaseNamespace, LeaseName string
	// Identity is this replica's name in the election (the pod name).
	Identity string
	// GatewayClasses, Gateways, HTTPRoutes and GRPCRoutes list the cached
	// objects (the data client's informers). The writer never modifies
	// what they return. GRPCRoutes may be nil: no GRPCRoute is written.
	GatewayClasses func() []*gatewayv1.GatewayClass
	Gateways       func() []*gatewayv1.Gateway
	HTTPRoutes     func() []*gatewayv1.HTTPRoute
	GRPCRoutes     func() []*gatewayv1.GRPCRoute
	Log            *slog.Logger
	// Registerer takes the metrics; nil: not registered.
	Registerer prometheus.Registerer
	// LeaseDuration, RenewDeadline, RetryPeriod tune the election; zero:
	// 15 s, 10 s, 2 s (client-go's usual values).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// RetryInterval is how long after a failed write the leader tries
	// again (when no newer status has come first); zero: 10 s.
	RetryInterval time.Duration
	// Now is the clock of new lastTransitionTimes; nil: time.Now.
	Now func() time.Time
}

func (o Options) validate() error {
	var missing []string
	for name, ok := range map[string]bool{
		"Client": o.Client != nil, "Gateway": o.Gateway != nil,
		"LeaseNamespace": o.LeaseNamespace != "", "LeaseName": o.LeaseName != "", "Identity": o.Identity != "",
		"GatewayClasses": o.GatewayClasses != nil, "Gateways": o.Gateways != nil, "HTTPRoutes": o.HTTPRoutes != nil,
	} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("gateway status writer: options %v not set", missing)
	}
	return nil
}

// desired is one translation's status.
type desired struct {
	classes    []routing.GatewayClassStatus
	gateways   []routing.GatewayStatus
	routes     []routing.HTTPRouteStatus
	grpcRoutes []routing.GRPCRouteStatus
}

// objectKey names one object in the failure streaks.
type objectKey struct {
	kind string
	types.NamespacedName
}

// Writer writes Gateway API status while it leads.
type Writer struct {
	o      Options
	log    *slog.Logger
	in     chan *desired // size 1: the latest status replaces an unread one
	leader prometheus.Gauge
	writes *prometheus.CounterVec

	// Owned by the goroutine that leads (terms run one after another).
	latest  *desired
	failing map[objectKey]bool // the objects whose last write failed
}

// New returns a Writer; Run starts it.
func New(o Options) *Writer {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.ControllerName == "" {
		o.ControllerName = routing.DefaultGatewayControllerName
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w := &Writer{
		o:       o,
		log:     o.Log,
		in:      make(chan *desired, 1),
		failing: map[objectKey]bool{},
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricLeader,
			Help: "1 while this replica holds the Gateway API status lease and writes status."}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricWrites,
			Help: "Gateway API status writes by kind and result (set, error); a status already up to date is not written nor counted."},
			[]string{"kind", "result"}),
	}
	for _, k := range []string{KindGatewayClass, KindGateway, KindHTTPRoute, KindGRPCRoute} {
		w.writes.WithLabelValues(k, "set")
		w.writes.WithLabelValues(k, "error")
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(w.leader, w.writes)
	}
	return w
}

// SetStatus hands the writer the status of the latest translation of live
// objects (routing.Table's GatewayClasses, Gateways, HTTPRoutes,
// GRPCRoutes). It never blocks: an unread older status is replaced. The
// writer does not modify the slices. Do not call it for a table loaded from
// disk: it has no status, and nothing is written until a live translation
// arrives.
func (w *Writer) SetStatus(classes []routing.GatewayClassStatus, gateways []routing.GatewayStatus, routes []routing.HTTPRouteStatus, grpcRoutes []routing.GRPCRouteStatus) {
	d := &desired{classes: classes, gateways: gateways, routes: routes, grpcRoutes: grpcRoutes}
	for {
		select {
		case w.in <- d:
			return
		default:
			select {
			case <-w.in: // drop the stale status
			default:
			}
		}
	}
}

// Run takes part in the election until ctx ends, writing while leader. It
// returns an error only for missing options; when it returns, no write is
// under way.
func (w *Writer) Run(ctx context.Context) error {
	if err := w.o.validate(); err != nil {
		return err
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, w.o.LeaseNamespace, w.o.LeaseName,
		nil, w.o.Client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: w.o.Identity})
	if err != nil {
		return fmt.Errorf("gateway status lease: %w", err)
	}
	// The elector starts each term's callback on a goroutine of its own
	// and does not wait for it; handing the terms to one goroutine keeps
	// them from overlapping, and lets Run wait for the last.
	terms := make(chan context.Context)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case term := <-terms:
				w.lead(term)
			}
		}
	}()
	defer func() { <-done }()
	lease := w.o.LeaseNamespace + "/" + w.o.LeaseName
	// Leader election logs every failed attempt to reach its lease, every
	// RetryPeriod while the API server is away: the streak logger keeps the
	// first and the recovery.
	electionCtx := logging.NewStreak(w.log, w.o.Registerer, "gatewaystatus", logging.LeaderElectionSucceeded).Context(ctx)
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   w.o.LeaseDuration,
			RenewDeadline:   w.o.RenewDeadline,
			RetryPeriod:     w.o.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            w.o.LeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(term context.Context) {
					w.log.Info("leading Gateway API status updates", "lease", lease)
					select {
					case terms <- term:
					case <-term.Done():
					}
				},
				OnStoppedLeading: func() {
					w.log.Info("no longer leading Gateway API status updates", "lease", lease)
				},
			},
		})
		if err != nil {
			return fmt.Errorf("gateway status election: %w", err)
		}
		le.Run(electionCtx)
		// Run returns when leadership is lost (for example while the API
		// server is unreachable); stand for election again.
	}
	return nil
}

// lead writes the latest status, and every newer one, until the term ends;
// after a failed write it tries again every RetryInterval.
func (w *Writer) lead(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	w.leader.Set(1)
	defer w.leader.Set(0)
	again := time.NewTimer(w.o.RetryInterval)
	again.Stop()
	defer again.Stop()
	// A status from before this term is written at once: the term before
	// may have ended half-way, or another leader may have written since.
	select {
	case w.latest = <-w.in:
	default:
	}
	pending := w.latest != nil
	for {
		if pending {
			pending = false
			if w.reconcile(ctx, w.latest) {
				again.Stop()
			} else {
				again.Reset(w.o.RetryInterval)
			}
		}
		select {
		case <-ctx.Done():
			return
		case w.latest = <-w.in:
			pending = true
		case <-again.C:
			pending = true
		}
	}
}

// reconcile writes d to the cached objects that differ from it, and removes
// our stale entries from HTTPRoutes d no longer names. It reports whether
// every write succeeded (or the term ended, when trying again is the next
// term's business).
func (w *Writer) reconcile(ctx context.Context, d *desired) bool {
	now := metav1.NewTime(w.o.Now().Truncate(time.Second)) // what the API server keeps of it
	controller := gatewayv1.GatewayController(w.o.ControllerName)
	ok := true
	seen := map[objectKey]bool{}
	done := func(kind string, key types.NamespacedName, written bool, err error) {
		k := objectKey{kind, key}
		seen[k] = true
		ok = w.record(ctx, k, written, err) && ok
	}

	classes := map[string]*gatewayv1.GatewayClass{}
	for _, c := range w.o.GatewayClasses() {
		classes[c.Name] = c
	}
	for _, want := range d.classes {
		c := classes[want.Name]
		if c == nil || ctx.Err() != nil {
			continue // gone since the translation
		}
		written, err := writeStatus(ctx, c,
			func(ctx context.Context) (*gatewayv1.GatewayClass, error) {
				return w.o.Gateway.GatewayV1().GatewayClasses().Get(ctx, c.Name, metav1.GetOptions{})
			},
			func(have *gatewayv1.GatewayClass) (*gatewayv1.GatewayClass, bool) {
				st := mergeClass(have.Status, want.Status, now)
				if equality.Semantic.DeepEqual(have.Status, st) {
					return nil, false
				}
				out := have.DeepCopy()
				out.Status = st
				return out, true
			},
			func(ctx context.Context, c *gatewayv1.GatewayClass) error {
				_, err := w.o.Gateway.GatewayV1().GatewayClasses().UpdateStatus(ctx, c, metav1.UpdateOptions{})
				return err
			})
		done(KindGatewayClass, types.NamespacedName{Name: c.Name}, written, err)
	}

	gateways := map[types.NamespacedName]*gatewayv1.Gateway{}
	for _, g := range w.o.Gateways() {
		gateways[types.NamespacedName{Namespace: g.Namespace, Name: g.Name}] = g
	}
	for _, want := range d.gateways {
		g := gateways[want.Gateway]
		if g == nil || ctx.Err() != nil {
			continue
		}
		client := w.o.Gateway.GatewayV1().Gateways(g.Namespace)
		written, err := writeStatus(ctx, g,
			func(ctx context.Context) (*gatewayv1.Gateway, error) {
				return client.Get(ctx, g.Name, metav1.GetOptions{})
			},
			func(have *gatewayv1.Gateway) (*gatewayv1.Gateway, bool) {
				st := mergeGateway(have.Status, want.Status, now)
				if equality.Semantic.DeepEqual(have.Status, st) {
					return nil, false
				}
				out := have.DeepCopy()
				out.Status = st
				return out, true
			},
			func(ctx context.Context, g *gatewayv1.Gateway) error {
				_, err := client.UpdateStatus(ctx, g, metav1.UpdateOptions{})
				return err
			})
		done(KindGateway, want.Gateway, written, err)
	}

	httpWant := make(map[types.NamespacedName][]gatewayv1.RouteParentStatus, len(d.routes))
	for _, r := range d.routes {
		httpWant[r.Route] = r.Parents
	}
	reconcileRoutes(ctx, httpWant, controller, now, done, routeAccess[*gatewayv1.HTTPRoute]{
		kind: KindHTTPRoute, list: w.o.HTTPRoutes,
		parents: func(r *gatewayv1.HTTPRoute) []gatewayv1.RouteParentStatus { return r.Status.Parents },
		withParents: func(r *gatewayv1.HTTPRoute, p []gatewayv1.RouteParentStatus) *gatewayv1.HTTPRoute {
			out := r.DeepCopy()
			out.Status.Parents = p
			return out
		},
		get: func(ctx context.Context, ns, name string) (*gatewayv1.HTTPRoute, error) {
			return w.o.Gateway.GatewayV1().HTTPRoutes(ns).Get(ctx, name, metav1.GetOptions{})
		},
		update: func(ctx context.Context, r *gatewayv1.HTTPRoute) error {
			_, err := w.o.Gateway.GatewayV1().HTTPRoutes(r.Namespace).UpdateStatus(ctx, r, metav1.UpdateOptions{})
			return err
		},
	})
	if w.o.GRPCRoutes != nil {
		grpcWant := make(map[types.NamespacedName][]gatewayv1.RouteParentStatus, len(d.grpcRoutes))
		for _, r := range d.grpcRoutes {
			grpcWant[r.Route] = r.Parents
		}
		reconcileRoutes(ctx, grpcWant, controller, now, done, routeAccess[*gatewayv1.GRPCRoute]{
			kind: KindGRPCRoute, list: w.o.GRPCRoutes,
			parents: func(r *gatewayv1.GRPCRoute) []gatewayv1.RouteParentStatus { return r.Status.Parents },
			withParents: func(r *gatewayv1.GRPCRoute, p []gatewayv1.RouteParentStatus) *gatewayv1.GRPCRoute {
				out := r.DeepCopy()
				out.Status.Parents = p
				return out
			},
			get: func(ctx context.Context, ns, name string) (*gatewayv1.GRPCRoute, error) {
				return w.o.Gateway.GatewayV1().GRPCRoutes(ns).Get(ctx, name, metav1.GetOptions{})
			},
			update: func(ctx context.Context, r *gatewayv1.GRPCRoute) error {
				_, err := w.o.Gateway.GatewayV1().GRPCRoutes(r.Namespace).UpdateStatus(ctx, r, metav1.UpdateOptions{})
				return err
			},
		})
	}

	for k := range w.failing {
		if !seen[k] {
			delete(w.failing, k) // deleted, or no longer ours
		}
	}
	return ok
}

// routeAccess is what reconcileRoutes needs of one route kind: the
// cached objects, their status.parents, and the API calls.
type routeAccess[T metav1.Object] struct {
	kind        string
	list        func() []T
	parents     func(T) []gatewayv1.RouteParentStatus
	withParents func(T, []gatewayv1.RouteParentStatus) T // a copy
	get         func(ctx context.Context, namespace, name string) (T, error)
	update      func(context.Context, T) error
}

// reconcileRoutes writes our entries of status.parents to the cached routes
// of one kind that differ from want, and removes ours from routes want no
// longer names.
func reconcileRoutes[T metav1.Object](ctx context.Context, want map[types.NamespacedName][]gatewayv1.RouteParentStatus,
	controller gatewayv1.GatewayController, now metav1.Time, done func(string, types.NamespacedName, bool, error), a routeAccess[T]) {
	for _, r := range a.list() {
		if ctx.Err() != nil {
			return
		}
		key := types.NamespacedName{Namespace: r.GetNamespace(), Name: r.GetName()}
		parents, listed := want[key]
		// The generation the translation saw; for a route it no longer
		// lists, the cache's (the same informers fed it).
		known := r.GetGeneration()
		if listed {
			known = 0
			for _, p := range parents {
				known = max(known, generation(p.Conditions))
			}
		} else if !hasEntries(a.parents(r), controller) {
			continue // neither ours now nor before: not ours to touch
		}
		written, err := writeStatus(ctx, r,
			func(ctx context.Context) (T, error) { return a.get(ctx, key.Namespace, key.Name) },
			func(have T) (T, bool) {
				merged := mergeParents(a.parents(have), parents, controller, known, now)
				if equality.Semantic.DeepEqual(a.parents(have), merged) {
					var zero T
					return zero, false
				}
				return a.withParents(have, merged), true
			},
			a.update)
		done(a.kind, key, written, err)
	}
}

func hasEntries(parents []gatewayv1.RouteParentStatus, controller gatewayv1.GatewayController) bool {
	for _, p := range parents {
		if p.ControllerName == controller {
			return true
		}
	}
	return false
}

// record counts and logs one object's outcome, and reports whether it
// succeeded. A failure is logged at the start of a streak of failures of
// that object, and its end, not on every try in between: an API server
// down or a missing RBAC permission would otherwise log every
// RetryInterval.
func (w *Writer) record(ctx context.Context, k objectKey, written bool, err error) bool {
	attrs := []any{logging.KeyKind, k.kind, logging.KeyName, k.Name}
	if k.Namespace != "" {
		attrs = append(attrs, logging.KeyNamespace, k.Namespace)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		return true // the term ended under the write: not a failure of the write
	case err != nil:
		w.writes.WithLabelValues(k.kind, "error").Inc()
		if !w.failing[k] {
			w.failing[k] = true
			w.log.Warn("writing Gateway API status failed; trying again without logging each failure",
				append(attrs, logging.KeyError, err)...)
		}
		return false
	}
	if written {
		w.writes.WithLabelValues(k.kind, "set").Inc()
		w.log.Debug("Gateway API status set", attrs...)
	}
	if w.failing[k] {
		delete(w.failing, k)
		w.log.Info("Gateway API status up to date again after failed writes", attrs...)
	}
	return true
}

// writeStatus writes next(obj) when next reports a difference: first over
// the cached copy, which costs no read, and after a conflict over a fresh
// GET, so that a concurrent change (another controller's parent entry, a
// newer spec) is merged with, never overwritten by the cache's copy. An
// object deleted meanwhile is no error.
func writeStatus[T any](ctx context.Context, cached T,
	get func(context.Context) (T, error),
	next func(T) (T, bool),
	update func(context.Context, T) error,
) (written bool, err error) {
	obj, first := cached, true
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ctx, cancel := context.WithTimeout(ctx, writeTimeout)
		defer cancel()
		if !first {
			var err error
			if obj, err = get(ctx); err != nil {
				return err
			}
		}
		first = false
		out, changed := next(obj)
		if !changed {
			return nil
		}
		if err := update(ctx, out); err != nil {
			return err
		}
		written = true
		return nil
	})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return written, err
}
