package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bulkhead-router/bulkhead/internal/testrouter"
)

// TestEndpointsAtTheRouterOrItsNodeAreRefused: a tenant's selector-less
// Service with a hand-written EndpointSlice naming the router's own
// admin, metrics, health or proxy port answers 503, with the refusal on
// /problems and in the metrics, never the listener's content; an endpoint
// at an address of the router's Node (from the Node object) is refused as
// soon as the Node says so, and served again when it no longer does.
//
// The router normally listens on 127.0.0.1 here, which EndpointSlice
// validation rejects, so a slice could never name it and the test would
// prove nothing. Instead every listener binds the test pods' bridge address
// (10.213.X.1): a real, non-loopback address of the router's host that a
// slice may name, as a pod IP would be in a cluster. The router learns it,
// like its pod IP, from its local interfaces at start. Each listener is
// first fetched directly to show it serves there (admin with its token, which
// the test also sends through the proxy): without the refusal, the proxied
// request would get that content. The Node path uses a test pod's address as
// the Node's InternalIP, because a real pod behind it answers 200 until the
// Node's addresses refuse it: what changes the answer is the Node object
// alone.
func TestEndpointsAtTheRouterOrItsNodeAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnvNoRouter(t)
	const ns, nodeName = "tenant", "refuse-node"
	token := "refuse-test-admin-token-0123456789"
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	bearer := []string{"Authorization", "Bearer " + token}
	nodes := e.client.CoreV1().Nodes()
	if _, err := nodes.Create(e.ctx(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.ingressClass("bulkhead", true)
	pod := e.startPods(ns, "hostnet", 1)[0]
	e.router = testrouter.Start(t, testrouter.Options{
		Kubeconfig: e.cp.Kubeconfig(),
		Host:       e.pods.Gateway(),
		Args:       []string{"-admin-token-file", tokenFile, "-node-name", nodeName},
	})

	targets := []struct{ service, base, path, content string }{
		{"router-admin", e.router.AdminURL, "/routes", "ing__"},
		{"router-metrics", e.router.MetricsURL, "/metrics", "bulkhead_"},
		{"router-health", e.router.HealthURL, "/healthz", ""},
		{"router-proxy", e.router.ProxyURL, "/", ""},
	}
	rules := []struct{ host, service string }{{"hostnet.example", "hostnet"}}
	for _, tg := range targets {
		host, port := urlHostPort(t, tg.base)
		handWrittenService(e, ns, tg.service, host, port)
		rules = append(rules, struct{ host, service string }{tg.service + ".example", tg.service})
	}
	ing := ingress(ns, "tenant", "")
	for _, r := range rules {
		ing.Spec.Rules = append(ing.Spec.Rules, rule(r.host, path("/", prefix(), r.service)))
	}
	e.apply(ing)
	e.router.WaitReady(30 * time.Second)
	e.expectPod("hostnet.example", "/", "hostnet", pod.Name)

	for _, tg := range targets {
		if tg.service == "router-proxy" {
			continue // its direct answer is the table's: a 404 for this host
		}
		status, body := directGet(t, tg.base+tg.path, bearer...)
		if status != http.StatusOK || !strings.Contains(body, tg.content) {
			t.Fatalf("%s does not serve %s on the slice's address (%d %.100q): the test would prove nothing", tg.service, tg.path, status, body)
		}
	}
	for _, tg := range targets {
		a := e.expectStatus(tg.service+".example", tg.path, http.StatusServiceUnavailable)
		if tg.content != "" && strings.Contains(a.body, tg.content) {
			t.Errorf("%s: the 503 carries the listener's content: %.200q", tg.service, a.body)
		}
		// With the admin token too: a refusal, not the admin's 401 or 200.
		a, err := e.get(tg.service+".example", tg.path, bearer...)
		if err != nil || a.status != http.StatusServiceUnavailable || (tg.content != "" && strings.Contains(a.body, tg.content)) {
			t.Errorf("%s with the admin token: %d %.200q %v", tg.service, a.status, a.body, err)
		}
	}
	_, problems := e.router.Admin("/problems", bearer...)
	for _, tg := range targets {
		host, port := urlHostPort(t, tg.base)
		want := fmt.Sprintf("RefusedEndpoint: endpoint %s of service %s/%s port 80 refused: it is an address of the router itself",
			net.JoinHostPort(host, strconv.Itoa(int(port))), ns, tg.service)
		if !strings.Contains(problems, want) {
			t.Errorf("/problems lacks %q:\n%s", want, problems)
		}
	}
	if v := metricAt(t, e.router.MetricsURL, `bulkhead_problems{reason="RefusedEndpoint"}`); v < float64(len(targets)) {
		t.Errorf(`bulkhead_problems{reason="RefusedEndpoint"} = %v, want at least %d`, v, len(targets))
	}

	// The Node's addresses: the pod's address becomes the node's, and the
	// router stops sending there, then starts again when it is not.
	setNodeAddresses := func(addrs ...string) {
		t.Helper()
		n, err := nodes.Get(e.ctx(), nodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Status.Addresses = nil
		for _, a := range addrs {
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
		}
		if _, err := nodes.UpdateStatus(e.ctx(), n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setNodeAddresses(pod.IP.String())
	e.expectStatus("hostnet.example", "/", http.StatusServiceUnavailable)
	_, problems = e.router.Admin("/problems", bearer...)
	if want := fmt.Sprintf("endpoint %s of service %s/hostnet port 80 refused: it is an address of the router's node", pod.Addr, ns); !strings.Contains(problems, want) {
		t.Errorf("/problems lacks %q:\n%s", want, problems)
	}
	setNodeAddresses()
	e.expectPod("hostnet.example", "/", "hostnet", pod.Name)
}

// handWrittenService is what a tenant can write without any pod: a
// selector-less Service and an EndpointSlice naming any address.
func handWrittenService(e *env, namespace, name, ip string, port int32) {
	e.t.Helper()
	ensureNamespace(e.t, e.client, namespace)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	if _, err := e.client.CoreV1().Services(namespace).Create(e.ctx(), svc, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("create Service %s: %v", name, err)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: namespace, Name: name + "-hand", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(port), Protocol: ptr(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}},
	}
	if _, err := e.client.DiscoveryV1().EndpointSlices(namespace).Create(e.ctx(), slice, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("create EndpointSlice %s (the API server must accept it, or the test proves nothing): %v", name, err)
	}
}

func urlHostPort(t *testing.T, base string) (string, int32) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return u.Hostname(), int32(port)
}

// directGet GETs a URL directly (not through the proxy).
func directGet(t *testing.T, u string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metricAt reads one sample from a metrics listener; 0 when absent.
func metricAt(t *testing.T, metricsURL, sample string) float64 {
	t.Helper()
	_, body := directGet(t, metricsURL+"/metrics")
	for line := range strings.SplitSeq(body, "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			v, _ := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			return v
		}
	}
	return 0
}
