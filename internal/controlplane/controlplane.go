package controlplane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/bulkhead-router/bulkhead/internal/freeport"
)

// Options configure Start. The zero value is usable.
type Options struct {
	// Dir holds data, certificates, logs and the kubeconfig. Empty: a new
	// temporary directory, removed by Stop.
	Dir string
	// Binaries to run. Zero: EnsureBinaries.
	Binaries Binaries
	// Progress receives build progress and start-up messages. Nil: discarded.
	Progress io.Writer
	// ReadyTimeout bounds each wait for etcd or kube-apiserver to become
	// ready. Zero: 90 s (a loaded 2-core machine can be slow).
	ReadyTimeout time.Duration
	// Audit makes kube-apiserver write an audit line for every list and
	// watch of the kinds bulkhead reads (AuditEvents reads them back).
	Audit bool
	// APIServerArgs are more kube-apiserver flags.
	APIServerArgs []string

	// Controllers also starts kube-controller-manager (the controllers of
	// ManagedControllers) and kube-scheduler once kube-apiserver is ready
	// (StartControllers does it later on a running control plane),
	// so Deployments get ReplicaSets and Pods, Pods get bound to Nodes,
	// EndpointSlices follow Services and Pods, and deleted namespaces
	// finish. Off (the default), nothing but the test writes objects: no
	// EndpointSlice appears behind a test's back. Pods still need a node
	// agent to run them and to write their status.
	Controllers bool
	// NodeMonitorGracePeriod is how long a Node may go without renewing its
	// Lease in kube-node-lease (or changing its Ready condition's heartbeat)
	// before the node lifecycle controller sets Ready=Unknown, marks its
	// pods not ready and taints it node.kubernetes.io/unreachable. Zero:
	// DefaultNodeMonitorGracePeriod (40 s). A node agent should renew its
	// Lease at least four times within it. An API server outage longer
	// than it marks every Node NotReady once the server is back (their
	// renewals could not be seen), as in a real cluster; with all Nodes
	// NotReady the controller evicts nothing. Used by the controllers.
	NodeMonitorGracePeriod time.Duration
	// PodEvictionToleration is the tolerationSeconds kube-apiserver's
	// DefaultTolerationSeconds admission gives every new pod for the
	// not-ready and unreachable NoExecute taints: how long after its node
	// is marked unreachable or not ready a pod is evicted (deleted).
	// Zero: DefaultPodEvictionToleration (30 s). kube-apiserver is always
	// started with it, so StartControllers later is no different from
	// Options.Controllers; without controllers nothing acts on it.
	PodEvictionToleration time.Duration
	// ControllerManagerArgs and SchedulerArgs are more flags for those
	// programs, after the harness's own: a scalar flag given again wins, a
	// list flag (--controllers) given again is added to.
	ControllerManagerArgs []string
	SchedulerArgs         []string
}

// ControlPlane is a running etcd and kube-apiserver on loopback, and with
// Options.Controllers kube-controller-manager and kube-scheduler.
type ControlPlane struct {
	opts       Options
	dir        string
	removeDir  bool
	etcdURL    string
	etcdPeer   string
	apiPort    int
	token      string
	kubeconfig string

	ctrlMgrPort, schedulerPort int
	componentTokens            map[string]string // user name -> static token (controllers)

	mu        sync.Mutex
	etcd      *process
	apiserver *process
	ctrlMgr   *process // nil unless Options.Controllers
	scheduler *process // nil unless Options.Controllers
}

// Start runs etcd and kube-apiserver (and with Options.Controllers
// kube-controller-manager and kube-scheduler) and waits until each is ready
// (answers its health check).
func Start(ctx context.Context, opts Options) (_ *ControlPlane, err error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 90 * time.Second
	}
	if opts.NodeMonitorGracePeriod == 0 {
		opts.NodeMonitorGracePeriod = DefaultNodeMonitorGracePeriod
	}
	if opts.PodEvictionToleration == 0 {
		opts.PodEvictionToleration = DefaultPodEvictionToleration
	}
	if opts.Binaries.KubeAPIServer == "" {
		if opts.Binaries, err = EnsureBinaries(ctx, opts.Progress); err != nil {
			return nil, err
		}
	}
	cp := &ControlPlane{opts: opts, dir: opts.Dir}
	if cp.dir == "" {
		if cp.dir, err = os.MkdirTemp("", "bulkhead-controlplane-"); err != nil {
			return nil, err
		}
		cp.removeDir = true
	}
	defer func() {
		if err != nil {
			cp.Stop()
		}
	}()
	for _, sub := range []string{"etcd", "certs", "logs"} {
		if err := os.MkdirAll(filepath.Join(cp.dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	if err := cp.writeCredentials(); err != nil {
		return nil, err
	}
	ports, err := freeport.Get(5) // below the ephemeral range: the API server restarts on its port
	if err != nil {
		return nil, err
	}
	cp.etcdURL = "http://127.0.0.1:" + strconv.Itoa(ports[0])
	cp.etcdPeer = "http://127.0.0.1:" + strconv.Itoa(ports[1])
	cp.apiPort = ports[2]
	// The controllers' own HTTPS ports (health, metrics): not their fixed
	// defaults (10257, 10259), so parallel control planes do not collide.
	cp.ctrlMgrPort, cp.schedulerPort = ports[3], ports[4]

	if err := cp.startEtcd(ctx); err != nil {
		return nil, err
	}
	if err := cp.StartAPIServer(ctx); err != nil {
		return nil, err
	}
	if err := cp.writeKubeconfigs(); err != nil {
		return nil, err
	}
	if opts.Controllers {
		if err := cp.StartControllers(ctx); err != nil {
			return nil, err
		}
	}
	return cp, nil
}

// Dir is the control plane's working directory (logs are in Dir/logs).
func (cp *ControlPlane) Dir() string { return cp.dir }

// Kubeconfig is the path of a kubeconfig with cluster-admin rights.
func (cp *ControlPlane) Kubeconfig() string { return cp.kubeconfig }

// Binaries are the programs this control plane runs (kubectl among them).
func (cp *ControlPlane) Binaries() Binaries { return cp.opts.Binaries }

// URL is the kube-apiserver's address.
func (cp *ControlPlane) URL() string { return "https://127.0.0.1:" + strconv.Itoa(cp.apiPort) }

// CAFile is the kube-apiserver's serving certificate, which is also the CA a
// client trusts. It survives restarts.
func (cp *ControlPlane) CAFile() string { return filepath.Join(cp.dir, "certs", "apiserver.crt") }

// RESTConfig returns a new client configuration with cluster-admin rights.
func (cp *ControlPlane) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            cp.URL(),
		BearerToken:     cp.token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: cp.CAFile()},
		QPS:             1000,
		Burst:           2000,
	}
}

// Client returns a new clientset with cluster-admin rights.
func (cp *ControlPlane) Client() kubernetes.Interface {
	return kubernetes.NewForConfigOrDie(cp.RESTConfig())
}

// KillAPIServer SIGKILLs kube-apiserver, as the OOM killer would, and waits
// for it to be gone. etcd keeps running.
func (cp *ControlPlane) KillAPIServer() error {
	cp.mu.Lock()
	p := cp.apiserver
	cp.apiserver = nil
	cp.mu.Unlock()
	if p == nil {
		return errors.New("kube-apiserver is not running")
	}
	p.kill()
	return nil
}

// FreezeAPIServer SIGSTOPs kube-apiserver: its sockets stay open and nothing
// answers, like a hung server.
func (cp *ControlPlane) FreezeAPIServer() error { return cp.signalAPIServer(syscall.SIGSTOP) }

// ThawAPIServer SIGCONTs a frozen kube-apiserver.
func (cp *ControlPlane) ThawAPIServer() error { return cp.signalAPIServer(syscall.SIGCONT) }

func (cp *ControlPlane) signalAPIServer(sig syscall.Signal) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.apiserver == nil {
		return errors.New("kube-apiserver is not running")
	}
	return cp.apiserver.signal(sig)
}

// RestartAPIServer kills kube-apiserver if it runs and starts it again on
// the same port with the same certificates.
func (cp *ControlPlane) RestartAPIServer(ctx context.Context) error {
	cp.mu.Lock()
	p := cp.apiserver
	cp.apiserver = nil
	cp.mu.Unlock()
	if p != nil {
		p.kill() // SIGKILL ends a frozen (SIGSTOPped) process too
	}
	return cp.StartAPIServer(ctx)
}

// APIServerRunning reports whether a kube-apiserver process exists (it may
// be frozen).
func (cp *ControlPlane) APIServerRunning() bool {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.apiserver != nil && !cp.apiserver.exited()
}

// Stop kills every process (controllers, kube-apiserver, etcd) and, if
// Start made the directory, removes it. It is safe to call more than once.
func (cp *ControlPlane) Stop() {
	cp.mu.Lock()
	api, etcd := cp.apiserver, cp.etcd
	ctrlMgr, scheduler := cp.ctrlMgr, cp.scheduler
	cp.apiserver, cp.etcd, cp.ctrlMgr, cp.scheduler = nil, nil, nil, nil
	cp.mu.Unlock()
	// SIGKILL: with watchers connected kube-apiserver can take a minute to
	// leave on SIGTERM, and its state is throwaway. The controllers go
	// first so they do not log a storm of connection errors.
	for _, p := range []*process{ctrlMgr, scheduler} {
		if p != nil {
			p.kill()
		}
	}
	if api != nil {
		api.kill()
	}
	if etcd != nil {
		etcd.kill()
	}
	if cp.removeDir {
		os.RemoveAll(cp.dir)
	}
}

// WipeEtcd replaces etcd's data with an empty store, as a restored empty
// backup or a new cluster behind the same address would: etcd is killed,
// its data directory removed, and it is started again on the same port.
// Call it while kube-apiserver is stopped (KillAPIServer).
func (cp *ControlPlane) WipeEtcd(ctx context.Context) error {
	cp.mu.Lock()
	etcd := cp.etcd
	cp.etcd = nil
	cp.mu.Unlock()
	if etcd != nil {
		etcd.kill()
	}
	if err := os.RemoveAll(filepath.Join(cp.dir, "etcd")); err != nil {
		return err
	}
	return cp.startEtcd(ctx)
}

func (cp *ControlPlane) startEtcd(ctx context.Context) error {
	p, err := startProcess(cp.opts.Binaries.Etcd, filepath.Join(cp.dir, "logs", "etcd.log"),
		"--name=bulkhead-test",
		"--data-dir="+filepath.Join(cp.dir, "etcd"),
		"--listen-client-urls="+cp.etcdURL,
		"--advertise-client-urls="+cp.etcdURL,
		"--listen-peer-urls="+cp.etcdPeer,
		"--initial-advertise-peer-urls="+cp.etcdPeer,
		"--initial-cluster=bulkhead-test="+cp.etcdPeer,
		"--unsafe-no-fsync", // throwaway data: fsync only slows tests down
		"--log-level=warn",
	)
	if err != nil {
		return err
	}
	cp.mu.Lock()
	cp.etcd = p
	cp.mu.Unlock()
	fmt.Fprintf(cp.opts.Progress, "etcd started (pid %d, %s)\n", p.pid(), cp.etcdURL)
	return waitReady(ctx, p, cp.opts.ReadyTimeout, http.DefaultClient, cp.etcdURL+"/health")
}

// StartAPIServer starts kube-apiserver (after KillAPIServer) and waits until
// its /readyz answers 200.
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	cp.mu.Lock()
	running := cp.apiserver != nil
	cp.mu.Unlock()
	if running {
		return errors.New("kube-apiserver is already running")
	}
	certs := filepath.Join(cp.dir, "certs")
	saKey := filepath.Join(certs, "service-account.key")
	args := []string{
		"--etcd-servers=" + cp.etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(cp.apiPort),
		"--cert-dir=" + certs, // the self-signed serving cert is made once and reused on restart
		"--token-auth-file=" + filepath.Join(certs, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.96.0.0/16", // the default /24 runs out after ~250 Services
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"-v=0",
	}
	// Pods get these tolerations at admission; only a controller acts on
	// them, so they are set even while none runs (StartControllers may
	// start one later).
	tol := strconv.Itoa(int(cp.opts.PodEvictionToleration / time.Second))
	args = append(args,
		"--default-not-ready-toleration-seconds="+tol,
		"--default-unreachable-toleration-seconds="+tol)
	if cp.opts.Audit {
		audit, err := cp.auditArgs()
		if err != nil {
			return err
		}
		args = append(args, audit...)
	}
	args = append(args, cp.opts.APIServerArgs...)
	p, err := startProcess(cp.opts.Binaries.KubeAPIServer, filepath.Join(cp.dir, "logs", "kube-apiserver.log"), args...)
	if err != nil {
		return err
	}
	cp.mu.Lock()
	cp.apiserver = p
	cp.mu.Unlock()
	fmt.Fprintf(cp.opts.Progress, "kube-apiserver started (pid %d, %s)\n", p.pid(), cp.URL())
	// /readyz is readable anonymously. The serving certificate may not exist
	// yet on the first start, so readiness is probed without verification;
	// clients get the CA from CAFile once it does.
	probe := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback readiness probe only
	}}
	defer probe.CloseIdleConnections()
	return waitReady(ctx, p, cp.opts.ReadyTimeout, probe, cp.URL()+"/readyz")
}

func (cp *ControlPlane) writeCredentials() error {
	certs := filepath.Join(cp.dir, "certs")
	tokenPath := filepath.Join(certs, "tokens.csv")
	var err error
	if cp.token, err = readOrMakeToken(filepath.Join(certs, "admin.token")); err != nil {
		return err
	}
	lines := fmt.Sprintf("%s,admin,admin-uid,\"system:masters\"\n", cp.token)
	// The controllers authenticate as the users Kubernetes' bootstrap RBAC
	// policy binds their roles to, as in a kubeadm cluster.
	cp.componentTokens = map[string]string{}
	for _, user := range []string{controllerManagerUser, schedulerUser} {
		tok, err := readOrMakeToken(filepath.Join(certs, strings.TrimPrefix(user, "system:")+".token"))
		if err != nil {
			return err
		}
		cp.componentTokens[user] = tok
		lines += fmt.Sprintf("%s,%s,%s-uid\n", tok, user, strings.TrimPrefix(user, "system:"))
	}
	if err := os.WriteFile(tokenPath, []byte(lines), 0o600); err != nil {
		return err
	}
	keyPath := filepath.Join(certs, "service-account.key")
	if _, err := os.Stat(keyPath); err == nil {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

// readOrMakeToken returns the token stored at path, making and storing a
// random one first if there is none: a reused directory (devcluster) keeps
// its tokens, so kubeconfigs handed out earlier stay valid.
func readOrMakeToken(path string) (string, error) {
	if data, err := os.ReadFile(path); err == nil {
		return string(data), nil
	}
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(raw)
	return tok, os.WriteFile(path, []byte(tok), 0o600)
}

// writeKubeconfigs writes the admin kubeconfig (Kubeconfig) and one for
// each controller program.
func (cp *ControlPlane) writeKubeconfigs() error {
	cp.kubeconfig = filepath.Join(cp.dir, "kubeconfig")
	if err := cp.writeKubeconfig(cp.kubeconfig, "admin", cp.token); err != nil {
		return err
	}
	for user, tok := range cp.componentTokens {
		if err := cp.writeKubeconfig(cp.componentKubeconfig(user), user, tok); err != nil {
			return err
		}
	}
	return nil
}

func (cp *ControlPlane) componentKubeconfig(user string) string {
	return filepath.Join(cp.dir, strings.TrimPrefix(user, "system:")+".kubeconfig")
}

func (cp *ControlPlane) writeKubeconfig(path, user, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["bulkhead-local"] = &clientcmdapi.Cluster{Server: cp.URL(), CertificateAuthority: cp.CAFile()}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["bulkhead-local"] = &clientcmdapi.Context{Cluster: "bulkhead-local", AuthInfo: user, Namespace: "default"}
	cfg.CurrentContext = "bulkhead-local"
	return clientcmd.WriteToFile(*cfg, path)
}

// waitReady polls url until it answers 200, the process exits, or the
// timeout passes.
func waitReady(ctx context.Context, p *process, timeout time.Duration, client *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %s", url, resp.Status)
		}
		last = err
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready (%v); log: %s\n%s", filepath.Base(p.path), p.err, p.logPath, tail(p.logPath, 20))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %v; log: %s\n%s", filepath.Base(p.path), timeout, last, p.logPath, tail(p.logPath, 20))
		case <-tick.C:
		}
	}
}

// APIServerPID is the kube-apiserver's process id, 0 when it is not running.
func (cp *ControlPlane) APIServerPID() int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.apiserver == nil || cp.apiserver.exited() {
		return 0
	}
	return cp.apiserver.pid()
}
