package nodeagent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/podnet"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// podRunner runs one Pod: its network namespace, its containers (one
// process each), their probes and restarts, its status, its termination.
type podRunner struct {
	node  *node
	agent *Agent
	log   *slog.Logger
	uid   types.UID
	ns    string
	name  string
	seen  time.Time

	updates   chan struct{} // the pod object changed (size 1)
	gone      chan struct{} // the object was deleted behind our back
	goneOnce  sync.Once
	stop      chan struct{} // termination started: containers stop restarting
	stopOnce  sync.Once
	kick      chan struct{} // status changed (size 1)
	writeMu   sync.Mutex
	lastPatch []byte

	mu          sync.Mutex
	pod         *corev1.Pod // latest object seen
	host        int         // address within the node's /24, 0 = none
	net         podnet.Pod
	netReady    bool
	netErr      string
	startTime   metav1.Time
	containers  []*container
	conditions  map[corev1.PodConditionType]*condition
	terminating bool
	terminal    corev1.PodPhase // set once everything has stopped for good
	readyLogged bool
}

func newPodRunner(n *node, pod *corev1.Pod) *podRunner {
	r := &podRunner{
		node: n, agent: n.agent, uid: pod.UID, ns: pod.Namespace, name: pod.Name, seen: time.Now(),
		log:     n.log.With("namespace", pod.Namespace, "name", pod.Name, "kind", "Pod"),
		updates: make(chan struct{}, 1), gone: make(chan struct{}), stop: make(chan struct{}),
		kick: make(chan struct{}, 1), pod: pod, startTime: metav1.Now(),
		conditions: map[corev1.PodConditionType]*condition{},
	}
	for _, c := range pod.Spec.Containers {
		r.containers = append(r.containers, &container{
			runner: r, spec: c, exited: make(chan struct{}),
			state: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}},
		})
	}
	return r
}

func (r *podRunner) update(pod *corev1.Pod) {
	r.mu.Lock()
	r.pod = pod
	r.mu.Unlock()
	select {
	case r.updates <- struct{}{}:
	default:
	}
}

func (r *podRunner) objectGone() { r.goneOnce.Do(func() { close(r.gone) }) }

func (r *podRunner) latest() *corev1.Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pod
}

// changed marks the status dirty; the writer coalesces bursts.
func (r *podRunner) changed() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// run is the pod's life on this node, from first sight to the final
// deletion (or to Close, or to a force deletion).
func (r *podRunner) run() {
	a := r.agent
	writerDone := make(chan struct{})
	writerCtx, stopWriter := context.WithCancel(a.ctx)
	go func() {
		defer close(writerDone)
		r.statusWriter(writerCtx)
	}()
	defer func() {
		stopWriter()
		<-writerDone
	}()
	r.changed()

	// A failed sandbox is tried again, with a back-off, as kubelet does.
	var retry <-chan time.Time
	wait := time.Second
	if r.latest().DeletionTimestamp == nil && !r.setUp() {
		retry = time.After(wait)
	}
	for {
		if r.latest().DeletionTimestamp != nil {
			r.terminate()
			return
		}
		select {
		case <-retry:
			retry = nil
			if !r.setUp() {
				wait = min(2*wait, 30*time.Second)
				retry = time.After(wait)
			}
		case <-r.updates:
		case <-r.gone:
			r.log.Info("pod object deleted without graceful termination; killing")
			r.kill(context.Background())
			return
		case <-a.ctx.Done():
			r.kill(context.Background())
			return
		}
	}
}

// setUp creates the sandbox (netns, address) and starts the containers;
// false if the sandbox could not be made.
func (r *podRunner) setUp() bool {
	a := r.agent
	host, err := r.node.allocateHost()
	if err == nil {
		var pn podnet.Pod
		pn, err = r.node.host.AddPod(a.ctx, host, r.ns+"-"+r.name)
		if err != nil {
			r.node.releaseHost(host)
		} else {
			r.mu.Lock()
			r.host, r.net, r.netReady = host, pn, true
			r.mu.Unlock()
		}
	}
	if err != nil {
		r.log.Error("pod sandbox failed", "err", err)
		r.mu.Lock()
		r.netErr = err.Error()
		r.mu.Unlock()
		r.event(corev1.EventTypeWarning, "FailedCreatePodSandBox", err.Error())
		r.changed()
		return false
	}
	r.log.Info("pod sandbox ready", "podIP", r.net.IP.String(), "netns", r.net.Netns)
	r.mu.Lock()
	r.netErr = ""
	for _, c := range r.containers {
		c.launched = true
	}
	r.mu.Unlock()
	r.changed()
	for _, c := range r.containers {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			c.run()
		}()
	}
	return true
}

// terminate is the graceful deletion: preStop, SIGTERM, SIGKILL after the
// grace period, then the sandbox goes and the object is deleted.
func (r *podRunner) terminate() {
	pod := r.latest()
	grace := int64(30)
	if pod.DeletionGracePeriodSeconds != nil {
		grace = *pod.DeletionGracePeriodSeconds
	} else if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	deadline := time.Now().Add(time.Duration(grace) * time.Second)
	r.mu.Lock()
	r.terminating = true
	r.mu.Unlock()
	r.stopOnce.Do(func() { close(r.stop) })
	r.log.Info("terminating pod", "grace", time.Duration(grace)*time.Second)

	var wg sync.WaitGroup
	for _, c := range r.containers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.stopGracefully(deadline, "Stopping container "+c.spec.Name)
		}()
	}
	// The force deletion of a pod or Close may cut the wait short.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-r.gone:
		r.kill(context.Background())
		return
	case <-r.agent.ctx.Done():
		r.kill(context.Background())
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r.mu.Lock()
	r.terminal = corev1.PodSucceeded
	for _, c := range r.containers {
		if t := c.state.Terminated; t == nil || t.ExitCode != 0 {
			r.terminal = corev1.PodFailed
		}
	}
	r.mu.Unlock()
	r.tearDownSandbox(ctx)
	if err := r.writeStatus(ctx); err != nil {
		r.log.Warn("final pod status", "err", err)
	}
	finalDelete(r.agent, pod)
}

// finalDelete removes the pod object once nothing of it runs: grace 0 and
// the UID as precondition, so a new pod of the same name is never hit.
func finalDelete(a *Agent, pod *corev1.Pod) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := a.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		a.log.Warn("final pod deletion failed", "namespace", pod.Namespace, "name", pod.Name, "err", err)
		return
	}
	a.log.Info("pod deleted", "namespace", pod.Namespace, "name", pod.Name, "kind", "Pod")
}

// kill ends everything at once (SIGKILL) and removes the sandbox.
func (r *podRunner) kill(ctx context.Context) {
	r.stopOnce.Do(func() { close(r.stop) })
	for _, c := range r.containers {
		c.killNow()
	}
	r.tearDownSandbox(ctx)
}

func (r *podRunner) tearDownSandbox(ctx context.Context) {
	r.mu.Lock()
	net, ready, host := r.net, r.netReady, r.host
	r.netReady = false
	r.mu.Unlock()
	if !ready {
		return
	}
	// Anything else that entered the namespace (an exec hook) goes too.
	if err := podnet.KillNetnsProcesses(ctx, r.agent.ip, net.Netns); err != nil {
		r.log.Warn("killing processes in the pod's netns", "err", err)
	}
	if err := r.node.host.RemovePod(ctx, net); err != nil {
		r.log.Warn("removing the pod's network", "err", err)
	}
	r.node.releaseHost(host)
	os.RemoveAll(r.agent.podPath(string(r.uid)))
}

// statusWriter writes the pod status whenever it changed, until ctx ends.
func (r *podRunner) statusWriter(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		}
		if err := r.writeStatus(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("pod status update failed", "err", err)
			// Try again shortly; the next change would too.
			time.AfterFunc(time.Second, r.changed)
		}
	}
}

func (r *podRunner) writeStatus(ctx context.Context) error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	status := r.status()
	patch, err := statusPatch(r.uid, status)
	if err != nil {
		return err
	}
	if bytes.Equal(patch, r.lastPatch) {
		return nil
	}
	_, err = r.agent.client.CoreV1().Pods(r.ns).Patch(ctx, r.name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone or replaced; the watch tells us
	}
	if err != nil {
		return err
	}
	r.lastPatch = patch
	r.mu.Lock()
	if !r.readyLogged && r.conditions[corev1.PodReady] != nil && r.conditions[corev1.PodReady].status == corev1.ConditionTrue {
		r.readyLogged = true
		r.log.Info("pod ready", "podIP", r.net.IP.String(), "sinceSeen", time.Since(r.seen).Round(time.Millisecond))
	}
	r.mu.Unlock()
	return nil
}

// status is the PodStatus a kubelet would report now.
func (r *podRunner) status() corev1.PodStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := metav1.Now()
	st := corev1.PodStatus{
		HostIP:    r.node.host.Gateway().String(),
		HostIPs:   []corev1.HostIP{{IP: r.node.host.Gateway().String()}},
		StartTime: &r.startTime,
	}
	if r.netReady || (r.host != 0 && r.terminal != "") {
		st.PodIP = r.net.IP.String()
		st.PodIPs = []corev1.PodIP{{IP: st.PodIP}}
	}
	allReady, anyRunning, allDone, anyRan := len(r.containers) > 0, false, true, false
	for _, c := range r.containers {
		cs := c.statusLocked()
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		allReady = allReady && cs.Ready
		anyRunning = anyRunning || cs.State.Running != nil
		allDone = allDone && c.done
		anyRan = anyRan || cs.State.Running != nil || cs.State.Terminated != nil || cs.LastTerminationState.Terminated != nil
	}
	switch {
	case r.terminal != "":
		st.Phase = r.terminal
	case anyRunning:
		st.Phase = corev1.PodRunning
	case allDone && len(r.containers) > 0:
		st.Phase = corev1.PodSucceeded
		for _, c := range r.containers {
			if t := c.state.Terminated; t == nil || t.ExitCode != 0 {
				st.Phase = corev1.PodFailed
			}
		}
	case anyRan:
		st.Phase = corev1.PodRunning // restarting after an exit
	default:
		st.Phase = corev1.PodPending
	}
	if r.netErr != "" {
		st.Message = "pod sandbox: " + r.netErr
		st.Reason = "FailedCreatePodSandBox"
	}
	set := func(t corev1.PodConditionType, s corev1.ConditionStatus, reason string) corev1.PodCondition {
		c := r.conditions[t]
		if c == nil || c.status != s || c.reason != reason {
			c = &condition{status: s, reason: reason, since: now}
			r.conditions[t] = c
		}
		return corev1.PodCondition{Type: t, Status: s, Reason: reason, LastTransitionTime: c.since}
	}
	ready := allReady && anyRunning
	notReady := ""
	if !ready {
		notReady = "ContainersNotReady"
		if st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed {
			notReady = "PodCompleted"
		}
	}
	sandbox := r.netReady && st.Phase != corev1.PodSucceeded && st.Phase != corev1.PodFailed
	ours := []corev1.PodCondition{
		set(corev1.PodReadyToStartContainers, boolStatus(sandbox), ""),
		set(corev1.PodInitialized, corev1.ConditionTrue, ""),
		set(corev1.ContainersReady, boolStatus(ready), notReady),
		set(corev1.PodReady, boolStatus(ready), notReady),
		set(corev1.PodScheduled, corev1.ConditionTrue, ""),
	}
	// Conditions of other writers (DisruptionTarget, readiness gates)
	// stay: a merge patch replaces the whole list.
	for _, c := range r.pod.Status.Conditions {
		mine := false
		for _, o := range ours {
			mine = mine || o.Type == c.Type
		}
		if !mine {
			ours = append(ours, c)
		}
	}
	st.Conditions = ours
	return st
}

// event records a Kubernetes Event about the pod; failures only log.
func (r *podRunner) event(kind, reason, message string) {
	ctx, cancel := context.WithTimeout(r.agent.ctx, 5*time.Second)
	defer cancel()
	now := metav1.Now()
	_, err := r.agent.client.CoreV1().Events(r.ns).Create(ctx, &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: r.name + ".", Namespace: r.ns},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: r.ns, Name: r.name,
			UID: r.uid},
		Type: kind, Reason: reason, Message: message, Count: 1, FirstTimestamp: now, LastTimestamp: now,
		Source: corev1.EventSource{Component: "bulkhead-nodeagent", Host: r.node.name},
	}, metav1.CreateOptions{})
	if err != nil && r.agent.ctx.Err() == nil {
		r.log.Debug("event not recorded", "reason", reason, "err", err)
	}
	r.log.Info("pod event", "type", kind, "reason", reason, "message", message)
}

// execInPod runs argv in the pod's network namespace (exec hooks and exec
// probes). There is no image filesystem: the command must exist on the
// host; when it does not, the error says so.
func (r *podRunner) execInPod(ctx context.Context, argv []string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("empty command")
	}
	if _, err := exec.LookPath(argv[0]); err != nil {
		return nil, fmt.Errorf("command %q does not exist here (no image filesystem; host commands only): %w", argv[0], err)
	}
	r.mu.Lock()
	netns, ready := r.net.Netns, r.netReady
	r.mu.Unlock()
	if !ready {
		return nil, errors.New("pod has no network namespace")
	}
	cmd := exec.CommandContext(ctx, r.agent.ip.Path(), append([]string{"netns", "exec", netns}, argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	return cmd.CombinedOutput()
}
