package dataclient

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/bulkhead-router/bulkhead/internal/testcerts"
	"github.com/bulkhead-router/bulkhead/routing"
)

func tlsSecret(t *testing.T, name string, hosts ...string) *corev1.Secret {
	crt, key := testcerts.SelfSigned(t, hosts...)
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key, "ca.crt": []byte("dropped")}}
}

// The TLS Secrets are watched without the Gateway API: an Ingress's
// spec.tls Secret becomes its certificate, and its renewal the next
// table's. A change of a Secret nothing served names is no rebuild.
func TestIngressSecretsWatched(t *testing.T) {
	ing := ingress("a", "a.example", "a")
	ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"a.example"}, SecretName: "a-tls"}}
	c, cs, _ := started(t, ingressClass(), service("a"), slice("a", "10.0.0.1"), ing)
	awaitLoadAll(t, c)
	ctx := context.Background()
	cert := func() []byte {
		tab, _ := c.Table()
		if len(tab.Certificates) != 1 {
			return nil
		}
		return tab.Certificates[0].Cert
	}
	first := tlsSecret(t, "a-tls", "a.example")
	if _, err := cs.CoreV1().Secrets("ns").Create(ctx, first, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	await(t, "the Secret's certificate in the table", func() bool { return bytes.Equal(cert(), first.Data[corev1.TLSCertKey]) })
	obj, ok, _ := c.currentWatcher().secrets.GetIndexer().GetByKey("ns/a-tls")
	if !ok || len(obj.(*corev1.Secret).Data) != 2 {
		t.Fatalf("cached Secret %+v: want tls.crt and tls.key alone", obj)
	}

	c.mu.Lock()
	cur := c.current
	c.mu.Unlock()
	w := c.currentWatcher()
	name := func(n string) map[types.NamespacedName]bool {
		return map[types.NamespacedName]bool{{Namespace: "ns", Name: n}: true}
	}
	for _, tc := range []struct {
		what   string
		dirty  dirtySet
		unused bool
	}{
		{"the served Ingress's Secret", dirtySet{secrets: name("a-tls")}, false},
		{"a Secret nothing names", dirtySet{secrets: name("other-tls")}, true},
		{"a Secret of that name in another namespace", dirtySet{secrets: map[types.NamespacedName]bool{{Namespace: "elsewhere", Name: "a-tls"}: true}}, true},
	} {
		if got := c.unused(w, cur, tc.dirty); got != tc.unused {
			t.Errorf("%s: unused = %v, want %v", tc.what, got, tc.unused)
		}
	}
	if (&dirtySet{secrets: name("a-tls")}).onlySlices() {
		t.Error("a Secret's change counted as a change of EndpointSlices only")
	}

	full := func() float64 { return testutil.ToFloat64(c.metrics.rebuilds.WithLabelValues("full")) }
	adds := func() float64 { return testutil.ToFloat64(c.metrics.events.WithLabelValues(kindSecret, "add")) }
	before, seen := full(), adds()
	if _, err := cs.CoreV1().Secrets("ns").Create(ctx, tlsSecret(t, "other-tls", "other.example"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	await(t, "the other Secret seen", func() bool { return adds() > seen })
	renewed := tlsSecret(t, "a-tls", "a.example")
	if _, err := cs.CoreV1().Secrets("ns").Update(ctx, renewed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	await(t, "the renewed certificate in the table", func() bool { return bytes.Equal(cert(), renewed.Data[corev1.TLSCertKey]) })
	if got := full() - before; got != 1 {
		t.Fatalf("%v full rebuilds for an unrelated Secret and a renewal, want 1", got)
	}
}

// A role without the Secrets rule costs TLS, not readiness: the refused
// list is not a lost API server, the informer counts as synced, and the
// Ingresses are served (their certificates reported not found).
func TestSecretsForbiddenStillSyncs(t *testing.T) {
	ing := ingress("a", "a.example", "a")
	ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"a.example"}, SecretName: "a-tls"}}
	cs := fake.NewClientset()
	ctx := context.Background()
	for _, create := range []func() error{
		func() error {
			_, err := cs.NetworkingV1().IngressClasses().Create(ctx, ingressClass(), metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().Services("ns").Create(ctx, service("a"), metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.NetworkingV1().Ingresses("ns").Create(ctx, ing, metav1.CreateOptions{})
			return err
		},
	} {
		if err := create(); err != nil {
			t.Fatal(err)
		}
	}
	var lists atomic.Int64
	cs.PrependReactor("list", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		lists.Add(1)
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "", errors.New("RBAC: no rule"))
	})
	c := New(Options{Client: cs, Registerer: prometheus.NewRegistry(), HoldOff: time.Millisecond, MaxDelay: 5 * time.Millisecond})
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); c.Close(); <-done })
	if got := ids(awaitLoadAll(t, c)); len(got) != 1 {
		t.Fatalf("routes with Secrets forbidden: %v", got)
	}
	if lists.Load() == 0 {
		t.Fatal("the Secrets were never listed: the test tests nothing")
	}
	tab, _ := c.Table()
	found := false
	for _, p := range tab.Problems {
		found = found || p.Reason == routing.InvalidCertificate && p.Name == "a"
	}
	if !found {
		t.Errorf("no InvalidCertificate problem for Ingress a: %+v", tab.Problems)
	}
}
