package gatewaystatus_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	"sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"

	"github.com/bulkhead-router/bulkhead/gatewaystatus"
	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	"github.com/bulkhead-router/bulkhead/internal/gatewaycrds"
	"github.com/bulkhead-router/bulkhead/routing"
)

const (
	ns        = "default"
	leaseName = "bulkhead-gateway-status"
	other     = gatewayv1.GatewayController("example.com/other-controller")
)

// replica is one writer taking part in the election.
type replica struct {
	w    *gatewaystatus.Writer
	reg  *prometheus.Registry
	stop context.CancelFunc
	done chan struct{}
	err  error
}

func (r *replica) leader(t *testing.T) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == gatewaystatus.MetricLeader {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s", gatewaystatus.MetricLeader)
	return 0
}

func (r *replica) writes(t *testing.T, kind, result string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != gatewaystatus.MetricWrites {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["kind"] == kind && l["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestAgainstARealAPIServer writes status through a real kube-apiserver
// with the Gateway API CRDs installed (their schemas validate what is
// written: a null status.parents or a condition without a time is
// refused there, not by the fake), from the translation of the objects
// the informers hold, the way bulkhead does: condition times kept and
// changed as the status changes, another controller's parent entry kept,
// our stale entries removed, and a second replica taking over when the
// first gives up the lease.
func TestAgainstARealAPIServer(t *testing.T) {
	cp := controlplane.ForTest(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if _, err := gatewaycrds.Install(ctx, cp.RESTConfig()); err != nil {
		t.Fatal(err)
	}
	gwc := versioned.NewForConfigOrDie(cp.RESTConfig())
	api := gwc.GatewayV1()

	// Objects: our class and Gateway, a class of another controller, and
	// two routes, web also attached to another controller's Gateway.
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(api.GatewayClasses().Create(ctx, &gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "bulkhead"},
		Spec: gatewayv1.GatewayClassSpec{ControllerName: routing.DefaultGatewayControllerName}}, metav1.CreateOptions{}))
	must(api.GatewayClasses().Create(ctx, &gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "theirs"},
		Spec: gatewayv1.GatewayClassSpec{ControllerName: other}}, metav1.CreateOptions{}))
	must(api.Gateways(ns).Create(ctx, &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "gw"},
		Spec: gatewayv1.GatewaySpec{GatewayClassName: "bulkhead", Listeners: []gatewayv1.Listener{{Name: "http", Protocol: gatewayv1.HTTPProtocolType, Port: 80}}}},
		metav1.CreateOptions{}))
	httpRoute := func(name string, parents ...string) *gatewayv1.HTTPRoute {
		r := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: name}}
		for _, p := range parents {
			r.Spec.ParentRefs = append(r.Spec.ParentRefs, gatewayv1.ParentReference{Name: gatewayv1.ObjectName(p)})
		}
		r.Spec.Rules = []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
			BackendObjectReference: gatewayv1.BackendObjectReference{Name: "echo", Port: new(gatewayv1.PortNumber(80))}}}}}}
		return r
	}
	must(api.HTTPRoutes(ns).Create(ctx, httpRoute("web", "gw", "other-gw"), metav1.CreateOptions{}))
	must(api.HTTPRoutes(ns).Create(ctx, httpRoute("solo", "gw"), metav1.CreateOptions{}))
	// The other controller reports on web first.
	web, err := api.HTTPRoutes(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	web.Status.Parents = []gatewayv1.RouteParentStatus{{ParentRef: web.Spec.ParentRefs[1], ControllerName: other,
		Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", Message: "theirs",
			ObservedGeneration: 1, LastTransitionTime: metav1.NewTime(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))}}}}
	if web, err = api.HTTPRoutes(ns).UpdateStatus(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	otherEntry := web.Status.Parents[0]

	// The informer caches the writers list, and the translation reads.
	stopInformers := make(chan struct{})
	factory := externalversions.NewSharedInformerFactory(gwc, 0)
	classes := factory.Gateway().V1().GatewayClasses().Lister()
	gateways := factory.Gateway().V1().Gateways().Lister()
	routes := factory.Gateway().V1().HTTPRoutes().Lister()
	factory.Start(stopInformers)
	defer func() { close(stopInformers); factory.Shutdown() }()
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("informer %v not synced", typ)
		}
	}
	listClasses := func() []*gatewayv1.GatewayClass { l, _ := classes.List(labels.Everything()); return l }
	listGateways := func() []*gatewayv1.Gateway { l, _ := gateways.List(labels.Everything()); return l }
	listRoutes := func() []*gatewayv1.HTTPRoute { l, _ := routes.HTTPRoutes(ns).List(labels.Everything()); return l }
	translate := func(w *gatewaystatus.Writer, publish ...string) {
		tbl := routing.Translate(&routing.Snapshot{GatewayClasses: listClasses(), Gateways: listGateways(), HTTPRoutes: listRoutes()},
			routing.Options{GatewayPorts: []int32{80}, PublishAddresses: publish})
		w.SetStatus(tbl.GatewayClasses, tbl.Gateways, tbl.HTTPRoutes, tbl.GRPCRoutes)
	}

	var clock atomic.Int64 // unix seconds of the writers' now
	t1 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock.Store(t1.Unix())
	start := func(identity string) *replica {
		r := &replica{reg: prometheus.NewRegistry(), done: make(chan struct{})}
		r.w = gatewaystatus.New(gatewaystatus.Options{
			Client: cp.Client(), Gateway: gwc,
			LeaseNamespace: ns, LeaseName: leaseName, Identity: identity,
			GatewayClasses: listClasses, Gateways: listGateways, HTTPRoutes: listRoutes,
			Registerer:    r.reg,
			LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 200 * time.Millisecond,
			RetryInterval: 200 * time.Millisecond,
			Now:           func() time.Time { return time.Unix(clock.Load(), 0) },
		})
		var runCtx context.Context
		runCtx, r.stop = context.WithCancel(ctx)
		go func() { defer close(r.done); r.err = r.w.Run(runCtx) }()
		t.Cleanup(func() { r.stop(); <-r.done })
		return r
	}
	a := start("replica-a")

	// await polls check against the API server until it passes.
	await := func(what string, check func() error) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := check()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				t.Fatalf("%s: %v (%v)", what, err, ctx.Err())
			}
		}
	}
	condition := func(cs []metav1.Condition, typ string) (metav1.Condition, error) {
		for _, c := range cs {
			if c.Type == typ {
				return c, nil
			}
		}
		return metav1.Condition{}, fmt.Errorf("no %s condition in %+v", typ, cs)
	}
	// has checks the condition typ has status st and was last changed at.
	has := func(cs []metav1.Condition, typ string, st metav1.ConditionStatus, at time.Time) error {
		c, err := condition(cs, typ)
		if err != nil {
			return err
		}
		if c.Status != st || !c.LastTransitionTime.Time.Equal(at) {
			return fmt.Errorf("%s is %s since %v (%s), want %s since %v", typ, c.Status, c.LastTransitionTime.UTC(), c.Reason, st, at)
		}
		return nil
	}
	ourEntry := func(r *gatewayv1.HTTPRoute) []gatewayv1.RouteParentStatus {
		var out []gatewayv1.RouteParentStatus
		for _, p := range r.Status.Parents {
			if p.ControllerName == routing.DefaultGatewayControllerName {
				out = append(out, p)
			}
		}
		return out
	}
	otherKept := func(r *gatewayv1.HTTPRoute) error {
		if len(r.Status.Parents) == 0 || !equality.Semantic.DeepEqual(r.Status.Parents[0], otherEntry) {
			return fmt.Errorf("the other controller's entry %+v is not first and unchanged in %+v", otherEntry, r.Status.Parents)
		}
		return nil
	}

	// 1. Everything new: every condition changes (from the CRD's default
	// Unknown/Pending or from nothing) at t1.
	translate(a.w)
	await("first status", func() error {
		c, err := api.GatewayClasses().Get(ctx, "bulkhead", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := has(c.Status.Conditions, "Accepted", metav1.ConditionTrue, t1); err != nil {
			return fmt.Errorf("GatewayClass: %w", err)
		}
		g, err := api.Gateways(ns).Get(ctx, "gw", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := has(g.Status.Conditions, "Accepted", metav1.ConditionTrue, t1); err != nil {
			return fmt.Errorf("Gateway: %w", err)
		}
		if err := has(g.Status.Conditions, "Programmed", metav1.ConditionFalse, t1); err != nil {
			return fmt.Errorf("Gateway without publish addresses: %w", err)
		}
		if len(g.Status.Listeners) != 1 || g.Status.Listeners[0].AttachedRoutes != 2 {
			return fmt.Errorf("Gateway listeners %+v, want http with 2 routes attached", g.Status.Listeners)
		}
		for _, name := range []string{"web", "solo"} {
			r, err := api.HTTPRoutes(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			ours := ourEntry(r)
			if len(ours) != 1 {
				return fmt.Errorf("route %s: our entries %+v", name, ours)
			}
			if err := has(ours[0].Conditions, "Accepted", metav1.ConditionTrue, t1); err != nil {
				return fmt.Errorf("route %s: %w", name, err)
			}
		}
		return nil
	})
	if got := a.leader(t); got != 1 {
		t.Errorf("leader gauge %v while writing", got)
	}
	web, err = api.HTTPRoutes(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := otherKept(web); err != nil {
		t.Error(err)
	}
	theirs, err := api.GatewayClasses().Get(ctx, "theirs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := condition(theirs.Status.Conditions, "Accepted"); err != nil || c.Status != metav1.ConditionUnknown {
		t.Errorf("another controller's GatewayClass was written: %+v", theirs.Status.Conditions)
	}

	// 2. A publish address an hour later: Programmed turns True at t2,
	// everything whose status stays keeps t1, and the GatewayClass is not
	// written again.
	t2 := t1.Add(time.Hour)
	clock.Store(t2.Unix())
	translate(a.w, "192.0.2.10")
	await("Programmed", func() error {
		g, err := api.Gateways(ns).Get(ctx, "gw", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := has(g.Status.Conditions, "Programmed", metav1.ConditionTrue, t2); err != nil {
			return err
		}
		if len(g.Status.Addresses) != 1 || g.Status.Addresses[0].Value != "192.0.2.10" {
			return fmt.Errorf("addresses %+v", g.Status.Addresses)
		}
		return nil
	})
	g, err := api.Gateways(ns).Get(ctx, "gw", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := has(g.Status.Conditions, "Accepted", metav1.ConditionTrue, t1); err != nil {
		t.Errorf("Gateway Accepted did not change, its time must not: %v", err)
	}
	web, err = api.HTTPRoutes(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ours := ourEntry(web); len(ours) != 1 || has(ours[0].Conditions, "Accepted", metav1.ConditionTrue, t1) != nil {
		t.Errorf("route web: our entry %+v, want Accepted since t1", ours)
	}
	if err := otherKept(web); err != nil {
		t.Error(err)
	}
	if got := a.writes(t, gatewaystatus.KindGatewayClass, "set"); got != 1 {
		t.Errorf("GatewayClass written %v times, want once (its status did not change)", got)
	}

	// 3. Both routes leave our Gateway: our entries go, the other
	// controller's stays, and solo is attached to nothing (an empty list:
	// status.parents is required).
	for _, name := range []string{"web", "solo"} {
		r, err := api.HTTPRoutes(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r.Spec.ParentRefs = []gatewayv1.ParentReference{{Name: "other-gw"}}
		if _, err := api.HTTPRoutes(ns).Update(ctx, r, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	await("the informers see the new parentRefs", func() error {
		for _, name := range []string{"web", "solo"} {
			if r, err := routes.HTTPRoutes(ns).Get(name); err != nil || r.Generation != 2 {
				return fmt.Errorf("route %s not at generation 2 in the cache (%v)", name, err)
			}
		}
		return nil
	})
	translate(a.w, "192.0.2.10")
	await("our stale entries removed", func() error {
		web, err := api.HTTPRoutes(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := otherKept(web); err != nil {
			return err
		}
		if len(web.Status.Parents) != 1 {
			return fmt.Errorf("route web parents %+v, want the other controller's only", web.Status.Parents)
		}
		solo, err := api.HTTPRoutes(ns).Get(ctx, "solo", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(solo.Status.Parents) != 0 {
			return fmt.Errorf("route solo parents %+v, want none", solo.Status.Parents)
		}
		return nil
	})
	for _, kind := range []string{gatewaystatus.KindGatewayClass, gatewaystatus.KindGateway, gatewaystatus.KindHTTPRoute} {
		if got := a.writes(t, kind, "error"); got != 0 {
			t.Errorf("%s write errors: %v", kind, got)
		}
	}

	// 4. A second replica waits while the first holds the lease, and takes
	// over, writing the status it was given before, when the first stops.
	b := start("replica-b")
	translate(b.w, "192.0.2.20")
	holder := func() string {
		l, err := cp.Client().CoordinationV1().Leases(ns).Get(ctx, leaseName, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	if h := holder(); h != "replica-a" {
		t.Fatalf("lease held by %q, want replica-a", h)
	}
	if got := b.leader(t); got != 0 {
		t.Errorf("replica-b leader gauge %v while replica-a holds the lease", got)
	}
	a.stop()
	<-a.done
	if a.err != nil {
		t.Fatal(a.err)
	}
	if got := a.leader(t); got != 0 {
		t.Errorf("replica-a leader gauge %v after it stopped", got)
	}
	await("replica-b writes", func() error {
		g, err := api.Gateways(ns).Get(ctx, "gw", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(g.Status.Addresses) != 1 || g.Status.Addresses[0].Value != "192.0.2.20" {
			return fmt.Errorf("addresses %+v (lease holder %q)", g.Status.Addresses, holder())
		}
		return nil
	})
	if h := holder(); h != "replica-b" {
		t.Errorf("lease held by %q, want replica-b", h)
	}
	if got := b.leader(t); got != 1 {
		t.Errorf("replica-b leader gauge %v while writing", got)
	}
}
