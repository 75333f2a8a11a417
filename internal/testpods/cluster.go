package testpods

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

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
type MissingPreconditionError struct {
	Missing []string
}

func (e *MissingPreconditionError) Error() string {
	return "testpods: cannot run pods on this host, missing: " + strings.Join(e.Missing, "; ")
}

// CheckPreconditions reports what this host or process lacks to run pods:
// root, the ip command and, unless opts.TestpodBinary is set, the go
// command. The error is a *MissingPreconditionError.
func CheckPreconditions(opts Options) error {
	var missing []string
	if uid := os.Geteuid(); uid != 0 {
		missing = append(missing, fmt.Sprintf(
			"root (network namespaces, veths and bridges need CAP_NET_ADMIN and CAP_SYS_ADMIN; running as uid %d)", uid))
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "the ip command from iproute2 (not in PATH)")
	}
	if opts.TestpodBinary == "" {
		if _, err := exec.LookPath("go"); err != nil {
			missing = append(missing, "the go command to build the testpod program (not in PATH; or set Options.TestpodBinary)")
		}
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		missing = append(missing, "network namespace support (/proc/self/ns/net)")
	}
	if len(missing) > 0 {
		return &MissingPreconditionError{Missing: missing}
	}
	return nil
}

// Cluster is a set of pods on this host: one /24 of 10.213.0.0/16, a bridge
// holding its .1, one network namespace per pod, and optionally the
// Services and EndpointSlices describing them in a Kubernetes API server.
type Cluster struct {
	log          *slog.Logger
	client       kubernetes.Interface
	startTimeout time.Duration
	ip           ipTool
	net          *hostNetwork
	binary       string
	release      func()
	spawner      *spawner
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
		ip:           ipTool{path: "ip"},
		nextHost:     2,
		servicePorts: map[serviceKey]int32{},
		control:      &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
	}
	if c.startTimeout <= 0 {
		c.startTimeout = 20 * time.Second
	}
	if path, err := exec.LookPath("ip"); err == nil {
		c.ip.path = path
	}

	if opts.TestpodBinary != "" {
		if _, err := os.Stat(opts.TestpodBinary); err != nil {
			return nil, fmt.Errorf("testpods: Options.TestpodBinary: %w", err)
		}
		c.binary, c.release = opts.TestpodBinary, func() {}
	} else {
		path, release, err := acquireTestpod(ctx, log)
		if err != nil {
			return nil, err
		}
		c.binary, c.release = path, release
	}

	hostNet, err := setUpHostNetwork(ctx, c.ip, log)
	if err != nil {
		c.release()
		return nil, err
	}
	c.net = hostNet
	c.spawner = newSpawner()
	return c, nil
}

// Subnet is the /24 this Cluster's pods get their addresses from.
func (c *Cluster) Subnet() string { return c.net.subnet.String() }

// Gateway is the root namespace's address on the pods' bridge; requests
// from the root namespace to pods come from it.
func (c *Cluster) Gateway() string { return c.net.gateway.String() }

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
	if err := c.net.tearDown(ctx); err != nil {
		errs = append(errs, err)
	}
	c.spawner.stop()
	c.release()
	c.log.Info("cluster closed", "subnet", c.net.subnet.String(), "pods", len(pods))
	return errors.Join(errs...)
}

// spawner starts pod processes from one OS thread that stays alive until
// the Cluster closes. Pod processes get PR_SET_PDEATHSIG, which fires when
// the thread that started them exits; pinning that thread means a pod dies
// with the test process (even on SIGKILL) but not before.
type spawner struct {
	requests chan spawnRequest
	quit     chan struct{}
	done     chan struct{}
	once     sync.Once
}

type spawnRequest struct {
	cmd    *exec.Cmd
	result chan error
}

func newSpawner() *spawner {
	s := &spawner{requests: make(chan spawnRequest), quit: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

func (s *spawner) run() {
	// Locked so that every pod is forked from this one thread while the
	// Cluster lives. Unlocked before returning: a goroutine that exits
	// while locked makes the runtime destroy its thread, and that thread
	// may earlier have forked OTHER processes of this test binary (a
	// kube-apiserver, a toxiproxy of a parallel test) whose
	// PR_SET_PDEATHSIG would then kill them. Pods are killed by Close;
	// the death signal still covers the test process dying, since that
	// ends every thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(s.done)
	for {
		select {
		case r := <-s.requests:
			r.result <- r.cmd.Start()
		case <-s.quit:
			return
		}
	}
}

func (s *spawner) start(cmd *exec.Cmd) error {
	r := spawnRequest{cmd: cmd, result: make(chan error, 1)}
	select {
	case s.requests <- r:
		return <-r.result
	case <-s.done:
		return ErrClosed
	}
}

func (s *spawner) stop() {
	s.once.Do(func() { close(s.quit) })
	<-s.done
}
