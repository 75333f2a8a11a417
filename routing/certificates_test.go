package routing

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/bulkhead-router/bulkhead/internal/testcerts"
)

// The spec's listener hostname matching, for CertificateFor and the index
// alike: exact beats wildcard, a longer wildcard a shorter one, a wildcard
// matches one or more labels but not its suffix itself, a listener without
// hostname matches any name and no name; ports are kept apart.
func TestCertificateFor(t *testing.T) {
	cert := func(port int32, host, listener string) Certificate {
		return Certificate{Port: port, Hostname: host, Gateway: types.NamespacedName{Namespace: "infra", Name: "web"}, Listener: listener}
	}
	certs := []Certificate{
		cert(443, "a.example.com", "exact"),
		cert(443, "*.example.com", "wild"),
		cert(443, "*.b.example.com", "deeper-wild"),
		cert(443, "", "any"),
		cert(8443, "*.example.com", "other-port"),
	}
	slices.SortFunc(certs, compareCertificates)
	table := Table{Certificates: certs}
	index := NewCertificateIndex(certs)
	for _, tc := range []struct {
		port int32
		name string
		want string // listener; "" none
	}{
		{443, "a.example.com", "exact"},
		{443, "A.Example.COM.", "exact"},
		{443, "x.example.com", "wild"},
		{443, "x.y.example.com", "wild"},
		{443, "x.b.example.com", "deeper-wild"},
		{443, "b.example.com", "wild"},
		{443, "example.com", "any"},
		{443, "other.org", "any"},
		{443, "", "any"},
		{8443, "x.example.com", "other-port"},
		{8443, "example.com", ""},
		{8443, "", ""},
		{80, "a.example.com", ""},
	} {
		for which, got := range map[string]*Certificate{"CertificateFor": table.CertificateFor(tc.port, tc.name), "index": index.Lookup(tc.port, tc.name)} {
			switch {
			case got == nil && tc.want != "":
				t.Errorf("%s(%d, %q) = none, want listener %s", which, tc.port, tc.name, tc.want)
			case got != nil && got.Listener != tc.want:
				t.Errorf("%s(%d, %q) = listener %s, want %q", which, tc.port, tc.name, got.Listener, tc.want)
			}
		}
	}
	if got := index.Ports(); !slices.Equal(got, []int32{443, 8443}) {
		t.Errorf("Ports() = %v", got)
	}
}

// Two Gateways with a listener of one port and hostname: the first by
// namespace and name serves, whatever the snapshot's order.
func TestCertificateOfTwoGateways(t *testing.T) {
	crt, key := testKeyPair(t, "shared.example")
	s := &Snapshot{GatewayClasses: []*gatewayv1.GatewayClass{{
		ObjectMeta: metav1.ObjectMeta{Name: "bulkhead"},
		Spec:       gatewayv1.GatewayClassSpec{ControllerName: DefaultGatewayControllerName},
	}}}
	for _, name := range []string{"zeta", "alpha"} {
		s.Gateways = append(s.Gateways, &gatewayv1.Gateway{
			ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: name},
			Spec: gatewayv1.GatewaySpec{GatewayClassName: "bulkhead", Listeners: []gatewayv1.Listener{{
				Name: "https", Port: 443, Protocol: gatewayv1.HTTPSProtocolType,
				TLS: &gatewayv1.ListenerTLSConfig{CertificateRefs: []gatewayv1.SecretObjectReference{{Name: gatewayv1.ObjectName(name)}}},
			}}},
		})
		s.Secrets = append(s.Secrets, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: name}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key}})
	}
	table := Translate(s, Options{GatewayPorts: []int32{443}})
	if len(table.Certificates) != 2 {
		t.Fatalf("%d certificates, want 2: %+v", len(table.Certificates), table.Certificates)
	}
	if got := table.CertificateFor(443, "shared.example"); got == nil || got.Gateway.Name != "alpha" || got.Secret.Name != "alpha" {
		t.Errorf("CertificateFor = %+v, want Gateway infra/alpha's", got)
	}
	if string(table.Certificates[0].Cert) != string(crt) || string(table.Certificates[0].Key) != string(key) {
		t.Error("the certificate is not the Secret's tls.crt and tls.key")
	}
}

// A Translator checks a Secret's key pair once while the Secret object is
// the same, and again when it is replaced: the cached result never
// outlives the object.
func TestTranslatorKeyPairFollowsSecret(t *testing.T) {
	crt, key := testKeyPair(t, "a.example")
	s, o := httpsSnapshot(crt, key)
	tr := NewTranslator()
	if got := tr.Translate(s, o); len(got.Certificates) != 1 {
		t.Fatalf("%d certificates, want 1", len(got.Certificates))
	}
	// A replaced Secret with another key: the pair no longer matches.
	_, other := testKeyPair(t, "a.example")
	bad := s.Secrets[0].DeepCopy()
	bad.Data[corev1.TLSPrivateKeyKey] = other
	s.Secrets = []*corev1.Secret{bad}
	got := tr.Translate(s, o)
	if len(got.Certificates) != 0 {
		t.Fatalf("a mismatched key pair is served: %+v", got.Certificates)
	}
	if len(got.Problems) != 1 || got.Problems[0].Reason != Reason(gatewayv1.ListenerReasonInvalidCertificateRef) ||
		!strings.Contains(got.Problems[0].Message, "private key does not match public key") {
		t.Errorf("problems %+v, want one InvalidCertificateRef naming the mismatch", got.Problems)
	}
	if len(tr.keyPairs) != 1 {
		t.Errorf("the Translator keeps %d key pairs, want only the current Secret's", len(tr.keyPairs))
	}
}

func httpsSnapshot(crt, key []byte) (*Snapshot, Options) {
	s := &Snapshot{
		GatewayClasses: []*gatewayv1.GatewayClass{{
			ObjectMeta: metav1.ObjectMeta{Name: "bulkhead"},
			Spec:       gatewayv1.GatewayClassSpec{ControllerName: DefaultGatewayControllerName},
		}},
		Gateways: []*gatewayv1.Gateway{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "web"},
			Spec: gatewayv1.GatewaySpec{GatewayClassName: "bulkhead", Listeners: []gatewayv1.Listener{{
				Name: "https", Port: 443, Protocol: gatewayv1.HTTPSProtocolType,
				TLS: &gatewayv1.ListenerTLSConfig{CertificateRefs: []gatewayv1.SecretObjectReference{{Name: "cert"}}},
			}}},
		}},
		Secrets: []*corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "cert"}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key}}},
	}
	return s, Options{GatewayPorts: []int32{443}}
}

// testKeyPair makes a self-signed certificate for host, PEM encoded.
func testKeyPair(t testing.TB, host string) (crt, key []byte) {
	t.Helper()
	return testcerts.SelfSigned(t, host)
}
