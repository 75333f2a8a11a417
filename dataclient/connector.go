package dataclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// Connector gives the data client its connections to the API server.
type Connector interface {
	// NewClient returns clients on connections of their own (not shared
	// with other clients), their transport and dialer wrapped by hooks.
	NewClient(hooks ClientHooks) (Clients, error)
	// Probe checks, quickly, that the API server is ready to serve.
	Probe(ctx context.Context) error
	// Alive is the cheap heartbeat while connected: does the API server
	// answer at all? (client-go retries refused watch connections quietly,
	// so a dead server is otherwise noticed only by its silence.)
	Alive(ctx context.Context) error
	// ClusterIdentity names the cluster behind the address: the UID of
	// the default/kubernetes Service, which only a new or wiped store
	// changes. "" when unknown; ErrNoClusterIdentity when the server has
	// no such Service (a store just wiped).
	ClusterIdentity(ctx context.Context) (string, error)
}

// Clients are the API clients of one set of connections: the Gateway API
// client shares the Kubernetes client's transport, so the gate holds both.
type Clients struct {
	Kube kubernetes.Interface
	// Gateway reads the Gateway API (gateway.networking.k8s.io); nil: the
	// Gateway API is not read.
	Gateway gatewayclient.Interface
}

// ClientHooks wrap a new client's transport and dialer; nil: none.
type ClientHooks struct {
	WrapTransport func(http.RoundTripper) http.RoundTripper
	WrapDial      func(DialFunc) DialFunc
}

// RESTConnector connects with a rest.Config. Use NewRESTConnector.
type RESTConnector struct {
	config       *rest.Config
	probeTimeout time.Duration

	heartbeatOnce sync.Once
	heartbeat     *http.Client // one keep-alive connection, reused
	heartbeatErr  error
}

// NewRESTConnector returns a connector for cfg; probes give up after
// probeTimeout (zero: 2 s).
func NewRESTConnector(cfg *rest.Config, probeTimeout time.Duration) *RESTConnector {
	if probeTimeout == 0 {
		probeTimeout = 2 * time.Second
	}
	return &RESTConnector{config: cfg, probeTimeout: probeTimeout}
}

var _ Connector = (*RESTConnector)(nil)

// NewClient builds the clientsets on one transport of their own. client-go
// shares one transport among clients of equal configuration; a dial
// function of our own (a new one per call) opts out of that sharing.
func (c *RESTConnector) NewClient(hooks ClientHooks) (Clients, error) {
	cfg := rest.CopyConfig(c.config)
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	dial := DialFunc(dialer.DialContext)
	if hooks.WrapDial != nil {
		dial = hooks.WrapDial(dial)
	}
	cfg.Dial = dial
	if hooks.WrapTransport != nil {
		cfg.WrapTransport = transport.Wrappers(cfg.WrapTransport, hooks.WrapTransport)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return Clients{}, err
	}
	kube, err := kubernetes.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return Clients{}, err
	}
	gw, err := gatewayclient.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return Clients{}, err
	}
	return Clients{Kube: kube, Gateway: gw}, nil
}

// Probe asks /readyz on a connection of its own, closed afterwards: after
// an outage, an old connection may be the very thing that is dead.
func (c *RESTConnector) Probe(ctx context.Context) error {
	hc, err := c.httpClient()
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	return c.get(ctx, hc, "/readyz")
}

// Alive asks /livez, which does not involve etcd, on one kept-alive
// connection: a heartbeat every few seconds from every node must not cost
// the API server a TLS handshake each. If that connection has died
// silently the request times out, which is the signal wanted.
func (c *RESTConnector) Alive(ctx context.Context) error {
	c.heartbeatOnce.Do(func() { c.heartbeat, c.heartbeatErr = c.httpClient() })
	if c.heartbeatErr != nil {
		return c.heartbeatErr
	}
	err := c.get(ctx, c.heartbeat, "/livez")
	if err != nil {
		c.heartbeat.CloseIdleConnections() // the next heartbeat dials afresh
	}
	return err
}

// ErrNoClusterIdentity: the API server has no default/kubernetes Service.
var ErrNoClusterIdentity = errors.New("no default/kubernetes Service")

// ClusterIdentity reads the default/kubernetes Service's UID on a
// connection of its own.
func (c *RESTConnector) ClusterIdentity(ctx context.Context) (string, error) {
	hc, err := c.httpClient()
	if err != nil {
		return "", err
	}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, c.probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.config.Host, "/")+"/api/v1/namespaces/default/services/kubernetes", nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return "", ErrNoClusterIdentity
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("default/kubernetes Service: %s", resp.Status)
	}
	var svc struct {
		Metadata struct {
			UID string `json:"uid"`
		} `json:"metadata"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&svc); err != nil {
		return "", err
	}
	return svc.Metadata.UID, nil
}

// httpClient returns a client with a transport of its own.
func (c *RESTConnector) httpClient() (*http.Client, error) {
	cfg := rest.CopyConfig(c.config)
	cfg.Timeout = c.probeTimeout
	dialer := &net.Dialer{Timeout: c.probeTimeout}
	cfg.Dial = dialer.DialContext
	return rest.HTTPClientFor(cfg)
}

func (c *RESTConnector) get(ctx context.Context, hc *http.Client, path string) error {
	ctx, cancel := context.WithTimeout(ctx, c.probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.config.Host, "/")+path, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("API server unreachable: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("API server %s: %s", path, resp.Status)
	}
	return nil
}

// staticConnector always hands out the same client; for tests with a fake
// clientset, where there are no connections to renew.
type staticConnector struct {
	client  kubernetes.Interface
	gateway gatewayclient.Interface
	probe   func(context.Context) error
}

func (s staticConnector) NewClient(ClientHooks) (Clients, error) {
	return Clients{Kube: s.client, Gateway: s.gateway}, nil
}

func (s staticConnector) Probe(ctx context.Context) error {
	if s.probe == nil {
		return nil
	}
	return s.probe(ctx)
}

func (s staticConnector) Alive(ctx context.Context) error { return s.Probe(ctx) }

func (s staticConnector) ClusterIdentity(context.Context) (string, error) { return "", nil }
