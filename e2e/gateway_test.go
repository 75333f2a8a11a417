package e2e

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/bulkhead-router/bulkhead/internal/gatewaycrds"
	"github.com/bulkhead-router/bulkhead/internal/testcerts"
	"github.com/bulkhead-router/bulkhead/internal/testpods"
	"github.com/bulkhead-router/bulkhead/internal/testrouter"
)

const gatewayController = "bulkhead.io/gateway-controller"

// gwEnv is an env whose API server serves the Gateway API.
type gwEnv struct {
	*env
	gw       gatewayclient.Interface
	stateDir string // the router's -state-dir
}

// newGatewayEnv installs the Gateway API CRDs of the pinned release, then
// starts the router with args.
func newGatewayEnv(t *testing.T, routerArgs ...string) *gwEnv {
	t.Helper()
	e := newEnvNoRouter(t)
	if _, err := gatewaycrds.Install(e.ctx(), e.cp.RESTConfig()); err != nil {
		t.Fatalf("installing the Gateway API CRDs: %v", err)
	}
	gw, err := gatewayclient.NewForConfig(e.cp.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	e.router = testrouter.Start(t, testrouter.Options{Kubeconfig: e.cp.Kubeconfig(), StateDir: stateDir, Args: routerArgs})
	return &gwEnv{env: e, gw: gw, stateDir: stateDir}
}

func (e *gwEnv) gatewayClass(name string) {
	e.t.Helper()
	gc := &gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: gatewayv1.GatewayClassSpec{ControllerName: gatewayController}}
	if _, err := e.gw.GatewayV1().GatewayClasses().Create(e.ctx(), gc, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("create GatewayClass: %v", err)
	}
}

// gateway creates a Gateway of class "bulkhead" with one HTTP listener per
// port, routes from all namespaces allowed.
func (e *gwEnv) gateway(namespace, name string, ports ...int32) {
	e.t.Helper()
	ensureNamespace(e.t, e.client, namespace)
	all := gatewayv1.NamespacesFromAll
	g := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: gatewayv1.GatewaySpec{GatewayClassName: "bulkhead"}}
	for _, p := range ports {
		g.Spec.Listeners = append(g.Spec.Listeners, gatewayv1.Listener{
			Name: gatewayv1.SectionName(fmt.Sprintf("http-%d", p)), Port: p, Protocol: gatewayv1.HTTPProtocolType,
			AllowedRoutes: &gatewayv1.AllowedRoutes{Namespaces: &gatewayv1.RouteNamespaces{From: &all}},
		})
	}
	if _, err := e.gw.GatewayV1().Gateways(namespace).Create(e.ctx(), g, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("create Gateway: %v", err)
	}
}

// applyRoute creates or replaces an HTTPRoute.
func (e *gwEnv) applyRoute(hr *gatewayv1.HTTPRoute) {
	e.t.Helper()
	ensureNamespace(e.t, e.client, hr.Namespace)
	api := e.gw.GatewayV1().HTTPRoutes(hr.Namespace)
	old, err := api.Get(e.ctx(), hr.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(e.ctx(), hr, metav1.CreateOptions{})
	case err == nil:
		hr.ResourceVersion = old.ResourceVersion
		_, err = api.Update(e.ctx(), hr, metav1.UpdateOptions{})
	}
	if err != nil {
		e.t.Fatalf("apply HTTPRoute %s/%s: %v", hr.Namespace, hr.Name, err)
	}
}

func (e *gwEnv) deleteRoute(namespace, name string) {
	e.t.Helper()
	if err := e.gw.GatewayV1().HTTPRoutes(namespace).Delete(e.ctx(), name, metav1.DeleteOptions{}); err != nil {
		e.t.Fatalf("delete HTTPRoute: %v", err)
	}
}

// httpRoute is an HTTPRoute attached to gateway/gw for host, its rules
// given.
func httpRoute(namespace, name, gwNamespace, gw, host string, rules ...gatewayv1.HTTPRouteRule) *gatewayv1.HTTPRoute {
	ns := gatewayv1.Namespace(gwNamespace)
	return &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: gatewayv1.ObjectName(gw), Namespace: &ns}}},
			Hostnames:       []gatewayv1.Hostname{gatewayv1.Hostname(host)},
			Rules:           rules,
		}}
}

// toService is a rule sending path prefix p to services by weight
// (service, weight, service, weight, ...).
func toService(p string, backends ...any) gatewayv1.HTTPRouteRule {
	kind := gatewayv1.PathMatchPathPrefix
	r := gatewayv1.HTTPRouteRule{Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: &kind, Value: &p}}}}
	for i := 0; i+1 < len(backends); i += 2 {
		port := gatewayv1.PortNumber(80)
		w := int32(backends[i+1].(int))
		r.BackendRefs = append(r.BackendRefs, gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{
			BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(backends[i].(string)), Port: &port},
			Weight:                 &w,
		}})
	}
	return r
}

// TestGatewayHTTPRouteLifecycle walks an HTTPRoute's life on a router that
// also serves an Ingress: create, use, split by weight, match a header,
// delete, create the next; a Gateway listener on a port this router does
// not serve gets no traffic; the Ingress is untouched throughout.
func TestGatewayHTTPRouteLifecycle(t *testing.T) {
	e := newGatewayEnv(t, "-publish-address", "192.0.2.10") // -gateway-listeners defaults to 80 on the proxy listener
	e.startPods("shop", "web", 2)
	e.startPods("shop", "canary", 1)
	e.startPods("shop", "legacy", 1)
	e.ingressClass("bulkhead", false)
	e.apply(ingress("shop", "legacy", "bulkhead", rule("legacy.example", path("/", prefix(), "legacy"))))
	e.router.WaitReady(30 * time.Second)
	e.expectPod("legacy.example", "/", "legacy", "")

	e.gatewayClass("bulkhead")
	e.gateway("infra", "edge", 80)
	e.applyRoute(httpRoute("shop", "web", "infra", "edge", "shop.example", toService("/", "web", 1)))
	e.expectPod("shop.example", "/anything", "web", "")
	// Status, written by the elected replica (this one).
	e.awaitStatus("GatewayClass bulkhead Accepted", func() error {
		gc, err := e.gw.GatewayV1().GatewayClasses().Get(e.ctx(), "bulkhead", metav1.GetOptions{})
		if err != nil {
			return err
		}
		return hasCondition(gc.Status.Conditions, "Accepted", metav1.ConditionTrue, gc.Generation)
	})
	e.awaitStatus("Gateway infra/edge Programmed with the publish address", func() error {
		g, err := e.gw.GatewayV1().Gateways("infra").Get(e.ctx(), "edge", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := hasCondition(g.Status.Conditions, "Programmed", metav1.ConditionTrue, g.Generation); err != nil {
			return err
		}
		if len(g.Status.Addresses) != 1 || g.Status.Addresses[0].Value != "192.0.2.10" {
			return fmt.Errorf("addresses %+v", g.Status.Addresses)
		}
		if len(g.Status.Listeners) != 1 || g.Status.Listeners[0].AttachedRoutes != 1 {
			return fmt.Errorf("listeners %+v", g.Status.Listeners)
		}
		return nil
	})
	e.awaitStatus("HTTPRoute shop/web Accepted by its parent", func() error {
		hr, err := e.gw.GatewayV1().HTTPRoutes("shop").Get(e.ctx(), "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(hr.Status.Parents) != 1 || hr.Status.Parents[0].ControllerName != gatewayController {
			return fmt.Errorf("parents %+v", hr.Status.Parents)
		}
		return hasCondition(hr.Status.Parents[0].Conditions, "Accepted", metav1.ConditionTrue, hr.Generation)
	})

	// A canary: weights 1:1, both answer.
	e.applyRoute(httpRoute("shop", "web", "infra", "edge", "shop.example", toService("/", "web", 1, "canary", 1)))
	seen := map[string]int{}
	e.eventually(15*time.Second, "both backends answer", func() error {
		a, err := e.get("shop.example", "/")
		if err != nil {
			return err
		}
		if a.status != http.StatusOK {
			return fmt.Errorf("status %d: %.200s", a.status, a.body)
		}
		seen[a.echo.Service]++
		if seen["web"] == 0 || seen["canary"] == 0 {
			return errNotYet
		}
		return nil
	})

	// A header match takes priority over the plain prefix.
	rule := toService("/", "canary", 1)
	rule.Matches[0].Headers = []gatewayv1.HTTPHeaderMatch{{Name: "X-Canary", Value: "yes"}}
	e.applyRoute(httpRoute("shop", "web", "infra", "edge", "shop.example", toService("/", "web", 1), rule))
	// The previous rule still sends half of all requests to canary, so one
	// canary answer does not show the new rules are live: the wait asks for
	// a run of answers no 1:1 split gives by chance (2^-30).
	headerRule := func(header bool) error {
		hdr, want := []string{}, "web"
		if header {
			hdr, want = []string{"X-Canary", "yes"}, "canary"
		}
		a, err := e.get("shop.example", "/", hdr...)
		if err != nil {
			return err
		}
		if a.echo.Service != want {
			return fmt.Errorf("header %v answered by %q (%d), want %q", header, a.echo.Service, a.status, want)
		}
		return nil
	}
	e.eventually(10*time.Second, "header match live", func() error {
		for range 15 {
			if err := headerRule(true); err != nil {
				return err
			}
			if err := headerRule(false); err != nil {
				return err
			}
		}
		return nil
	})
	for range 20 {
		for _, header := range []bool{true, false} {
			if err := headerRule(header); err != nil {
				t.Fatal(err)
			}
		}
	}

	// A listener on a port the router does not serve: its routes never
	// answer here.
	e.gateway("infra", "elsewhere", 8443)
	e.applyRoute(httpRoute("shop", "other", "infra", "elsewhere", "other.example", toService("/", "web", 1)))
	e.awaitStatus("Gateway infra/elsewhere's listener refused", func() error {
		g, err := e.gw.GatewayV1().Gateways("infra").Get(e.ctx(), "elsewhere", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(g.Status.Listeners) != 1 {
			return fmt.Errorf("listeners %+v", g.Status.Listeners)
		}
		l := g.Status.Listeners[0]
		if err := hasCondition(l.Conditions, "Accepted", metav1.ConditionFalse, g.Generation); err != nil {
			return err
		}
		for _, c := range l.Conditions {
			if c.Type == "Accepted" && c.Reason != "PortUnavailable" {
				return fmt.Errorf("listener Accepted reason %q, want PortUnavailable", c.Reason)
			}
		}
		return nil
	})

	// Delete, then create the next.
	e.deleteRoute("shop", "web")
	e.expectStatus("shop.example", "/", http.StatusNotFound)
	e.applyRoute(httpRoute("shop", "next", "infra", "edge", "next.example", toService("/", "canary", 1)))
	e.expectPod("next.example", "/", "canary", "")
	e.expectStatus("other.example", "/", http.StatusNotFound)
	e.expectPod("legacy.example", "/", "legacy", "")
}

// awaitStatus waits for the status check to hold.
func (e *gwEnv) awaitStatus(what string, check func() error) {
	e.t.Helper()
	e.eventually(20*time.Second, what, check)
}

// hasCondition reports whether conds has typ with status for generation.
func hasCondition(conds []metav1.Condition, typ string, status metav1.ConditionStatus, generation int64) error {
	for _, c := range conds {
		if c.Type != typ {
			continue
		}
		if c.Status != status || c.ObservedGeneration != generation {
			return fmt.Errorf("%s=%s (%s: %s) for generation %d, want %s for %d", typ, c.Status, c.Reason, c.Message, c.ObservedGeneration, status, generation)
		}
		if c.LastTransitionTime.IsZero() {
			return fmt.Errorf("%s has no lastTransitionTime", typ)
		}
		return nil
	}
	return fmt.Errorf("no %s condition in %+v", typ, conds)
}

// TestGatewayRestartDuringOutage: a router restarted while the API server
// is down serves its Gateway API routes from the stored table, under load,
// and follows the live objects when the server is back.
func TestGatewayRestartDuringOutage(t *testing.T) {
	e := newGatewayEnv(t)
	e.startPods("shop", "web", 2)
	e.startPods("shop", "v2", 1)
	e.gatewayClass("bulkhead")
	e.gateway("infra", "edge", 80)
	e.applyRoute(httpRoute("shop", "web", "infra", "edge", "shop.example", toService("/", "web", 1)))
	e.router.WaitReady(30 * time.Second)
	e.expectPod("shop.example", "/", "web", "")
	e.router.WaitFor(10*time.Second, "the stored table holding the Gateway route", func() bool {
		stored, _ := os.ReadFile(filepath.Join(e.stateDir, "routes.snapshot"))
		return strings.Contains(string(stored), `"httpRoute":{"Namespace":"shop","Name":"web"}`)
	})
	e.router.Kill()
	// A change the stopped router does not see: the route moves to v2.
	e.applyRoute(httpRoute("shop", "web", "infra", "edge", "shop.example", toService("/", "v2", 1)))
	if err := e.cp.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	e.router.Restart()
	e.router.WaitReady(10 * time.Second)
	for i := range 50 {
		a, err := e.get("shop.example", "/")
		if err != nil || a.status != http.StatusOK || a.echo.Service != "web" {
			t.Fatalf("request %d during the outage, from the stored table: %v %d %q %.200s", i, err, a.status, a.echo.Service, a.body)
		}
	}
	if err := e.cp.StartAPIServer(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.expectPod("shop.example", "/", "v2", "")
}

// tlsSecret creates or replaces a kubernetes.io/tls Secret.
func (e *gwEnv) tlsSecret(namespace, name string, cert, key []byte) {
	e.t.Helper()
	ensureNamespace(e.t, e.client, namespace)
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: cert, corev1.TLSPrivateKeyKey: key}}
	api := e.client.CoreV1().Secrets(namespace)
	old, err := api.Get(e.ctx(), name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(e.ctx(), s, metav1.CreateOptions{})
	case err == nil:
		s.ResourceVersion = old.ResourceVersion
		_, err = api.Update(e.ctx(), s, metav1.UpdateOptions{})
	}
	if err != nil {
		e.t.Fatalf("apply Secret %s/%s: %v", namespace, name, err)
	}
}

// httpsListener is an HTTPS listener terminating with Secret secret.
func httpsListener(name string, port int32, hostname, secret string) gatewayv1.Listener {
	all := gatewayv1.NamespacesFromAll
	l := gatewayv1.Listener{Name: gatewayv1.SectionName(name), Port: port, Protocol: gatewayv1.HTTPSProtocolType,
		TLS:           &gatewayv1.ListenerTLSConfig{CertificateRefs: []gatewayv1.SecretObjectReference{{Name: gatewayv1.ObjectName(secret)}}},
		AllowedRoutes: &gatewayv1.AllowedRoutes{Namespaces: &gatewayv1.RouteNamespaces{From: &all}}}
	if hostname != "" {
		h := gatewayv1.Hostname(hostname)
		l.Hostname = &h
	}
	return l
}

// httpsGet sends GET / over TLS to the router's proxy listener with SNI
// and Host host, and returns the answer and the served certificate's first
// DNS name.
func (e *gwEnv) httpsGet(c *http.Client, host string) (answer, string, error) {
	req, err := http.NewRequest(http.MethodGet, "https://"+strings.TrimPrefix(e.router.ProxyURL, "http://")+"/", nil)
	if err != nil {
		return answer{}, "", err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return answer{}, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, "", err
	}
	a := answer{status: resp.StatusCode, body: string(body), header: resp.Header}
	a.echo, _ = testpods.DecodeEcho(strings.NewReader(a.body))
	return a, resp.TLS.PeerCertificates[0].DNSNames[0], nil
}

// tlsClient sends SNI host (the URL names an address) and accepts any
// certificate: which one was served is checked by name.
func tlsClient(host string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil,
		TLSClientConfig: &tls.Config{ServerName: host, InsecureSkipVerify: true}}}
}

// TestGatewayHTTPSListener: an HTTPS Gateway listener terminates TLS with
// its Secret's certificate, chosen by SNI; a renewed Secret reaches new
// handshakes without a restart while an open connection keeps working; a
// listener whose Secret is malformed is refused alone; a restart while
// the API server is down still serves TLS from the stored table.
func TestGatewayHTTPSListener(t *testing.T) {
	e := newGatewayEnv(t, "-gateway-listeners", "443") // Gateway port 443 on the proxy listener
	e.startPods("shop", "web", 1)
	e.startPods("shop", "api", 1)
	shopCert, shopKey := testcerts.SelfSigned(t, "shop.example")
	e.tlsSecret("infra", "shop-tls", shopCert, shopKey)
	e.tlsSecret("infra", "broken-tls", []byte("not a certificate"), []byte("not a key"))
	e.gatewayClass("bulkhead")
	ensureNamespace(t, e.client, "infra")
	g := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "edge"},
		Spec: gatewayv1.GatewaySpec{GatewayClassName: "bulkhead", Listeners: []gatewayv1.Listener{
			httpsListener("shop", 443, "shop.example", "shop-tls"),
			httpsListener("api", 443, "api.example", "broken-tls"),
		}}}
	if _, err := e.gw.GatewayV1().Gateways("infra").Create(e.ctx(), g, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.applyRoute(httpRoute("shop", "web", "infra", "edge", "shop.example", toService("/", "web", 1)))
	e.applyRoute(httpRoute("shop", "api", "infra", "edge", "api.example", toService("/", "api", 1)))
	e.router.WaitReady(30 * time.Second)

	shop := tlsClient("shop.example")
	e.eventually(20*time.Second, "https://shop.example served by web", func() error {
		a, name, err := e.httpsGet(shop, "shop.example")
		if err != nil {
			return err
		}
		if a.status != http.StatusOK || a.echo.Service != "web" || name != "shop.example" {
			return fmt.Errorf("%d from %q with certificate %q", a.status, a.echo.Service, name)
		}
		return nil
	})
	// The broken Secret's listener is refused, and said so; its name gets
	// no certificate.
	e.awaitStatus("listener api refused for its certificate", func() error {
		g, err := e.gw.GatewayV1().Gateways("infra").Get(e.ctx(), "edge", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, l := range g.Status.Listeners {
			if l.Name == "api" {
				for _, c := range l.Conditions {
					if c.Type == "ResolvedRefs" && c.Status == metav1.ConditionFalse && c.Reason == "InvalidCertificateRef" {
						return nil
					}
				}
				return fmt.Errorf("listener api conditions %+v", l.Conditions)
			}
		}
		return fmt.Errorf("no status for listener api: %+v", g.Status.Listeners)
	})
	if _, _, err := e.httpsGet(tlsClient("api.example"), "api.example"); err == nil {
		t.Error("api.example was served although its Secret is malformed")
	}
	_, problems := e.router.Admin("/problems")
	if !strings.Contains(problems, "broken-tls") {
		t.Errorf("/problems does not name the malformed Secret:\n%s", problems)
	}

	// Renewal: a new certificate in the same Secret reaches new handshakes;
	// the open keep-alive connection of shop keeps working meanwhile.
	renewedCert, renewedKey := testcerts.SelfSigned(t, "shop.example", "renewed.shop.example")
	e.tlsSecret("infra", "shop-tls", renewedCert, renewedKey)
	e.eventually(20*time.Second, "the renewed certificate served", func() error {
		_, _, err := e.httpsGet(shop, "shop.example") // the old connection
		if err != nil {
			return fmt.Errorf("the open connection failed: %w", err)
		}
		fresh := tlsClient("shop.example")
		defer fresh.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodGet, "https://"+strings.TrimPrefix(e.router.ProxyURL, "http://")+"/", nil)
		req.Host = "shop.example"
		resp, err := fresh.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if names := resp.TLS.PeerCertificates[0].DNSNames; len(names) != 2 {
			return fmt.Errorf("still the old certificate (%v)", names)
		}
		return nil
	})

	// A restart while the API server is down: TLS from the stored table.
	e.router.WaitFor(10*time.Second, "the stored table holding the renewed certificate", func() bool {
		stored, _ := os.ReadFile(filepath.Join(e.stateDir, "routes.snapshot"))
		return strings.Contains(string(stored), `"listener":"shop"`) && strings.Contains(string(stored), base64.StdEncoding.EncodeToString(renewedCert))
	})
	if err := e.cp.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	e.router.Restart()
	e.router.WaitReady(10 * time.Second)
	a, name, err := e.httpsGet(tlsClient("shop.example"), "shop.example")
	if err != nil || a.status != http.StatusOK || a.echo.Service != "web" || name != "shop.example" {
		t.Fatalf("https during the outage after a restart: %v %d %q %q", err, a.status, a.echo.Service, name)
	}
	if info, err := os.Stat(filepath.Join(e.stateDir, "routes.snapshot")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("the stored table holds private keys: mode %v (%v), want 0600", info.Mode().Perm(), err)
	}
}
