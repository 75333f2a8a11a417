package e2e

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bulkhead-router/bulkhead/internal/testcerts"
	"github.com/bulkhead-router/bulkhead/internal/testpods"
	"github.com/bulkhead-router/bulkhead/internal/testrouter"
)

// trustedPeer is the loopback address the router is told to trust as its
// load balancer (-trusted-proxies): a client bound to it is "the ALB",
// one from 127.0.0.1 an untrusted internet client.
const trustedPeer = "127.0.0.2"

// TestIngressTLS: Ingress spec.tls served over TLS on the proxy listener
// from its Secret, chosen by SNI (exact and wildcard), without the Gateway
// API; the default certificate for other names; a broken Secret reported
// on /problems and isolated (its host gets the default certificate and
// stays served over plain HTTP, the other hosts keep theirs); the
// ssl-redirect, believing X-Forwarded-Proto only from the trusted proxy; a
// Secret rotated under load with no failed request and an open connection
// kept; and a restart during an API server outage still serving TLS from
// the stored table.
func TestIngressTLS(t *testing.T) {
	e := newEnvNoRouter(t)
	stateDir := t.TempDir()
	e.router = testrouter.Start(t, testrouter.Options{Kubeconfig: e.cp.Kubeconfig(), StateDir: stateDir,
		Args: []string{"-default-certificate", "infra/default-tls", "-trusted-proxies", trustedPeer + "/32"}})
	e.ingressClass("bulkhead", true)
	e.startPods("shop", "web", 1)
	shopCert, shopKey := testcerts.SelfSigned(t, "shop.example.com")
	wildCert, wildKey := testcerts.SelfSigned(t, "*.wild.example.com")
	defCert, defKey := testcerts.SelfSigned(t, "default.invalid")
	e.secret("shop", "shop-tls", shopCert, shopKey)
	e.secret("shop", "wild-tls", wildCert, wildKey)
	e.secret("infra", "default-tls", defCert, defKey)
	e.secret("shop", "broken-tls", shopCert, wildKey) // a key of another certificate

	shop := ingress("shop", "shop", "", rule("shop.example.com", path("/", prefix(), "web")), rule("a.wild.example.com", path("/", prefix(), "web")))
	shop.Annotations = map[string]string{"bulkhead.io/ssl-redirect": "true"}
	shop.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"shop.example.com"}, SecretName: "shop-tls"},
		{Hosts: []string{"*.wild.example.com"}, SecretName: "wild-tls"}}
	e.apply(shop)
	broken := ingress("shop", "broken", "", rule("broken.example.com", path("/", prefix(), "web")))
	broken.Annotations = map[string]string{"bulkhead.io/ssl-redirect": "true"}
	broken.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"broken.example.com"}, SecretName: "broken-tls"}}
	e.apply(broken)
	e.router.WaitReady(30 * time.Second)

	httpsURL := "https://" + strings.TrimPrefix(e.router.ProxyURL, "http://")
	// served awaits host answered by web over TLS with SNI host and the
	// certificate whose first name is want.
	served := func(host, want string) {
		t.Helper()
		e.eventually(20*time.Second, fmt.Sprintf("https://%s with certificate %s", host, want), func() error {
			a, name, err := tlsGet(tlsClient(host), httpsURL, host)
			if err != nil {
				return err
			}
			if a.status != http.StatusOK || a.echo.Service != "web" || name != want {
				return fmt.Errorf("%d from %q with certificate %q", a.status, a.echo.Service, name)
			}
			return nil
		})
	}
	served("shop.example.com", "shop.example.com")
	served("a.wild.example.com", "*.wild.example.com")
	// Another name, and no SNI at all, get the default certificate.
	if _, name, err := tlsGet(tlsClient("unknown.example.org"), httpsURL, "unknown.example.org"); err != nil || name != "default.invalid" {
		t.Errorf("unknown name: certificate %q, %v; want the default one", name, err)
	}
	if _, name, err := tlsGet(tlsClient(""), httpsURL, "shop.example.com"); err != nil || name != "default.invalid" {
		t.Errorf("no SNI: certificate %q, %v; want the default one", name, err)
	}

	// The broken Secret: a problem naming the Ingress and the Secret; its
	// host gets the default certificate over TLS and plain HTTP without a
	// redirect (its Secret cannot be served); the others are untouched.
	e.expectProblem("Ingress", "shop", "broken", "InvalidCertificate")
	if _, problems := e.router.Admin("/problems"); !strings.Contains(problems, "shop/broken-tls") {
		t.Errorf("/problems does not name the broken Secret:\n%s", problems)
	}
	served("broken.example.com", "default.invalid")
	e.expectPod("broken.example.com", "/", "web", "")
	served("shop.example.com", "shop.example.com")

	// The redirect: plain HTTP to a TLS host of the Ingress gets 308 to
	// https, host, path and query kept; an untrusted client's
	// X-Forwarded-Proto changes nothing either way; the trusted proxy's
	// https is believed, its http too.
	a := e.expectStatus("shop.example.com", "/a/b?x=1&y=%2F", http.StatusPermanentRedirect)
	if loc := a.header.Get("Location"); loc != "https://shop.example.com/a/b?x=1&y=%2F" {
		t.Errorf("Location %q", loc)
	}
	if a, err := e.get("shop.example.com", "/", "X-Forwarded-Proto", "https"); err != nil || a.status != http.StatusPermanentRedirect {
		t.Errorf("untrusted client's X-Forwarded-Proto: https suppressed the redirect: %d %v", a.status, err)
	}
	trusted := trustedClient(t)
	for _, tc := range []struct {
		proto string
		want  int
	}{{"https", http.StatusOK}, {"http", http.StatusPermanentRedirect}, {"", http.StatusPermanentRedirect}} {
		if status, err := getWithProto(trusted, e.router.ProxyURL, "shop.example.com", tc.proto); err != nil || status != tc.want {
			t.Errorf("trusted proxy, X-Forwarded-Proto %q: %d %v, want %d", tc.proto, status, err, tc.want)
		}
	}
	// Over TLS from an untrusted client, its "http" is replaced: no redirect.
	req, _ := http.NewRequest(http.MethodGet, httpsURL+"/", nil)
	req.Host = "shop.example.com"
	req.Header.Set("X-Forwarded-Proto", "http")
	if resp, err := tlsClient("shop.example.com").Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("TLS with an untrusted X-Forwarded-Proto: http: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// Rotation under load: four clients send until told to stop, two over
	// one kept connection each, two with a new connection (a new
	// handshake) per request. Every answer must be 200 and the kept
	// connections must stay the ones they opened.
	load := startTLSLoad(httpsURL, "shop.example.com")
	load.await(t, 50)
	renewedCert, renewedKey := testcerts.SelfSigned(t, "shop.example.com", "renewed.shop.example.com")
	e.secret("shop", "shop-tls", renewedCert, renewedKey)
	e.eventually(20*time.Second, "the renewed certificate on new handshakes", func() error {
		c := tlsClient("shop.example.com")
		defer c.CloseIdleConnections()
		resp, err := c.Get(httpsURL + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if n := len(resp.TLS.PeerCertificates[0].DNSNames); n != 2 {
			return fmt.Errorf("still the old certificate")
		}
		return nil
	})
	load.await(t, load.sent()+200) // the load goes on after the rotation
	res := load.stop()
	t.Logf("during the rotation: %d requests, %d not 200 (%v), kept connections dialled %d times, new-connection clients %d handshakes",
		res.sent, res.failed, res.errors, res.keptDials, res.freshDials)
	if res.failed != 0 {
		t.Errorf("%d of %d requests failed while the Secret rotated: %v", res.failed, res.sent, res.errors)
	}
	if res.keptDials != 2 {
		t.Errorf("the two kept connections were dialled %d times: an open connection was dropped", res.keptDials)
	}

	// A restart while the API server is down: TLS from the stored table,
	// the renewed certificate, the wildcard and the default one.
	e.router.WaitFor(10*time.Second, "the stored table holding the renewed and the default certificate", func() bool {
		stored, _ := os.ReadFile(filepath.Join(stateDir, "routes.snapshot"))
		return strings.Contains(string(stored), base64.StdEncoding.EncodeToString(renewedCert)) &&
			strings.Contains(string(stored), base64.StdEncoding.EncodeToString(defCert))
	})
	if err := e.cp.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	e.router.Restart()
	e.router.WaitReady(10 * time.Second)
	for host, want := range map[string]string{"shop.example.com": "shop.example.com", "a.wild.example.com": "*.wild.example.com", "unknown.example.org": "default.invalid"} {
		a, name, err := tlsGet(tlsClient(host), httpsURL, host)
		if err != nil || name != want || host != "unknown.example.org" && (a.status != http.StatusOK || a.echo.Service != "web") {
			t.Errorf("https://%s during the outage after a restart: %v %d %q, certificate %q (want %q)", host, err, a.status, a.echo.Service, name, want)
		}
	}
	if info, err := os.Stat(filepath.Join(stateDir, "routes.snapshot")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("the stored table holds private keys: mode %v (%v), want 0600", info.Mode().Perm(), err)
	}
}

// secret creates or replaces a kubernetes.io/tls Secret.
func (e *env) secret(namespace, name string, cert, key []byte) {
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

// tlsGet sends GET / to base (https://ip:port) with Host host through c
// and returns the answer and the served certificate's first DNS name.
func tlsGet(c *http.Client, base, host string) (answer, string, error) {
	defer c.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, base+"/", nil)
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

// trustedClient sends from trustedPeer, the address -trusted-proxies names.
func trustedClient(t *testing.T) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(trustedPeer)}}
	tr := &http.Transport{Proxy: nil, DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 10 * time.Second, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// getWithProto sends GET / over plain HTTP with Host host and, unless empty,
// X-Forwarded-Proto proto, and returns the status.
func getWithProto(c *http.Client, base, host, proto string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, base+"/", nil)
	if err != nil {
		return 0, err
	}
	req.Host = host
	if proto != "" {
		req.Header.Set("X-Forwarded-Proto", proto)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// tlsLoad is a small HTTPS load: clients sending one request after the
// other, until stopped.
type tlsLoad struct {
	cancel              context.CancelFunc
	wg                  sync.WaitGroup
	n, bad              atomic.Int64
	keptDials, newDials atomic.Int64
	mu                  sync.Mutex
	errors              map[string]int
}

type tlsLoadResult struct {
	sent, failed          int64
	errors                map[string]int
	keptDials, freshDials int64
}

func startTLSLoad(base, host string) *tlsLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &tlsLoad{cancel: cancel, errors: map[string]int{}}
	client := func(kept bool) *http.Client {
		d := &net.Dialer{Timeout: 5 * time.Second}
		dials := &l.newDials
		if kept {
			dials = &l.keptDials
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: !kept, MaxConnsPerHost: 1,
			TLSClientConfig: &tls.Config{ServerName: host, InsecureSkipVerify: true},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				return d.DialContext(ctx, network, addr)
			}}}
	}
	for _, kept := range []bool{true, true, false, false} {
		c := client(kept)
		l.wg.Go(func() {
			defer c.CloseIdleConnections()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
				req.Host = host
				resp, err := c.Do(req)
				if ctx.Err() != nil {
					return // stopped mid-request: not the router's failure
				}
				l.n.Add(1)
				what := ""
				if err != nil {
					what = err.Error()
				} else {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						what = resp.Status
					}
				}
				if what != "" {
					l.bad.Add(1)
					l.mu.Lock()
					l.errors[what]++
					l.mu.Unlock()
				}
			}
		})
	}
	return l
}

func (l *tlsLoad) sent() int64 { return l.n.Load() }

// await waits until n requests were sent (the load is running).
func (l *tlsLoad) await(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for l.n.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the load sent %d requests in 20 s, want %d", l.n.Load(), n)
		}
		time.Sleep(10 * time.Millisecond) // polling a counter of other goroutines
	}
}

func (l *tlsLoad) stop() tlsLoadResult {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return tlsLoadResult{sent: l.n.Load(), failed: l.bad.Load(), errors: l.errors, keptDials: l.keptDials.Load(), freshDials: l.newDials.Load()}
}
