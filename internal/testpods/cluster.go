package testpods

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/podnet"
	"k8s.io/client-go/kubernetes"
)

// Options configure a Cluster. The zero value is ready to use.
type Options struct {
	// Logger receives lifecycle events and the pods' own log lines.
	// Default: discard.
	Logger *slog.Logger
	// StartTimeout bounds how long StartPod waits for a new pod to answer.
	// Default: 20s.
	StartTimeout time.Duration
	// TestpodBinary is a prebuilt testpod program to use instead of
	// building one with `go build`.
	TestpodBinary string
}

// ErrClosed is returned by methods of a Cluster that has been closed.
var ErrClosed = errors.New("testpods: cluster closed")

// MissingPreconditionError says what this host lacks to run pods.
type MissingPreconditionError = podnet.MissingPreconditionError

// CheckPreconditions reports what this host or process lacks to run pods:
// root, the ip command and, unless opts.TestpodBinary is set, the go
// command. The error is a *MissingPreconditionError.
func CheckPreconditions(opts Options) error {
	return podnet.CheckPreconditions(opts.TestpodBinary == "")
}

// Cluster is a set of pods on this host: one /24 of 10.213.0.0/16, a bridge
// holding its .1, one network namespace per pod, and optionally the
// Services and EndpointSlices describing them in a Kubernetes API server.
type Cluster struct {
	log          *slog.Logger
	client       kubernetes.Interface
	startTimeout time.Duration
	ip           podnet.Tool
	net          *podnet.Host
	binary       string
	release      func()
	spawner      *podnet.Spawner
	control      *http.Client

	mu       sync.Mutex
	closed   bool
	starting sync.WaitGroup // StartPod calls in progress
	nextHost int
	pods     []*Pod
	// servicePorts remembers each service's pod port: one EndpointSlice
	// has one port list, so all pods of a service share it.
	servicePorts map[serviceKey]int32
}

type serviceKey struct{ namespace, service string }

// New prepares the host side of a Cluster: it builds the testpod program
// (once per process), removes leftovers of crashed earlier runs, picks a
// free /24 and creates its bridge. client may be nil; then pods are never
// published and the Kubernetes methods return an error.
//
// ctx bounds the preparation only; the Cluster lives until Close.
func New(ctx context.Context, client kubernetes.Interface, opts Options) (*Cluster, error) {
	if err := CheckPreconditions(opts); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{
		log:          log,
		client:       client,
		startTimeout: opts.StartTimeout,
		ip:           podnet.NewTool(),
		nextHost:     2,
		servicePorts: map[serviceKey]int32{},
		control:      &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
	}
	if c.startTimeout <= 0 {
		c.startTimeout = 20 * time.Second
	}

	if opts.TestpodBinary != "" {
		if _, err := os.Stat(opts.TestpodBinary); err != nil {
			return nil, fmt.Errorf("testpods: Options.TestpodBinary: %w", err)
		}
		c.binary, c.release = opts.TestpodBinary, func() {}
	} else {
		path, release, err := podnet.BuildProgram(ctx, log, TestpodPackage)
		if err != nil {
			return nil, err
		}
		c.binary, c.release = path, release
	}

	hostNet, err := podnet.NewHost(ctx, c.ip, log)
	if err != nil {
		c.release()
		return nil, err
	}
	c.net = hostNet
	c.spawner = podnet.NewSpawner()
	return c, nil
}

// Subnet is the /24 this Cluster's pods get their addresses from.
func (c *Cluster) Subnet() string { return c.net.Subnet().String() }

// Gateway is the root namespace's address on the pods' bridge; requests
// from the root namespace to pods come from it.
func (c *Cluster) Gateway() string { return c.net.Gateway().String() }

// Pods returns the pods started so far, in start order, including killed
// and terminated ones.
func (c *Cluster) Pods() []*Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Pod(nil), c.pods...)
}

// Close kills every pod process and removes every network namespace, veth
// and bridge this Cluster made. Kubernetes objects are left alone: they
// belong to the API server's lifetime, not the host's. Close is safe to
// call more than once; later calls return nil.
//
// Stop whatever sends traffic to the pods (bulkhead) before Close: once the
// bridge is gone their addresses are unreachable.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	// A StartPod that got past the closed check finishes (or fails) first,
	// so no pod is created behind Close's back.
	c.starting.Wait()

	c.mu.Lock()
	pods := c.pods
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	for _, p := range pods {
		if err := c.destroyPod(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.net.TearDown(ctx); err != nil {
		errs = append(errs, err)
	}
	c.spawner.Stop()
	c.release()
	c.log.Info("cluster closed", "subnet", c.net.Subnet().String(), "pods", len(pods))
	return errors.Join(errs...)
}

// TestpodPackage is the import path of the pod server program.
const TestpodPackage = "github.com/bulkhead-router/bulkhead/internal/testpods/testpod"
