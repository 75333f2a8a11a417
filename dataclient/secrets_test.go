package dataclient

import (
	"bytes"
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/bulkhead-router/bulkhead/internal/testcerts"
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
