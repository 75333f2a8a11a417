package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/podnet"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
)

// Options configure an Agent. The zero value runs three nodes.
type Options struct {
	// Logger receives lifecycle events and the pods' output. Default:
	// discard.
	Logger *slog.Logger
	// Nodes are the names of the Nodes to register. Default:
	// "bulkhead-node-1" .. "bulkhead-node-<Count>".
	Nodes []string
	// Count is the number of nodes when Nodes is empty. Default: 3.
	Count int
	// Zones are assigned to the nodes round-robin
	// (topology.kubernetes.io/zone). Default: "zone-a", "zone-b".
	Zones []string
	// CPU, Memory and MaxPods are every node's capacity and allocatable.
	// Defaults: "4", "8Gi", 110.
	CPU, Memory string
	MaxPods     int
	// LeaseDuration is the node Lease's leaseDurationSeconds; the Lease
	// is renewed every LeaseDuration/4 (kubelet: 40 s and 10 s).
	// Default: 40s.
	LeaseDuration time.Duration
	// StatusInterval is how often node status (the Ready condition's
	// heartbeat) is written even without a change. Default: 1m.
	StatusInterval time.Duration
	// BackoffBase and BackoffMax shape the restart back-off of exited
	// containers (kubelet: 10s doubling to 5m). The first restart is
	// immediate, restart n waits BackoffBase*2^(n-2), at most BackoffMax;
	// a container that ran for 10 minutes starts over. Defaults: 10s, 5m.
	BackoffBase, BackoffMax time.Duration
	// DeleteNodesOnClose deletes the Node objects on Close. Without it
	// they stay and stop renewing, so the node lifecycle controller marks
	// them NotReady and evicts their pods, as when a machine dies.
	DeleteNodesOnClose bool
}

func (o *Options) defaults() error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if len(o.Nodes) == 0 {
		if o.Count <= 0 {
			o.Count = 3
		}
		for i := 1; i <= o.Count; i++ {
			o.Nodes = append(o.Nodes, fmt.Sprintf("bulkhead-node-%d", i))
		}
	}
	if len(o.Zones) == 0 {
		o.Zones = []string{"zone-a", "zone-b"}
	}
	if o.CPU == "" {
		o.CPU = "4"
	}
	if o.Memory == "" {
		o.Memory = "8Gi"
	}
	if o.MaxPods <= 0 {
		o.MaxPods = 110
	}
	if o.MaxPods > 253 {
		return fmt.Errorf("nodeagent: MaxPods %d: a node's /24 holds 253 pods", o.MaxPods)
	}
	for _, q := range []string{o.CPU, o.Memory} {
		if _, err := resource.ParseQuantity(q); err != nil {
			return fmt.Errorf("nodeagent: capacity %q: %w", q, err)
		}
	}
	if o.LeaseDuration <= 0 {
		o.LeaseDuration = 40 * time.Second
	}
	if o.StatusInterval <= 0 {
		o.StatusInterval = time.Minute
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = 10 * time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Minute
	}
	return nil
}

// Agent is a set of Nodes whose Pods run as processes in network
// namespaces of this host.
type Agent struct {
	opts    Options
	log     *slog.Logger
	client  kubernetes.Interface
	ip      podnet.Tool
	spawner *podnet.Spawner
	podDir  string // per-pod directories (volumes)

	ctx    context.Context // ends on Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	nodes []*node

	progMu   sync.Mutex
	programs map[string]*programBuild // by package
	releases []func()

	closeOnce sync.Once
	closeErr  error
}

// Start registers the Nodes, creates one bridge and /24 per node and runs
// the Pods bound to them until Close. ctx bounds the start only.
func Start(ctx context.Context, client kubernetes.Interface, opts Options) (*Agent, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	if err := podnet.CheckPreconditions(true); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	a := &Agent{
		opts: opts, log: opts.Logger, client: client, ip: podnet.NewTool(),
		spawner: podnet.NewSpawner(), ctx: runCtx, cancel: cancel,
		programs: map[string]*programBuild{},
	}
	dir, err := podnet.OwnedTempDir()
	if err != nil {
		a.Close()
		return nil, err
	}
	a.podDir = dir
	// Build the programs while the nodes register, so the first pod does
	// not wait for `go build` (a few seconds even with a warm cache).
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		seen := map[string]bool{}
		for _, im := range Images {
			if !seen[im.Package] && a.ctx.Err() == nil {
				seen[im.Package] = true
				if _, err := a.program(a.ctx, im.Package); err != nil && a.ctx.Err() == nil {
					a.log.Warn("building a pod program failed; pods of its images will say so", "package", im.Package, "err", err)
				}
			}
		}
	}()
	for i, name := range opts.Nodes {
		host, err := podnet.NewHost(ctx, a.ip, a.log.With("node", name))
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("nodeagent: network of node %s: %w", name, err)
		}
		n := newNode(a, name, opts.Zones[i%len(opts.Zones)], host)
		a.nodes = append(a.nodes, n)
		if err := n.register(ctx); err != nil {
			a.Close()
			return nil, err
		}
	}
	for _, n := range a.nodes {
		if err := n.run(ctx); err != nil {
			a.Close()
			return nil, err
		}
	}
	a.log.Info("node agent started", "nodes", opts.Nodes)
	return a, nil
}

// NodeInfo describes one of the agent's nodes.
type NodeInfo struct {
	Name string
	Zone string
	// PodCIDR is the node's /24 of 10.213.0.0/16 (spec.podCIDR).
	PodCIDR string
	// InternalIP is the root namespace's address on the node's bridge.
	InternalIP string
	// Bridge is the node's bridge interface.
	Bridge string
}

// Nodes describes the agent's nodes, in the order of Options.Nodes.
func (a *Agent) Nodes() []NodeInfo {
	var out []NodeInfo
	for _, n := range a.nodes {
		out = append(out, NodeInfo{Name: n.name, Zone: n.zone, PodCIDR: n.host.Subnet().String(),
			InternalIP: n.host.Gateway().String(), Bridge: n.host.Bridge()})
	}
	return out
}

// program returns the binary of pkg, building it on first use. Builds of
// different packages do not wait for each other; a failed build is tried
// again by the next caller.
func (a *Agent) program(ctx context.Context, pkg string) (string, error) {
	a.progMu.Lock()
	b := a.programs[pkg]
	if b != nil {
		select {
		case <-b.done:
			if b.err != nil {
				b = nil
			}
		default:
		}
	}
	if b == nil {
		b = &programBuild{done: make(chan struct{})}
		a.programs[pkg] = b
		a.progMu.Unlock()
		var release func()
		b.path, release, b.err = podnet.BuildProgram(a.ctx, a.log, pkg)
		if b.err == nil {
			a.progMu.Lock()
			a.releases = append(a.releases, release)
			a.progMu.Unlock()
		}
		close(b.done)
	} else {
		a.progMu.Unlock()
	}
	select {
	case <-b.done:
		return b.path, b.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

type programBuild struct {
	done chan struct{}
	path string
	err  error
}

// Close stops the agent: it stops renewing leases and node status, kills
// every pod process (at once, as a machine's power going out would) and
// removes every network namespace, veth and bridge it made. Pod objects
// are left as they are; Nodes too unless DeleteNodesOnClose. Safe to call
// twice.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		a.cancel()
		a.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var errs []error
		for _, n := range a.nodes {
			if err := n.close(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		a.spawner.Stop()
		a.progMu.Lock()
		for _, r := range a.releases {
			r()
		}
		a.progMu.Unlock()
		if a.podDir != "" {
			os.RemoveAll(a.podDir)
		}
		a.closeErr = errors.Join(errs...)
		a.log.Info("node agent closed", "err", a.closeErr)
	})
	return a.closeErr
}

func (a *Agent) podPath(uid string, elem ...string) string {
	return filepath.Join(append([]string{a.podDir, uid}, elem...)...)
}
