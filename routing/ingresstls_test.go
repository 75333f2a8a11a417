package routing

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bulkhead-router/bulkhead/internal/testcerts"
)

func tlsSecret(t *testing.T, namespace, name string, hosts ...string) *corev1.Secret {
	crt, key := testcerts.SelfSigned(t, hosts...)
	s := &corev1.Secret{Type: corev1.SecretTypeTLS, Data: map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key}}
	s.Namespace, s.Name = namespace, name
	return s
}

func tlsIngress(namespace, name string, redirect bool, secret string, hosts ...string) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{}
	ing.Namespace, ing.Name = namespace, name
	if redirect {
		ing.Annotations = map[string]string{AnnotationSSLRedirect: "true"}
	}
	ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: hosts, SecretName: secret}}
	for _, h := range hosts {
		ing.Spec.Rules = append(ing.Spec.Rules, networkingv1.IngressRule{Host: h, IngressRuleValue: networkingv1.IngressRuleValue{
			HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: ptr(networkingv1.PathTypePrefix),
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}},
		}})
	}
	return ing
}

func hasRedirect(table Table, host string) bool {
	for _, r := range table.Routes {
		if r.VirtualHost != host {
			continue
		}
		for _, f := range r.Eskip.Filters {
			if f.Name == SSLRedirectName {
				return true
			}
		}
	}
	return false
}

// A Translator follows Secret changes as Translate does: the certificate
// appears when the Secret does, changes with it, and the ssl-redirect of
// an Ingress applies only while its Secret can be served, also when the
// Ingress itself did not change.
func TestTranslatorFollowsSecrets(t *testing.T) {
	base := func() *Snapshot {
		return &Snapshot{
			IngressClasses: []*networkingv1.IngressClass{ingressClass("bulkhead", true)},
			Ingresses:      []*networkingv1.Ingress{tlsIngress("shop", "shop", true, "shop-tls", "shop.example.com")},
			Services:       []*Service{service("shop", "web", servicePort("http", 80))},
		}
	}
	tr := NewTranslator()
	s := base()
	step := func(what string, wantCert []byte, wantRedirect bool) Table {
		t.Helper()
		got := tr.Translate(s, Options{})
		if want := Translate(s, Options{}); renderTable(got) != renderTable(want) {
			t.Fatalf("%s: the Translator differs from Translate:\n%s", what, lineDiff(renderTable(want), renderTable(got)))
		}
		c := NewCertificateIndex(got.Certificates).Serve(0, "shop.example.com")
		switch {
		case wantCert == nil && c != nil:
			t.Fatalf("%s: certificate served from %v", what, c.Secret)
		case wantCert != nil && (c == nil || !bytes.Equal(c.Cert, wantCert)):
			t.Fatalf("%s: certificate %v, want the Secret's", what, c)
		}
		if hasRedirect(got, "shop.example.com") != wantRedirect {
			t.Fatalf("%s: redirect %v, want %v", what, !wantRedirect, wantRedirect)
		}
		return got
	}
	step("no Secret", nil, false)
	first := tlsSecret(t, "shop", "shop-tls", "shop.example.com")
	s.Secrets = []*corev1.Secret{first}
	step("Secret created", first.Data[corev1.TLSCertKey], true)
	second := tlsSecret(t, "shop", "shop-tls", "shop.example.com")
	s.Secrets = []*corev1.Secret{second}
	step("Secret rotated", second.Data[corev1.TLSCertKey], true)
	broken := second.DeepCopy()
	broken.Data[corev1.TLSPrivateKeyKey] = first.Data[corev1.TLSPrivateKeyKey]
	s.Secrets = []*corev1.Secret{broken}
	table := step("Secret broken", nil, false)
	if !strings.Contains(renderTable(table), "InvalidCertificate: spec.tls[0]: Secret shop/shop-tls holds no usable key pair") {
		t.Fatalf("no problem for the broken Secret:\n%s", renderTable(table))
	}
	s.Secrets = []*corev1.Secret{second}
	step("Secret repaired", second.Data[corev1.TLSCertKey], true)
}

// The oldest Ingress wins a TLS host; a conflict with another Secret is
// the newer Ingress's problem, and a broken Secret of the older one does
// not block the newer one's.
func TestIngressCertificateConflicts(t *testing.T) {
	older := tlsIngress("a", "older", false, "tls", "x.example.com")
	older.CreationTimestamp = metav1.Unix(100, 0)
	newer := tlsIngress("b", "newer", false, "tls", "x.example.com")
	newer.CreationTimestamp = metav1.Unix(200, 0)
	sa, sb := tlsSecret(t, "a", "tls", "x.example.com"), tlsSecret(t, "b", "tls", "x.example.com")
	s := &Snapshot{IngressClasses: []*networkingv1.IngressClass{ingressClass("bulkhead", true)},
		Ingresses: []*networkingv1.Ingress{newer, older}, Secrets: []*corev1.Secret{sb, sa}}
	table := Translate(s, Options{})
	if c := table.CertificateFor(0, "x.example.com"); c == nil || c.Ingress.Name != "older" {
		t.Fatalf("x.example.com served by %+v, want a/older", c)
	}
	if !strings.Contains(renderTable(table), `Ingress b/newer Conflict: TLS host "x.example.com" is already served with Secret a/tls by ingress a/older`) {
		t.Fatalf("no conflict problem:\n%s", renderTable(table))
	}
	sa.Data = map[string][]byte{corev1.TLSCertKey: []byte("garbage")}
	table = Translate(s, Options{})
	if c := table.CertificateFor(0, "x.example.com"); c == nil || c.Ingress.Name != "newer" {
		t.Fatalf("with a/tls broken, x.example.com served by %+v, want b/newer", c)
	}
}

func TestTLSCovers(t *testing.T) {
	for _, tc := range []struct {
		tls, vhost string
		want       bool
	}{
		{"a.example.com", "a.example.com", true},
		{"a.example.com", "b.example.com", false},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "*.example.com", true},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", "example.com", false},
		{"a.example.com", "*.example.com", false},
		{"*.example.com", "", false},
		{"", "", false},
	} {
		if got := tlsCovers(tc.tls, tc.vhost); got != tc.want {
			t.Errorf("tlsCovers(%q, %q) = %v, want %v", tc.tls, tc.vhost, got, tc.want)
		}
	}
}

// The redirect in skipper's real proxy, behind the handler bulkhead's
// proxy has: over plain HTTP 308 to https with host (without port), path
// and query as sent; over TLS, or when X-Forwarded-Proto (which bulkhead's
// proxy sets on every request, keeping only a trusted proxy's) says
// https, the backend answers; X-Forwarded-Proto http over TLS (a trusted
// ALB that took plain HTTP) redirects.
func TestSSLRedirectThroughSkipperProxy(t *testing.T) {
	pod := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "pod") }))
	t.Cleanup(pod.Close)
	_, port, _ := net.SplitHostPort(pod.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	secret := tlsSecret(t, "shop", "shop-tls", "shop.example.com")
	s := &Snapshot{
		IngressClasses: []*networkingv1.IngressClass{ingressClass("bulkhead", true)},
		Ingresses:      []*networkingv1.Ingress{tlsIngress("shop", "shop", true, "shop-tls", "shop.example.com")},
		Services:       []*Service{service("shop", "web", servicePort("http", 80))},
		EndpointSlices: []*EndpointSlice{endpointSlice("shop", "web", "web-1", int32(p), "192.0.2.1")},
		Secrets:        []*corev1.Secret{secret},
	}
	table := Translate(s, Options{})
	for _, b := range table.Backends {
		for i := range b.Endpoints {
			b.Endpoints[i].Address = strings.Replace(b.Endpoints[i].Address, "192.0.2.1", "127.0.0.1", 1)
		}
	}
	handler := newTestProxy(t, table)
	plain := httptest.NewServer(handler)
	t.Cleanup(plain.Close)
	secure := httptest.NewTLSServer(handler)
	t.Cleanup(secure.Close)

	get := func(srv *httptest.Server, host, target, proto string) (int, string) {
		t.Helper()
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if srv.TLS != nil {
			conn = tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
		}
		req := "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n"
		if proto != "" {
			req += "X-Forwarded-Proto: " + proto + "\r\n"
		}
		fmt.Fprint(conn, req+"\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodGet, URL: &url.URL{}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location")
	}
	for _, tc := range []struct {
		name                string
		srv                 *httptest.Server
		host, target, proto string
		code                int
		location            string
	}{
		{"plain", plain, "shop.example.com", "/a/b?x=1&y=%2F", "", 308, "https://shop.example.com/a/b?x=1&y=%2F"},
		{"plain with port, raw path", plain, "Shop.Example.com:8080", "/a%2Fb/c", "", 308, "https://Shop.Example.com/a%2Fb/c"},
		{"plain, proxy says http", plain, "shop.example.com", "/", "http", 308, "https://shop.example.com/"},
		{"plain, proxy says https", plain, "shop.example.com", "/", "https", 200, ""},
		{"TLS", secure, "shop.example.com", "/", "", 200, ""},
		{"TLS, proxy says http", secure, "shop.example.com", "/", "http", 308, "https://shop.example.com/"},
	} {
		code, loc := get(tc.srv, tc.host, tc.target, tc.proto)
		if code != tc.code || loc != tc.location {
			t.Errorf("%s: %d %q, want %d %q", tc.name, code, loc, tc.code, tc.location)
		}
	}
}
