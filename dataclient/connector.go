package dataclient

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Connector gives the data client its connections to the API server.
type Connector interface {
	// NewClient returns a client on fresh connections: after an outage
	// the informers are restarted on new ones, so nothing is left waiting
	// on a connection that died silently.
	NewClient() (kubernetes.Interface, error)
	// Probe checks, quickly, that the API server is ready to serve.
	Probe(ctx context.Context) error
	// Alive is the cheap heartbeat while connected: does the API server
	// answer at all? (client-go retries refused watch connections quietly,
	// so a dead server is otherwise noticed only by its silence.)
	Alive(ctx context.Context) error
}

// RESTConnector connects with a rest.Config.
type RESTConnector struct {
	Config *rest.Config
	// ProbeTimeout bounds one probe. Zero: 2 s.
	ProbeTimeout time.Duration
}

var _ Connector = RESTConnector{}

// NewClient builds a clientset with its own transport. client-go shares one
// transport among clients of equal configuration; a dial function of our
// own (a new one per call) opts out of that sharing.
func (c RESTConnector) NewClient() (kubernetes.Interface, error) {
	cfg := rest.CopyConfig(c.Config)
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	cfg.Dial = dialer.DialContext
	return kubernetes.NewForConfig(cfg)
}

// Probe asks /readyz on a connection of its own, closed afterwards.
func (c RESTConnector) Probe(ctx context.Context) error { return c.get(ctx, "/readyz") }

// Alive asks /livez, which does not involve etcd.
func (c RESTConnector) Alive(ctx context.Context) error { return c.get(ctx, "/livez") }

func (c RESTConnector) get(ctx context.Context, path string) error {
	timeout := c.ProbeTimeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	cfg := rest.CopyConfig(c.Config)
	cfg.Timeout = timeout
	dialer := &net.Dialer{Timeout: timeout}
	cfg.Dial = dialer.DialContext
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+path, nil)
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
	client kubernetes.Interface
	probe  func(context.Context) error
}

func (s staticConnector) NewClient() (kubernetes.Interface, error) { return s.client, nil }

func (s staticConnector) Probe(ctx context.Context) error {
	if s.probe == nil {
		return nil
	}
	return s.probe(ctx)
}

func (s staticConnector) Alive(ctx context.Context) error { return s.Probe(ctx) }
