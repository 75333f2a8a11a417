package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/podnet"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// Node labels every node carries.
const (
	LabelHostname = "kubernetes.io/hostname"
	LabelZone     = "topology.kubernetes.io/zone"
	LabelOS       = "kubernetes.io/os"
	LabelArch     = "kubernetes.io/arch"

	leaseNamespace = "kube-node-lease"
	// kubeletVersion is what nodes report: the control plane's release
	// (hack/kube) with a "-bulkhead" suffix that tells anyone reading
	// `kubectl get nodes` that no kubelet runs here.
	kubeletVersion = "v1.36.3-bulkhead"
)

// node is one registered Node, its /24 and its pods.
type node struct {
	agent *Agent
	name  string
	zone  string
	host  *podnet.Host
	log   *slog.Logger
	uid   types.UID

	mu       sync.Mutex
	pods     map[types.UID]*podRunner
	finished map[types.UID]bool // runners ended; late events are ignored
	usedIPs  map[int]bool
	nextHost int
	closing  bool
}

func newNode(a *Agent, name, zone string, host *podnet.Host) *node {
	return &node{
		agent: a, name: name, zone: zone, host: host, log: a.log.With("node", name),
		pods: map[types.UID]*podRunner{}, finished: map[types.UID]bool{}, usedIPs: map[int]bool{}, nextHost: 2,
	}
}

func (n *node) object() *corev1.Node {
	o := n.agent.opts
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(o.CPU),
		corev1.ResourceMemory: resource.MustParse(o.Memory),
		corev1.ResourcePods:   *resource.NewQuantity(int64(o.MaxPods), resource.DecimalSI),
	}
	cidr := n.host.Subnet().String()
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: n.name,
			Labels: map[string]string{
				LabelHostname: n.name, LabelZone: n.zone, LabelOS: "linux", LabelArch: runtime.GOARCH,
				"topology.kubernetes.io/region": "local",
			},
			Annotations: map[string]string{"bulkhead.dev/node-agent": "pods are processes in network namespaces"},
		},
		Spec: corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}, ProviderID: "bulkhead://" + n.name},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
			Phase:       corev1.NodeRunning,
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: n.host.Gateway().String()},
				{Type: corev1.NodeHostName, Address: n.name},
			},
			NodeInfo: corev1.NodeSystemInfo{
				KubeletVersion: kubeletVersion, OperatingSystem: "linux", Architecture: runtime.GOARCH,
				ContainerRuntimeVersion: "bulkhead-nodeagent://1", OSImage: "bulkhead node agent",
			},
		},
	}
}

func (n *node) conditions(now metav1.Time) []corev1.NodeCondition {
	c := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg,
			LastHeartbeatTime: now, LastTransitionTime: now}
	}
	return []corev1.NodeCondition{
		c(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "bulkhead node agent"),
		c(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "bulkhead node agent"),
		c(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "bulkhead node agent"),
		c(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "bulkhead node agent is posting ready status"),
	}
}

// register creates the Node (or takes over one of the same name) and
// writes its status. A Node left by an earlier run with another pod range
// is deleted first: spec.podCIDR cannot change, and pods bound to the old
// node are gone with its network anyway (the pod GC controller deletes
// them once their node is gone).
func (n *node) register(ctx context.Context) error {
	nodes := n.agent.client.CoreV1().Nodes()
	want := n.object()
	existing, err := nodes.Get(ctx, n.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("nodeagent: get node %s: %w", n.name, err)
	case existing.Spec.PodCIDR != "" && existing.Spec.PodCIDR != want.Spec.PodCIDR:
		n.log.Info("replacing node of an earlier run", "oldPodCIDR", existing.Spec.PodCIDR)
		if err := nodes.Delete(ctx, n.name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &existing.UID}}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("nodeagent: delete stale node %s: %w", n.name, err)
		}
		existing = nil
	default:
		existing.Labels = mergeMaps(existing.Labels, want.Labels)
		existing.Annotations = mergeMaps(existing.Annotations, want.Annotations)
		existing.Spec.PodCIDR, existing.Spec.PodCIDRs, existing.Spec.ProviderID = want.Spec.PodCIDR, want.Spec.PodCIDRs, want.Spec.ProviderID
		existing.Spec.Unschedulable = false
		updated, err := nodes.Update(ctx, existing, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("nodeagent: update node %s: %w", n.name, err)
		}
		n.uid = updated.UID
	}
	if n.uid == "" {
		created, err := nodes.Create(ctx, want, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("nodeagent: create node %s: %w", n.name, err)
		}
		n.uid = created.UID
	}
	if err := n.writeStatus(ctx); err != nil {
		return err
	}
	if err := n.renewLease(ctx); err != nil {
		return err
	}
	n.log.Info("node registered", "podCIDR", want.Spec.PodCIDR, "internalIP", n.host.Gateway().String(), "zone", n.zone)
	return nil
}

func mergeMaps(dst, src map[string]string) map[string]string {
	if dst == nil {
		dst = map[string]string{}
	}
	for k, v := range src {
		dst[k] = v
	}
	return dst
}

// writeStatus writes the whole node status (a merge patch of the status
// subresource: ours is the only writer).
func (n *node) writeStatus(ctx context.Context) error {
	want := n.object()
	want.Status.Conditions = n.conditions(metav1.Now())
	patch, err := statusPatch(n.uid, want.Status)
	if err != nil {
		return err
	}
	_, err = n.agent.client.CoreV1().Nodes().Patch(ctx, n.name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return fmt.Errorf("nodeagent: node %s status: %w", n.name, err)
	}
	return nil
}

// renewLease creates or renews the node's Lease in kube-node-lease, the
// heartbeat the node lifecycle controller watches.
func (n *node) renewLease(ctx context.Context) error {
	leases := n.agent.client.CoordinationV1().Leases(leaseNamespace)
	now := metav1.NewMicroTime(time.Now())
	seconds := int32(n.agent.opts.LeaseDuration / time.Second)
	lease, err := leases.Get(ctx, n.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: n.name, Namespace: leaseNamespace,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.name, UID: n.uid}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(n.name), LeaseDurationSeconds: &seconds, RenewTime: &now},
		}, metav1.CreateOptions{})
	} else if err == nil {
		lease.Spec.HolderIdentity, lease.Spec.LeaseDurationSeconds, lease.Spec.RenewTime = ptr.To(n.name), &seconds, &now
		lease.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.name, UID: n.uid}}
		_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("nodeagent: lease of node %s: %w", n.name, err)
	}
	return nil
}

// run starts the heartbeats and the pod watch.
func (n *node) run(ctx context.Context) error {
	a := n.agent
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		n.heartbeat()
	}()
	factory := informers.NewSharedInformerFactoryWithOptions(a.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", n.name).String()
		}),
		informers.WithTransform(func(obj any) (any, error) {
			if m, ok := obj.(metav1.Object); ok {
				m.SetManagedFields(nil)
			}
			return obj, nil
		}))
	inf := factory.Core().V1().Pods().Informer()
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { n.podChanged(obj) },
		UpdateFunc: func(_, obj any) { n.podChanged(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				n.podGone(p)
			}
		},
	})
	factory.Start(a.ctx.Done())
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		<-a.ctx.Done()
		factory.Shutdown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return fmt.Errorf("nodeagent: pods of node %s: cache did not sync: %w", n.name, errors.Join(ctx.Err(), a.ctx.Err()))
	}
	return nil
}

func (n *node) heartbeat() {
	a := n.agent
	leaseEvery := a.opts.LeaseDuration / 4
	lease := time.NewTicker(leaseEvery)
	defer lease.Stop()
	status := time.NewTicker(a.opts.StatusInterval)
	defer status.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-lease.C:
			ctx, cancel := context.WithTimeout(a.ctx, leaseEvery)
			if err := n.renewLease(ctx); err != nil && a.ctx.Err() == nil {
				n.log.Warn("lease renewal failed", "err", err)
			}
			cancel()
		case <-status.C:
			ctx, cancel := context.WithTimeout(a.ctx, leaseEvery)
			if err := n.writeStatus(ctx); err != nil && a.ctx.Err() == nil {
				n.log.Warn("node status update failed", "err", err)
			}
			cancel()
		}
	}
}

// podChanged hands a pod event to the pod's runner, starting one for a
// pod new to this node.
func (n *node) podChanged(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closing {
		return
	}
	if r := n.pods[pod.UID]; r != nil {
		r.update(pod)
		return
	}
	if n.finished[pod.UID] {
		return
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		if pod.DeletionTimestamp != nil {
			// Finished before this agent started: nothing runs, so it
			// only needs the final deletion.
			n.agent.wg.Add(1)
			go func() {
				defer n.agent.wg.Done()
				finalDelete(n.agent, pod)
			}()
		}
		return
	}
	r := newPodRunner(n, pod)
	n.pods[pod.UID] = r
	n.agent.wg.Add(1)
	go func() {
		defer n.agent.wg.Done()
		r.run()
		n.mu.Lock()
		delete(n.pods, pod.UID)
		n.finished[pod.UID] = true
		n.mu.Unlock()
	}()
}

// podGone stops a pod whose object disappeared without our final delete
// (a force deletion): kill everything at once, as a kubelet does.
func (n *node) podGone(pod *corev1.Pod) {
	n.mu.Lock()
	r := n.pods[pod.UID]
	delete(n.finished, pod.UID)
	n.mu.Unlock()
	if r != nil {
		r.objectGone()
	}
}

// allocateHost picks the pod's address (host number in the /24),
// round-robin so that a just-freed address, which may still sit in an
// EndpointSlice, is reused last.
func (n *node) allocateHost() (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for range 253 {
		h := n.nextHost
		n.nextHost++
		if n.nextHost > 254 {
			n.nextHost = 2
		}
		if !n.usedIPs[h] {
			n.usedIPs[h] = true
			return h, nil
		}
	}
	return 0, fmt.Errorf("no free address in %s", n.host.Subnet())
}

func (n *node) releaseHost(h int) {
	n.mu.Lock()
	delete(n.usedIPs, h)
	n.mu.Unlock()
}

// close kills the node's pods, removes its network and, if asked, the
// Node. Runners have already ended (the agent's context is cancelled and
// its goroutines waited for), so only their leftovers remain.
func (n *node) close(ctx context.Context) error {
	n.mu.Lock()
	n.closing = true
	n.mu.Unlock()
	var errs []error
	if err := n.host.TearDown(ctx); err != nil {
		errs = append(errs, err)
	}
	if n.agent.opts.DeleteNodesOnClose && n.uid != "" {
		err := n.agent.client.CoreV1().Nodes().Delete(ctx, n.name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &n.uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("nodeagent: delete node %s: %w", n.name, err))
		}
	}
	return errors.Join(errs...)
}
