package ingressstatus

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/util/retry"

	"github.com/bulkhead-router/bulkhead/internal/logging"
)

// Metric names.
const (
	MetricLeader       = "bulkhead_status_leader"
	MetricStatusWrites = "bulkhead_status_writes_total"
)

// Options configure New.
type Options struct {
	Client kubernetes.Interface
	// Addresses are the IPs and host names to publish; the writer does
	// nothing (and takes no lease) when it is empty.
	Addresses []string
	// LeaseNamespace and LeaseName name the election Lease.
	LeaseNamespace, LeaseName string
	// Identity is this replica's name in the election (the pod name).
	Identity string
	// Ingresses lists the cached Ingresses (the data client's informer).
	Ingresses func() []*networkingv1.Ingress
	Log       *slog.Logger
	// Registerer takes the metrics; nil: not registered.
	Registerer prometheus.Registerer
	// LeaseDuration, RenewDeadline, RetryPeriod tune the election; zero:
	// 15 s, 10 s, 2 s (client-go's usual values).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// RetryInterval is how long after a failed write the leader tries
	// again when no newer set has come; zero: 10 s.
	RetryInterval time.Duration
}

// Writer reconciles Ingress status while it leads.
type Writer struct {
	o       Options
	log     *slog.Logger
	desired []networkingv1.IngressLoadBalancerIngress
	// served holds the latest set, sorted (see SetServed); size 1: the
	// latest set replaces an unread one.
	served chan []types.NamespacedName
	// last is the latest set heard, once heard; only the leading goroutine
	// (one term at a time) uses them.
	last   []types.NamespacedName
	heard  bool
	leader prometheus.Gauge
	writes *prometheus.CounterVec
}

// New returns a Writer; Run starts it.
func New(o Options) *Writer {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = 10 * time.Second
	}
	w := &Writer{
		o:       o,
		log:     o.Log,
		desired: loadBalancerIngress(o.Addresses),
		served:  make(chan []types.NamespacedName, 1),
		leader:  prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricLeader, Help: "1 while this replica holds the Ingress status lease and writes status."}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricStatusWrites,
			Help: "Ingress status writes by result (set, removed, error)."}, []string{"result"}),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(w.leader, w.writes)
	}
	return w
}

func loadBalancerIngress(addresses []string) []networkingv1.IngressLoadBalancerIngress {
	var out []networkingv1.IngressLoadBalancerIngress
	for _, a := range addresses {
		if net.ParseIP(a) != nil {
			out = append(out, networkingv1.IngressLoadBalancerIngress{IP: a})
		} else {
			out = append(out, networkingv1.IngressLoadBalancerIngress{Hostname: a})
		}
	}
	return out
}

// SetServed hands the writer the Ingresses the current table serves. It
// never blocks: an unread older set is replaced. The writer keeps served
// as it is, without a copy (it is the table's, 10,000 names at 10,000
// Ingresses; a map of them was 0.5 MB more), so it must not be modified
// afterwards; one not sorted by namespace and name, as
// routing.Table.Served is, is sorted in a copy. Without addresses to
// publish it is dropped: nobody would read it.
func (w *Writer) SetServed(served []types.NamespacedName) {
	if len(w.desired) == 0 {
		return
	}
	set := served
	if !slices.IsSortedFunc(set, compareNames) {
		set = slices.SortedFunc(slices.Values(served), compareNames)
	}
	for {
		select {
		case w.served <- set:
			return
		default:
			select {
			case <-w.served: // drop the stale set
			default:
			}
		}
	}
}

// Run takes part in the election until ctx ends, reconciling while leader.
func (w *Writer) Run(ctx context.Context) error {
	if len(w.desired) == 0 {
		return nil
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, w.o.LeaseNamespace, w.o.LeaseName,
		nil, w.o.Client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: w.o.Identity})
	if err != nil {
		return fmt.Errorf("status lease: %w", err)
	}
	// Leader election logs every failed attempt to reach its lease, every
	// RetryPeriod while the API server is away: the streak logger keeps the
	// first and the recovery.
	electionCtx := logging.NewStreak(w.log, w.o.Registerer, "ingressstatus", logging.LeaderElectionSucceeded).Context(ctx)
	for ctx.Err() == nil {
		leaderelection.RunOrDie(electionCtx, leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   w.o.LeaseDuration,
			RenewDeadline:   w.o.RenewDeadline,
			RetryPeriod:     w.o.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            w.o.LeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					w.leader.Set(1)
					w.log.Info("leading Ingress status updates", "lease", w.o.LeaseNamespace+"/"+w.o.LeaseName)
					w.lead(ctx)
				},
				OnStoppedLeading: func() {
					w.leader.Set(0)
					w.log.Info("no longer leading Ingress status updates")
				},
			},
		})
		// RunOrDie returns when leadership is lost (for example while the
		// API server is unreachable); stand for election again.
	}
	return nil
}

// lead reconciles on every new served set until leadership ends.
// lead reconciles while this replica leads: at once with the last set it
// heard (a replica taking over from a lost leader must not wait for the
// next table change), on every new set, and again after a failed write.
func (w *Writer) lead(ctx context.Context) {
	var retry <-chan time.Time
	if w.heard && !w.reconcile(ctx, w.last) {
		retry = time.After(w.o.RetryInterval)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case w.last = <-w.served:
			w.heard = true
		case <-retry:
		}
		retry = nil
		if !w.reconcile(ctx, w.last) {
			retry = time.After(w.o.RetryInterval)
		}
	}
}

// reconcile writes the status of every cached Ingress that needs it, and
// reports whether every write succeeded. served is sorted (compareNames).
func (w *Writer) reconcile(ctx context.Context, served []types.NamespacedName) bool {
	ok := true
	for _, ing := range w.o.Ingresses() {
		key := types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}
		current := ing.Status.LoadBalancer.Ingress
		var want []networkingv1.IngressLoadBalancerIngress
		_, isServed := slices.BinarySearchFunc(served, key, compareNames)
		switch {
		case isServed:
			want = w.desired
		case sameStatus(current, w.desired):
			want = nil // ours, no longer served: remove
		default:
			continue // not ours to touch
		}
		if sameStatus(current, want) {
			continue
		}
		result := "set"
		if want == nil {
			result = "removed"
		}
		if err := w.write(ctx, key, want); err != nil {
			w.writes.WithLabelValues("error").Inc()
			w.log.Warn("writing Ingress status failed; retrying", logging.KeyNamespace, key.Namespace, logging.KeyName, key.Name,
				"retry_in", w.o.RetryInterval, logging.KeyError, err)
			ok = false
			continue
		}
		w.writes.WithLabelValues(result).Inc()
		w.log.Debug("Ingress status "+result, logging.KeyNamespace, key.Namespace, logging.KeyName, key.Name)
	}
	return ok
}

// write sets the status from a fresh read, so a concurrent change to the
// object is never overwritten with a stale copy from the cache.
func (w *Writer) write(ctx context.Context, key types.NamespacedName, want []networkingv1.IngressLoadBalancerIngress) error {
	client := w.o.Client.NetworkingV1().Ingresses(key.Namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		ing, err := client.Get(ctx, key.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if sameStatus(ing.Status.LoadBalancer.Ingress, want) {
			return nil
		}
		ing = ing.DeepCopy()
		ing.Status.LoadBalancer.Ingress = want
		_, err = client.UpdateStatus(ctx, ing, metav1.UpdateOptions{})
		return err
	})
}

// compareNames orders by namespace, then name, as routing.Table.Served.
func compareNames(a, b types.NamespacedName) int {
	return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
}

// sameStatus compares load balancer entries, treating nil and empty alike.
func sameStatus(a, b []networkingv1.IngressLoadBalancerIngress) bool {
	return equality.Semantic.DeepEqual(a, b)
}
