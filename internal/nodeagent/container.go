package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/podnet"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// container is one container of a pod: one process at a time.
type container struct {
	runner *podRunner
	spec   corev1.Container
	exited chan struct{} // closed when run returns

	// Guarded by runner.mu.
	state        corev1.ContainerState
	last         corev1.ContainerState
	restarts     int32
	ready        bool
	started      bool
	done         bool // will not run again
	runs         int  // processes started so far
	launched     bool // run was started (exited will close)
	proc         *podnet.Process
	id           string
	image        Image
	killedReason string // why we killed the running process, if we did
}

// statusLocked is the ContainerStatus now; runner.mu is held.
func (c *container) statusLocked() corev1.ContainerStatus {
	cs := corev1.ContainerStatus{
		Name: c.spec.Name, Image: c.spec.Image, ImageID: "",
		State: c.state, LastTerminationState: c.last, RestartCount: c.restarts,
		Ready: c.ready && c.state.Running != nil, Started: ptr.To(c.started && c.state.Running != nil),
		ContainerID: c.id,
	}
	if c.image.Package != "" {
		cs.ImageID = "bulkhead.local/program@" + c.image.Package
	}
	return cs
}

func (c *container) set(f func()) {
	r := c.runner
	r.mu.Lock()
	f()
	r.mu.Unlock()
	r.changed()
}

// run starts the container's process and restarts it per restartPolicy
// until the pod stops.
func (c *container) run() {
	defer close(c.exited)
	r := c.runner
	log := r.log.With("container", c.spec.Name)

	image, err := lookupImage(c.spec.Image)
	if err != nil {
		reason := "ErrImagePull"
		var invalid *invalidImageError
		if errors.As(err, &invalid) {
			reason = "InvalidImageName"
		}
		c.set(func() {
			c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: err.Error()}}
		})
		r.event(corev1.EventTypeWarning, "Failed", "Failed to pull image \""+c.spec.Image+"\": "+err.Error())
		return
	}
	c.set(func() { c.image = image })
	binary, err := r.agent.program(r.agent.ctx, image.Package)
	if err != nil {
		c.set(func() {
			c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: err.Error()}}
		})
		r.event(corev1.EventTypeWarning, "Failed", err.Error())
		return
	}

	policy := r.latest().Spec.RestartPolicy
	failures := 0 // for the back-off; reset after a long run
	for {
		select {
		case <-r.stop:
			c.set(func() { c.done = true })
			return
		default:
		}
		argv, env, err := c.prepare(image)
		var startedAt time.Time
		if err == nil {
			startedAt = time.Now()
			err = c.start(binary, argv, env)
		}
		if err != nil {
			log.Warn("container did not start", "err", err)
			c.set(func() {
				c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}}
			})
			r.event(corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		} else {
			c.supervise(log)
			if time.Since(startedAt) > 10*time.Minute {
				failures = 0
			}
		}

		c.runner.mu.Lock()
		t := c.state.Terminated
		restart := policy == corev1.RestartPolicyAlways || policy == "" ||
			(policy == corev1.RestartPolicyOnFailure && (t == nil || t.ExitCode != 0))
		c.runner.mu.Unlock()
		select {
		case <-r.stop:
			restart = false
		default:
		}
		if !restart {
			c.set(func() { c.done = true })
			return
		}
		failures++
		wait := c.backoff(failures)
		if wait > 0 {
			msg := fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s", wait, c.spec.Name, r.name, r.ns)
			c.set(func() {
				if c.state.Terminated != nil {
					c.last = c.state
				}
				c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: msg}}
			})
			r.event(corev1.EventTypeWarning, "BackOff", msg)
			timer := time.NewTimer(wait)
			select {
			case <-timer.C:
			case <-r.stop:
				timer.Stop()
			}
		}
	}
}

// backoff is the wait before restart n (1-based): none for the first,
// then BackoffBase doubling up to BackoffMax, as kubelet.
func (c *container) backoff(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	o := c.runner.agent.opts
	d := o.BackoffBase
	for i := 2; i < n && d < o.BackoffMax; i++ {
		d *= 2
	}
	return min(d, o.BackoffMax)
}

// start launches the process in the pod's netns.
func (c *container) start(binary string, argv, env []string) error {
	r := c.runner
	r.mu.Lock()
	netns, ok := r.net.Netns, r.netReady
	r.mu.Unlock()
	if !ok {
		return errors.New("pod has no network namespace")
	}
	cmd := exec.Command(r.agent.ip.Path(), append([]string{"netns", "exec", netns, binary}, argv...)...)
	cmd.Env = env
	out := podnet.NewOutput(r.log.With("container", c.spec.Name))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	if err := r.agent.spawner.Start(cmd); err != nil {
		return fmt.Errorf("start %s: %w", binary, err)
	}
	proc := podnet.Watch(cmd, out)
	hasStartup := c.spec.StartupProbe != nil
	hasReadiness := c.spec.ReadinessProbe != nil
	c.set(func() {
		if c.state.Terminated != nil {
			c.last = c.state
		}
		if c.runs > 0 {
			c.restarts++
		}
		c.runs++
		c.proc = proc
		c.killedReason = ""
		c.id = "bulkhead://" + strconv.Itoa(cmd.Process.Pid)
		c.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}
		c.started = !hasStartup
		c.ready = !hasStartup && !hasReadiness
	})
	r.event(corev1.EventTypeNormal, "Started", "Started container "+c.spec.Name)
	return nil
}

// supervise runs the probes of the running process and waits for it to
// exit (by itself, killed after a failed liveness or startup probe, or
// stopped by the pod's termination), then records the termination.
func (c *container) supervise(log *slog.Logger) {
	r := c.runner
	r.mu.Lock()
	proc := c.proc
	r.mu.Unlock()
	probeCtx, cancelProbes := context.WithCancel(r.agent.ctx)
	unhealthy := make(chan string, 1)
	go c.runProbes(probeCtx, proc, unhealthy)

	select {
	case <-proc.Exited():
	case reason := <-unhealthy:
		c.set(func() { c.killedReason = reason })
		r.event(corev1.EventTypeNormal, "Killing", "Container "+c.spec.Name+" "+reason+", will be restarted")
		c.stopGracefully(time.Now().Add(c.probeGrace()), "")
		<-proc.Exited()
	}
	cancelProbes()
	code := proc.ExitCode()
	log.Info("container exited", "code", code, "err", fmt.Sprint(proc.Err()))
	c.set(func() {
		reason := "Completed"
		if code != 0 {
			reason = "Error"
		}
		var started metav1.Time
		if c.state.Running != nil {
			started = c.state.Running.StartedAt
		}
		c.state = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: int32(code), Reason: reason, StartedAt: started, FinishedAt: metav1.Now(),
			ContainerID: c.id, Message: c.killedReason,
		}}
		if code >= 128 {
			c.state.Terminated.Signal = int32(code - 128)
		}
		c.ready, c.started = false, false
	})
}

// probeGrace is the grace period of a kill after a failed probe: the
// probe's own terminationGracePeriodSeconds, else the pod's.
func (c *container) probeGrace() time.Duration {
	for _, p := range []*corev1.Probe{c.spec.LivenessProbe, c.spec.StartupProbe} {
		if p != nil && p.TerminationGracePeriodSeconds != nil {
			return time.Duration(*p.TerminationGracePeriodSeconds) * time.Second
		}
	}
	if g := c.runner.latest().Spec.TerminationGracePeriodSeconds; g != nil {
		return time.Duration(*g) * time.Second
	}
	return 30 * time.Second
}

// stopGracefully stops a running container as kubelet does: the preStop
// hook (bounded by deadline), SIGTERM, and SIGKILL at deadline but at
// least 2 s after SIGTERM. It returns when the process is gone. event, if
// set, is recorded as a Killing event (the liveness path records its own).
func (c *container) stopGracefully(deadline time.Time, event string) {
	r := c.runner
	r.mu.Lock()
	proc := c.proc
	running := c.state.Running != nil
	r.mu.Unlock()
	if proc == nil || !running {
		return
	}
	select {
	case <-proc.Exited():
		return
	default:
	}
	if event != "" {
		r.event(corev1.EventTypeNormal, "Killing", event)
	}
	if h := c.spec.Lifecycle; h != nil && h.PreStop != nil {
		ctx, cancel := context.WithDeadline(r.agent.ctx, deadline)
		start := time.Now()
		err := c.runHook(ctx, h.PreStop)
		cancel()
		r.log.Info("preStop hook ran", "container", c.spec.Name, "took", time.Since(start).Round(time.Millisecond), "err", fmt.Sprint(err))
		if err != nil {
			r.event(corev1.EventTypeWarning, "FailedPreStopHook", "PreStopHook failed: "+err.Error())
		}
	}
	if deadline.Sub(time.Now()) < 2*time.Second {
		deadline = time.Now().Add(2 * time.Second)
	}
	syscall.Kill(proc.Cmd.Process.Pid, syscall.SIGTERM)
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-proc.Exited():
	case <-timer.C:
		r.log.Info("grace period over, killing", "container", c.spec.Name)
		proc.Kill()
	case <-r.agent.ctx.Done():
		proc.Kill()
	}
	<-proc.Exited()
}

// killNow SIGKILLs the running process (Close, force deletion) and waits
// for the container's goroutine to end.
func (c *container) killNow() {
	r := c.runner
	r.mu.Lock()
	proc, launched := c.proc, c.launched
	r.mu.Unlock()
	if proc != nil {
		proc.Kill()
	}
	if !launched {
		return
	}
	select {
	case <-c.exited:
	case <-time.After(15 * time.Second):
	}
}
