package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	// DefaultNodeMonitorGracePeriod is Options.NodeMonitorGracePeriod's
	// default: a Node whose Lease is not renewed for 40 s is marked
	// NotReady (Ready=Unknown) within about 42 s (the controller looks
	// every 2 s). That is four renewals of a node agent renewing like a
	// kubelet (every 10 s), so a loaded machine does not flap Nodes, and
	// longer than the 20 s API server outages of the e2e tests, which a
	// cluster should ride out without marking every Node NotReady.
	// Kubernetes' own default is 50 s.
	DefaultNodeMonitorGracePeriod = 40 * time.Second
	// DefaultPodEvictionToleration is Options.PodEvictionToleration's
	// default: a pod is evicted 30 s after its node was tainted not-ready
	// or unreachable (Kubernetes' default is 300 s), so a node's pods are
	// deleted about 70 s after its agent stopped.
	DefaultPodEvictionToleration = 30 * time.Second
)

// ManagedControllers are the kube-controller-manager controllers a
// ControlPlane with Options.Controllers runs: those a real cluster needs for
// workloads, Services, namespaces and nodes. Not among them: node IPAM (a
// Node's podCIDR is the node agent's to set, from the /24 its pod network
// holds), cloud, volume, certificate-signing, bootstrap-token, resource
// quota, HPA and DRA controllers. Their short aliases (deployment,
// endpointslice, garbagecollector, nodelifecycle, ...) name the same ones.
var ManagedControllers = []string{
	"deployment-controller",
	"replicaset-controller",
	"statefulset-controller",
	"daemonset-controller",
	"job-controller",
	"cronjob-controller",
	"ttl-after-finished-controller",
	"disruption-controller",
	"endpoints-controller",
	"endpointslice-controller",
	"endpointslice-mirroring-controller",
	"namespace-controller",
	"garbage-collector-controller",
	"pod-garbage-collector-controller",
	"node-lifecycle-controller",
	"taint-eviction-controller", // evicts pods of tainted (not-ready, unreachable, drained) nodes
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"root-ca-certificate-publisher-controller", // kube-root-ca.crt in every namespace
	"clusterrole-aggregation-controller",       // the admin, edit and view roles
}

// The users the controllers authenticate as. Kubernetes' bootstrap RBAC
// policy binds its system:kube-controller-manager and system:kube-scheduler
// roles to them, so they run with the rights they have in a kubeadm cluster.
const (
	controllerManagerUser = "system:kube-controller-manager"
	schedulerUser         = "system:kube-scheduler"
)

// StartControllers starts kube-controller-manager and kube-scheduler on a
// running control plane (Start does with Options.Controllers) and waits
// until both answer /healthz. Their controllers then sync their caches and
// begin work on their own: callers wait for the effect they need. Stop
// stops them. An error if they already run.
func (cp *ControlPlane) StartControllers(ctx context.Context) error {
	if cp.opts.Binaries.KubeControllerManager == "" || cp.opts.Binaries.KubeScheduler == "" {
		return errors.New("controllers need Binaries.KubeControllerManager and KubeScheduler (EnsureBinaries builds them)")
	}
	cp.mu.Lock()
	running := cp.ctrlMgr != nil || cp.scheduler != nil
	cp.mu.Unlock()
	if running {
		return errors.New("the controllers are already running")
	}
	certs := filepath.Join(cp.dir, "certs")
	kcmArgs := []string{
		"--kubeconfig=" + cp.componentKubeconfig(controllerManagerUser),
		"--leader-elect=false",
		"--controllers=" + strings.Join(ManagedControllers, ","),
		// Each controller gets its own service account (made through the
		// TokenRequest API) and so the RBAC rights it has in a real
		// cluster; a missing permission shows here as it would there.
		"--use-service-account-credentials=true",
		// Signs the tokens of legacy service-account token Secrets with the
		// key kube-apiserver verifies (and signs bound tokens) with.
		"--service-account-private-key-file=" + filepath.Join(certs, "service-account.key"),
		"--root-ca-file=" + cp.CAFile(),
		"--cluster-name=bulkhead-local",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--node-monitor-period=2s",
		"--node-monitor-grace-period=" + cp.opts.NodeMonitorGracePeriod.String(),
		// A node that registers without a Ready condition gets as long
		// before it is marked Unknown.
		"--node-startup-grace-period=" + cp.opts.NodeMonitorGracePeriod.String(),
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(cp.ctrlMgrPort),
		"--cert-dir=" + filepath.Join(certs, "kube-controller-manager"),
		"--profiling=false",
		"-v=0",
	}
	kcmArgs = append(kcmArgs, cp.opts.ControllerManagerArgs...)
	schedArgs := []string{
		"--kubeconfig=" + cp.componentKubeconfig(schedulerUser),
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(cp.schedulerPort),
		"--cert-dir=" + filepath.Join(certs, "kube-scheduler"),
		"-v=0",
	}
	schedArgs = append(schedArgs, cp.opts.SchedulerArgs...)

	kcm, err := startProcess(cp.opts.Binaries.KubeControllerManager, filepath.Join(cp.dir, "logs", "kube-controller-manager.log"), kcmArgs...)
	if err != nil {
		return err
	}
	cp.mu.Lock()
	cp.ctrlMgr = kcm
	cp.mu.Unlock()
	fmt.Fprintf(cp.opts.Progress, "kube-controller-manager started (pid %d)\n", kcm.pid())
	sched, err := startProcess(cp.opts.Binaries.KubeScheduler, filepath.Join(cp.dir, "logs", "kube-scheduler.log"), schedArgs...)
	if err != nil {
		return err
	}
	cp.mu.Lock()
	cp.scheduler = sched
	cp.mu.Unlock()
	fmt.Fprintf(cp.opts.Progress, "kube-scheduler started (pid %d)\n", sched.pid())

	// /healthz is always allowed anonymously; the serving certificates are
	// self-signed by each program.
	probe := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback health probe only
	}}
	defer probe.CloseIdleConnections()
	if err := waitReady(ctx, kcm, cp.opts.ReadyTimeout, probe, "https://127.0.0.1:"+strconv.Itoa(cp.ctrlMgrPort)+"/healthz"); err != nil {
		return err
	}
	return waitReady(ctx, sched, cp.opts.ReadyTimeout, probe, "https://127.0.0.1:"+strconv.Itoa(cp.schedulerPort)+"/healthz")
}

// ControllersRunning reports whether kube-controller-manager and
// kube-scheduler are both alive. They are meant to outlive every outage of
// kube-apiserver (KillAPIServer, FreezeAPIServer, RestartAPIServer) and
// reconnect on their own, as they do in a real cluster.
func (cp *ControlPlane) ControllersRunning() bool {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.ctrlMgr != nil && !cp.ctrlMgr.exited() && cp.scheduler != nil && !cp.scheduler.exited()
}

// ControllerPIDs are the process ids of kube-controller-manager and
// kube-scheduler (for measurements and fault injection); an error if the
// control plane runs without them or one has exited.
func (cp *ControlPlane) ControllerPIDs() (controllerManager, scheduler int, err error) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.ctrlMgr == nil || cp.scheduler == nil {
		return 0, 0, errors.New("the control plane runs without controllers (Options.Controllers)")
	}
	for _, p := range []*process{cp.ctrlMgr, cp.scheduler} {
		if p.exited() {
			return 0, 0, fmt.Errorf("%s has exited (%v); log: %s", filepath.Base(p.path), p.err, p.logPath)
		}
	}
	return cp.ctrlMgr.pid(), cp.scheduler.pid(), nil
}
