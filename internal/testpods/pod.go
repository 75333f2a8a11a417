package testpods

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/podnet"
	"k8s.io/apimachinery/pkg/util/validation"
)

// PodSpec describes a pod to start.
type PodSpec struct {
	// Namespace of the pod and its Service. Default: "default".
	Namespace string
	// Service the pod belongs to. Required.
	Service string
	// Name of the pod, unique among this Cluster's pods in Namespace.
	// Required.
	Name string
	// Port the pod serves HTTP on. Default: 8080. All pods of a Service
	// share one port, as the EndpointSlice has one port list.
	Port int32
	// Unpublished starts the pod without creating its Service or putting
	// it into the EndpointSlice; AddToEndpoints and SyncEndpointSlice do
	// that later.
	Unpublished bool
	// ShutdownTimeout bounds how long in-flight requests may take after
	// Terminate before the pod gives up on them. Default: 30s.
	ShutdownTimeout time.Duration
	// ShutdownDelay is how long the pod keeps serving after Terminate
	// before it shuts down, as a preStop sleep makes a real pod do.
	// Default: 0, it shuts down at once.
	ShutdownDelay time.Duration
}

// Pod is a running testpod process in its own network namespace.
type Pod struct {
	Name      string
	Namespace string
	Service   string
	// IP is the pod's address, reachable from the root namespace.
	IP netip.Addr
	// Port is the pod's HTTP port.
	Port int32
	// Addr is IP:Port, ready for net.Dial or a URL.
	Addr string

	cluster     *Cluster
	controlAddr string
	network     podnet.Pod
	proc        *podnet.Process

	// Endpoint state, guarded by cluster.mu: what the next
	// SyncEndpointSlice writes for this pod.
	published  bool
	conditions endpointConditions
}

type endpointConditions struct {
	ready, serving, terminating bool
}

// URL returns the pod's base URL followed by pathAndQuery, which should
// start with "/".
func (p *Pod) URL(pathAndQuery string) string { return "http://" + p.Addr + pathAndQuery }

// Exited is closed once the pod's process has exited.
func (p *Pod) Exited() <-chan struct{} { return p.proc.Exited() }

// controlPortFor keeps the control endpoint off the data port.
func controlPortFor(dataPort int32) int32 {
	if dataPort == 15000 {
		return 15001
	}
	return 15000
}

// StartPod starts a testpod in a new network namespace and waits until it
// answers from the root namespace. Unless spec.Unpublished is set (or the
// Cluster has no Kubernetes client), it then creates the Service if missing
// and writes the EndpointSlice with the pod ready and serving.
func (c *Cluster) StartPod(ctx context.Context, spec PodSpec) (*Pod, error) {
	if spec.Namespace == "" {
		spec.Namespace = "default"
	}
	if spec.Port == 0 {
		spec.Port = 8080
	}
	if spec.ShutdownTimeout <= 0 {
		spec.ShutdownTimeout = 30 * time.Second
	}
	if err := validatePodSpec(spec); err != nil {
		return nil, err
	}

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	for _, other := range c.pods {
		if other.Namespace == spec.Namespace && other.Name == spec.Name {
			c.mu.Unlock()
			return nil, fmt.Errorf("testpods: pod %s/%s already exists", spec.Namespace, spec.Name)
		}
	}
	key := serviceKey{spec.Namespace, spec.Service}
	if port, ok := c.servicePorts[key]; ok && port != spec.Port {
		c.mu.Unlock()
		return nil, fmt.Errorf("testpods: service %s/%s has pods on port %d, not %d (one EndpointSlice, one port)",
			spec.Namespace, spec.Service, port, spec.Port)
	}
	if c.nextHost > 254 {
		c.mu.Unlock()
		return nil, fmt.Errorf("testpods: no addresses left in %s", c.net.Subnet())
	}
	host := c.nextHost
	c.nextHost++
	c.servicePorts[key] = spec.Port
	c.starting.Add(1)
	c.mu.Unlock()
	defer c.starting.Done()

	pod, err := c.startPod(ctx, spec, host)
	if err == nil && !spec.Unpublished && c.client != nil {
		if err = c.publish(ctx, pod); err != nil {
			c.forgetPod(pod)
			c.destroyPod(context.WithoutCancel(ctx), pod)
		}
	}
	if err != nil {
		c.releaseServicePort(key)
		return nil, err
	}
	return pod, nil
}

// releaseServicePort forgets a service's port once no pod holds it, so a
// failed first StartPod does not pin the port for a retry.
func (c *Cluster) releaseServicePort(key serviceKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.pods {
		if p.Namespace == key.namespace && p.Service == key.service {
			return
		}
	}
	delete(c.servicePorts, key)
}

func validatePodSpec(spec PodSpec) error {
	var problems []string
	if errs := validation.IsDNS1123Label(spec.Namespace); len(errs) > 0 {
		problems = append(problems, fmt.Sprintf("namespace %q: %s", spec.Namespace, strings.Join(errs, ", ")))
	}
	if errs := validation.IsDNS1035Label(spec.Service); len(errs) > 0 {
		problems = append(problems, fmt.Sprintf("service %q: %s", spec.Service, strings.Join(errs, ", ")))
	}
	if errs := validation.IsDNS1123Subdomain(spec.Name); len(errs) > 0 {
		problems = append(problems, fmt.Sprintf("pod name %q: %s", spec.Name, strings.Join(errs, ", ")))
	}
	if spec.Port < 1 || spec.Port > 65535 {
		problems = append(problems, fmt.Sprintf("port %d out of range", spec.Port))
	}
	if len(problems) > 0 {
		return fmt.Errorf("testpods: invalid PodSpec: %s", strings.Join(problems, "; "))
	}
	return nil
}

// startPod does the host side of StartPod: plumbing, process, first answer.
func (c *Cluster) startPod(ctx context.Context, spec PodSpec, host int) (*Pod, error) {
	network, err := c.net.AddPod(ctx, host, spec.Name)
	if err != nil {
		return nil, err
	}
	pod := &Pod{
		Name:        spec.Name,
		Namespace:   spec.Namespace,
		Service:     spec.Service,
		IP:          network.IP,
		Port:        spec.Port,
		Addr:        netip.AddrPortFrom(network.IP, uint16(spec.Port)).String(),
		cluster:     c,
		controlAddr: netip.AddrPortFrom(network.IP, uint16(controlPortFor(spec.Port))).String(),
		network:     network,
		conditions:  endpointConditions{ready: true, serving: true},
	}
	log := c.log.With("pod", spec.Namespace+"/"+spec.Name)

	cmd := exec.Command(c.ip.Path(), "netns", "exec", network.Netns, c.binary,
		"-listen", pod.Addr,
		"-control", pod.controlAddr,
		"-pod", spec.Name,
		"-service", spec.Service,
		"-namespace", spec.Namespace,
		"-shutdown-timeout", spec.ShutdownTimeout.String(),
		"-shutdown-delay", spec.ShutdownDelay.String(),
	)
	output := podnet.NewOutput(log)
	cmd.Stdout = output
	cmd.Stderr = output
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group, so signals aimed at the test's group
		// (Ctrl-C) do not reach it and Kill can target the group.
		Setpgid: true,
		// Dies with the spawner thread, i.e. with the test process.
		Pdeathsig: syscall.SIGKILL,
	}
	// Wait returns this long after the process exits even if something
	// still holds its output pipe.
	cmd.WaitDelay = 2 * time.Second
	if err := c.spawner.Start(cmd); err != nil {
		c.net.RemovePod(context.WithoutCancel(ctx), network)
		return nil, fmt.Errorf("testpods: start pod %s: %w", spec.Name, err)
	}
	// `ip netns exec` execs the program in place, so this PID is the
	// testpod itself.
	pod.proc = podnet.Watch(cmd, output)

	c.mu.Lock()
	c.pods = append(c.pods, pod)
	c.mu.Unlock()

	if err := c.awaitAnswer(ctx, pod); err != nil {
		c.forgetPod(pod)
		c.destroyPod(context.WithoutCancel(ctx), pod)
		return nil, err
	}
	log.Info("pod started", "addr", pod.Addr, "pid", cmd.Process.Pid, "netns", network.Netns)
	return pod, nil
}

// awaitAnswer polls the pod's control endpoint from the root namespace
// until it answers. The testpod opens its data port before it serves the
// control endpoint, so an answer means both are up.
func (c *Cluster) awaitAnswer(ctx context.Context, p *Pod) error {
	ctx, cancel := context.WithTimeout(ctx, c.startTimeout)
	defer cancel()
	backoff := 5 * time.Millisecond
	var lastErr error
	for {
		if _, err := p.Stats(ctx); err == nil {
			return nil
		} else {
			lastErr = err
		}
		timer := time.NewTimer(backoff)
		select {
		case <-p.proc.Exited():
			timer.Stop()
			return fmt.Errorf("testpods: pod %s exited before answering (%v); its output:\n%s",
				p.Name, p.proc.Err(), p.proc.Output.Tail())
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("testpods: pod %s did not answer at %s within %s: %v "+
				"(a firewall in the root namespace dropping traffic to %s would do this); its output:\n%s",
				p.Name, p.controlAddr, c.startTimeout, lastErr, c.net.Subnet(), p.proc.Output.Tail())
		case <-timer.C:
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

// forgetPod drops p from the Cluster's list, so it is neither synced nor
// cleaned up twice.
func (c *Cluster) forgetPod(p *Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, other := range c.pods {
		if other == p {
			c.pods = append(c.pods[:i], c.pods[i+1:]...)
			return
		}
	}
}

// destroyPod kills the pod's process and removes its network.
func (c *Cluster) destroyPod(ctx context.Context, p *Pod) error {
	var errs []error
	if p.proc != nil {
		if err := p.proc.Kill(); err != nil {
			errs = append(errs, err)
		}
	}
	// Anything else that entered the namespace (a debugging shell) goes
	// too, or the namespace would outlive its name.
	if err := podnet.KillNetnsProcesses(ctx, c.ip, p.network.Netns); err != nil {
		errs = append(errs, err)
	}
	if err := c.net.RemovePod(ctx, p.network); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// SetMode switches the behaviour of the whole pod (see Mode).
func (p *Pod) SetMode(ctx context.Context, mode Mode) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		"http://"+p.controlAddr+"/mode?value="+string(mode), nil)
	if err != nil {
		return err
	}
	resp, err := p.cluster.control.Do(req)
	if err != nil {
		return fmt.Errorf("testpods: set mode of pod %s: %w", p.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		return fmt.Errorf("testpods: set mode of pod %s: %s: %s", p.Name, resp.Status, strings.TrimSpace(body.String()))
	}
	return nil
}

// Stats asks the pod how many requests it has received and has in flight.
// Tests poll it to learn that a request has arrived instead of sleeping.
func (p *Pod) Stats(ctx context.Context) (Stats, error) {
	reqCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, "http://"+p.controlAddr+"/stats", nil)
	if err != nil {
		return Stats{}, err
	}
	resp, err := p.cluster.control.Do(req)
	if err != nil {
		return Stats{}, fmt.Errorf("testpods: stats of pod %s: %w", p.Name, err)
	}
	defer resp.Body.Close()
	var s Stats
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("testpods: stats of pod %s: %s", p.Name, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("testpods: stats of pod %s: %w", p.Name, err)
	}
	return s, nil
}

// AwaitStats polls Stats until cond holds or ctx ends.
func (p *Pod) AwaitStats(ctx context.Context, cond func(Stats) bool) (Stats, error) {
	ticker := time.NewTicker(5 * time.Millisecond)
	defer ticker.Stop()
	for {
		s, err := p.Stats(ctx)
		if err == nil && cond(s) {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return s, fmt.Errorf("testpods: pod %s: condition not met (last stats %+v, error %v): %w",
				p.Name, s, err, ctx.Err())
		case <-ticker.C:
		}
	}
}

// Kill SIGKILLs the pod: abrupt death. The kernel closes its open
// connections mid-request (the client sees EOF or a reset) and refuses new
// ones, since the address stays up with nothing listening. The pod stays in the EndpointSlice until the test removes
// it, as a real cluster lags too. Killing an exited pod does nothing.
func (p *Pod) Kill() error {
	if err := p.proc.Kill(); err != nil {
		return fmt.Errorf("testpods: kill pod %s: %w", p.Name, err)
	}
	p.cluster.log.Info("pod killed", "pod", p.Namespace+"/"+p.Name)
	return nil
}

// Terminate sends SIGTERM and waits until the pod has exited: it stops
// accepting connections, finishes in-flight requests and exits, like a
// well-behaved real pod. It returns an error if ctx ends first (the pod
// keeps shutting down; Close kills it) or if the pod exited non-zero (its
// grace period expired). The pod stays in the EndpointSlice until the test
// removes it. Terminating an exited pod returns nil.
func (p *Pod) Terminate(ctx context.Context) error {
	select {
	case <-p.proc.Exited():
		return nil
	default:
	}
	if err := p.proc.Cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("testpods: terminate pod %s: %w", p.Name, err)
	}
	select {
	case <-p.proc.Exited():
	case <-ctx.Done():
		return fmt.Errorf("testpods: terminate pod %s: %w", p.Name, ctx.Err())
	}
	p.cluster.log.Info("pod terminated", "pod", p.Namespace+"/"+p.Name, "result", fmt.Sprint(p.proc.Err()))
	if p.proc.Err() != nil {
		return fmt.Errorf("testpods: pod %s did not shut down cleanly: %w; its output:\n%s",
			p.Name, p.proc.Err(), p.proc.Output.Tail())
	}
	return nil
}
