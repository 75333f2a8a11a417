package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	"github.com/bulkhead-router/bulkhead/internal/gatewaycrds"
	"github.com/bulkhead-router/bulkhead/internal/toolbuild"
)

// TestManifestsApplyToARealAPIServer renders every kustomization with
// kubectl's kustomize, checks the properties the router's resilience
// depends on, and applies each one server-side to a real kube-apiserver:
// the base for real, the monitoring component and the ALB overlay as a
// server dry run (full validation and admission, nothing stored). Schema,
// RBAC and admission errors in the manifests fail here, not in a cluster.
// (The local control plane has no nodes: the DaemonSet is stored, not run.)
func TestManifestsApplyToARealAPIServer(t *testing.T) {
	cp := controlplane.ForTest(t)
	k := &kubectl{t: t, path: cp.Binaries().Kubectl, kubeconfig: cp.Kubeconfig()}
	installOperatorCRDs(t, k)
	// The Gateway API's CRDs, so that its RBAC rules can be checked (and an
	// example Gateway and HTTPRoute applied).
	if _, err := gatewaycrds.Install(context.Background(), cp.RESTConfig()); err != nil {
		t.Fatalf("installing the Gateway API CRDs: %v", err)
	}

	t.Run("base", func(t *testing.T) {
		k := k.with(t)
		objs := render(t, k, "base")
		for _, kind := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "IngressClass", "DaemonSet", "NetworkPolicy"} {
			if objs.count(kind) == 0 {
				t.Errorf("deploy/base renders no %s", kind)
			}
		}
		checkDaemonSet(t, objs)
		checkRBAC(t, objs)
		checkNetworkPolicies(t, objs, false)
		// The base knows nothing of the load balancer's settings: its drain
		// must outlast AWS's default health check.
		if err := awsDefaultHealthCheck.fitsDrainDelay(routerOf(t, objs).duration(t, "-drain-delay")); err != nil {
			t.Errorf("deploy/base with a default ALB target group: %v", err)
		}

		out := k.run("apply", "--server-side", "--field-manager=bulkhead-test", "-k", "base")
		if got := strings.Count(out, "serverside-applied"); got != len(objs) {
			t.Fatalf("%d of %d objects applied:\n%s", got, len(objs), out)
		}
		// The DaemonSet's pod template passed API validation; read it back.
		got := k.run("-n", "bulkhead", "get", "daemonset", "bulkhead", "-o", "jsonpath={.spec.template.spec.containers[0].readinessProbe.httpGet.path}")
		if got != "/readyz" {
			t.Fatalf("readiness probe path = %q", got)
		}
		// The NetworkPolicy as the API server stored it (defaults filled
		// in) still opens only what the rendered one did.
		stored := decode(t, k.run("-n", "bulkhead", "get", "networkpolicy", "bulkhead", "-o", "json"))
		checkNetworkPolicies(t, append(objects{stored}, objs.except("NetworkPolicy")...), false)
		// The ServiceAccount, as bound, may do what the router does and no
		// more: the API server's own authorizer answers.
		sa := "--as=system:serviceaccount:bulkhead:bulkhead"
		for _, q := range []struct {
			args []string
			want bool
		}{
			{[]string{"watch", "nodes"}, true},
			{[]string{"list", "nodes"}, true},
			{[]string{"get", "nodes"}, true},
			{[]string{"watch", "ingresses.networking.k8s.io", "--all-namespaces"}, true},
			{[]string{"watch", "ingressclasses.networking.k8s.io"}, true},
			{[]string{"watch", "services", "--all-namespaces"}, true},
			{[]string{"watch", "endpointslices.discovery.k8s.io", "--all-namespaces"}, true},
			{[]string{"update", "ingresses.networking.k8s.io", "--subresource=status", "-n", "shop"}, true},
			{[]string{"create", "events", "-n", "shop"}, true},
			{[]string{"create", "leases.coordination.k8s.io", "-n", "bulkhead"}, true},
			{[]string{"update", "leases.coordination.k8s.io/bulkhead-ingress-status", "-n", "bulkhead"}, true},
			{[]string{"update", "leases.coordination.k8s.io/bulkhead-gateway-status", "-n", "bulkhead"}, true},
			{[]string{"watch", "httproutes.gateway.networking.k8s.io", "--all-namespaces"}, true},
			{[]string{"watch", "gateways.gateway.networking.k8s.io", "--all-namespaces"}, true},
			{[]string{"watch", "gatewayclasses.gateway.networking.k8s.io"}, true},
			{[]string{"watch", "referencegrants.gateway.networking.k8s.io", "--all-namespaces"}, true},
			{[]string{"watch", "namespaces"}, true},
			{[]string{"watch", "secrets", "--all-namespaces"}, true},
			{[]string{"update", "httproutes.gateway.networking.k8s.io", "--subresource=status", "-n", "shop"}, true},
			{[]string{"update", "gateways.gateway.networking.k8s.io", "--subresource=status", "-n", "shop"}, true},
			{[]string{"update", "gatewayclasses.gateway.networking.k8s.io", "--subresource=status"}, true},
			// Least privilege: nothing it does not use.
			{[]string{"update", "nodes"}, false},
			{[]string{"patch", "nodes"}, false},
			{[]string{"update", "ingresses.networking.k8s.io", "-n", "shop"}, false},
			{[]string{"update", "httproutes.gateway.networking.k8s.io", "-n", "shop"}, false},
			{[]string{"update", "gateways.gateway.networking.k8s.io", "-n", "shop"}, false},
			{[]string{"create", "referencegrants.gateway.networking.k8s.io", "-n", "shop"}, false},
			{[]string{"update", "namespaces"}, false},
			{[]string{"get", "secrets", "-n", "bulkhead"}, false},
			{[]string{"list", "pods", "--all-namespaces"}, false},
			{[]string{"update", "leases.coordination.k8s.io/some-other-lease", "-n", "bulkhead"}, false},
			{[]string{"create", "leases.coordination.k8s.io", "-n", "shop"}, false},
		} {
			args := append([]string{"auth", "can-i", sa}, q.args...)
			out, _ := k.try(args...) // exit status 1 means "no"
			if got := strings.TrimSpace(out) == "yes"; got != q.want {
				t.Errorf("kubectl auth can-i %s = %q, want %v", strings.Join(q.args, " "), strings.TrimSpace(out), q.want)
			}
		}
	})

	t.Run("monitoring component", func(t *testing.T) {
		k := k.with(t)
		objs := render(t, k, "overlays/example-with-monitoring")
		base := render(t, k, "base")
		if len(objs) != len(base)+5 {
			t.Errorf("overlay renders %d objects, want the base's %d plus Service, ServiceMonitor, PrometheusRule, NetworkPolicy and the dashboard's ConfigMap", len(objs), len(base))
		}
		checkDaemonSet(t, objs)
		checkNetworkPolicies(t, objs, true)
		checkMonitoring(t, objs)
		checkAlertRules(t, objs)
		checkDashboard(t, objs)
		dryRun(t, k, "overlays/example-with-monitoring", len(objs))
	})

	t.Run("gateway-api example", func(t *testing.T) {
		k := k.with(t)
		objs := render(t, k, "overlays/example-gateway-api")
		base := render(t, k, "base")
		if len(objs) != len(base)+3 || objs.count("GatewayClass") != 1 || objs.count("Gateway") != 1 || objs.count("HTTPRoute") != 1 {
			t.Errorf("overlay renders %d objects, want the base's %d plus a GatewayClass, a Gateway and an HTTPRoute", len(objs), len(base))
		}
		var gc struct {
			Spec struct {
				ControllerName string `json:"controllerName"`
			} `json:"spec"`
		}
		objs.get(t, "GatewayClass", "bulkhead", &gc)
		if want := routerOf(t, objs).flag(t, "-gateway-controller-name", "bulkhead.io/gateway-controller"); gc.Spec.ControllerName != want {
			t.Errorf("GatewayClass controllerName %q, the router implements %q", gc.Spec.ControllerName, want)
		}
		checkDaemonSet(t, objs)
		dryRun(t, k, "overlays/example-gateway-api", len(objs))
	})

	t.Run("aws-alb overlay", func(t *testing.T) {
		k := k.with(t)
		objs := render(t, k, "overlays/aws-alb")
		checkDaemonSet(t, objs)
		checkNetworkPolicies(t, objs, false)
		checkALB(t, objs)
		dryRun(t, k, "overlays/aws-alb", len(objs))
	})
}

// TestALBHealthCheckArithmetic pins the rule checkALB applies, with AWS's
// default target-group health check as the counter-example.
func TestALBHealthCheckArithmetic(t *testing.T) {
	tight := albHealthCheck{interval: 5 * time.Second, timeout: 2 * time.Second, unhealthy: 2, healthy: 2}
	for _, tc := range []struct {
		hc    albHealthCheck
		delay time.Duration
		fits  bool
	}{
		{tight, 35 * time.Second, true},
		{tight, 20 * time.Second, true}, // 5 s x 2 + 10 s margin
		{tight, 19 * time.Second, false},
		{awsDefaultHealthCheck, 35 * time.Second, false},
		{awsDefaultHealthCheck, 65 * time.Second, false},
		{awsDefaultHealthCheck, 70 * time.Second, true}, // 30 s x 2 + 10 s margin
		{albHealthCheck{interval: 5 * time.Second, timeout: 5 * time.Second, unhealthy: 2}, time.Minute, false},
	} {
		if err := tc.hc.fitsDrainDelay(tc.delay); (err == nil) != tc.fits {
			t.Errorf("%+v with a %s drain delay: fits = %v, want %v (%v)", tc.hc, tc.delay, err == nil, tc.fits, err)
		}
	}
}

// --- kubectl -------------------------------------------------------------

type kubectl struct {
	t                testing.TB
	path, kubeconfig string
}

func (k *kubectl) with(t testing.TB) *kubectl { c := *k; c.t = t; return &c }

// try runs kubectl in deploy/ and returns its standard output.
func (k *kubectl) try(args ...string) (string, error) {
	cmd := exec.Command(k.path, append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out), nil
}

func (k *kubectl) run(args ...string) string {
	k.t.Helper()
	out, err := k.try(args...)
	if err != nil {
		k.t.Fatal(err)
	}
	return out
}

// dryRun applies a kustomization server-side without storing it and
// checks that every object went through.
func dryRun(t *testing.T, k *kubectl, dir string, objects int) {
	t.Helper()
	out := k.run("apply", "--server-side", "--dry-run=server", "--field-manager=bulkhead-test", "-k", dir)
	if got := strings.Count(out, "serverside-applied (server dry run)"); got != objects {
		t.Fatalf("%s: %d of %d objects passed the server dry run:\n%s", dir, got, objects, out)
	}
}

// installOperatorCRDs installs prometheus-operator's ServiceMonitor and
// PrometheusRule CRDs, as published in its Go module (pinned, with its
// checksum, by testdata/crds/go.mod), so the monitoring component is
// validated against the real schemas.
func installOperatorCRDs(t *testing.T, k *kubectl) {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/prometheus-operator/prometheus-operator")
	cmd.Dir = filepath.Join("testdata", "crds")
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=-mod=readonly")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("downloading prometheus-operator's module for its CRDs: %v\n%s", err, out)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download: %v %s\n%s", err, mod.Error, out)
	}
	crds := filepath.Join(mod.Dir, "example", "prometheus-operator-crd")
	k.run("apply", "--server-side", "--field-manager=bulkhead-test",
		"-f", filepath.Join(crds, "monitoring.coreos.com_servicemonitors.yaml"),
		"-f", filepath.Join(crds, "monitoring.coreos.com_prometheusrules.yaml"))
	k.run("wait", "--for=condition=Established", "--timeout=60s",
		"crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com")
}

// --- rendered objects -----------------------------------------------------

type object struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	raw []byte // JSON
}

type objects []object

func render(t *testing.T, k *kubectl, dir string) objects {
	t.Helper()
	var objs objects
	for _, doc := range strings.Split(k.run("kustomize", dir), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		raw, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		o := object{raw: raw}
		if err := json.Unmarshal(raw, &o); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		objs = append(objs, o)
	}
	return objs
}

// decode reads one object, as JSON or YAML.
func decode(t *testing.T, doc string) object {
	t.Helper()
	raw, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	o := object{raw: raw}
	if err := json.Unmarshal(raw, &o); err != nil {
		t.Fatal(err)
	}
	return o
}

// except returns the objects not of the kind.
func (objs objects) except(kind string) objects {
	var out objects
	for _, o := range objs {
		if o.Kind != kind {
			out = append(out, o)
		}
	}
	return out
}

func (objs objects) count(kind string) int {
	n := 0
	for _, o := range objs {
		if o.Kind == kind {
			n++
		}
	}
	return n
}

// get decodes the object of the kind and name into into.
func (objs objects) get(t *testing.T, kind, name string, into any) {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Metadata.Name == name {
			if err := json.Unmarshal(o.raw, into); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
}

// --- the DaemonSet --------------------------------------------------------

// router is the DaemonSet's router container with its args parsed.
type router struct {
	ds    appsv1.DaemonSet
	c     corev1.Container
	flags map[string]string // "-drain-delay" → "35s"
}

func routerOf(t *testing.T, objs objects) router {
	t.Helper()
	var r router
	objs.get(t, "DaemonSet", "bulkhead", &r.ds)
	for _, c := range r.ds.Spec.Template.Spec.Containers {
		if c.Name == "bulkhead" {
			r.c = c
		}
	}
	if r.c.Name == "" {
		t.Fatal("the DaemonSet has no container named bulkhead")
	}
	r.flags = map[string]string{}
	for _, a := range r.c.Args {
		name, value, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(name, "-") {
			t.Fatalf("argument %q: write flags as -name=value", a)
		}
		r.flags[name] = value
	}
	return r
}

func (r router) duration(t *testing.T, flag string) time.Duration {
	t.Helper()
	v, ok := r.flags[flag]
	if !ok {
		t.Fatalf("the DaemonSet does not set %s explicitly", flag)
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%s: %v", flag, v, err)
	}
	return d
}

// flag returns a flag's value, or def when the DaemonSet leaves it at its
// default.
func (r router) flag(_ *testing.T, name, def string) string {
	if v, ok := r.flags[name]; ok {
		return v
	}
	return def
}

// port returns the container port with the given name.
func (r router) port(t *testing.T, name string) corev1.ContainerPort {
	t.Helper()
	for _, p := range r.c.Ports {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("the router container has no port named %q", name)
	return corev1.ContainerPort{}
}

func checkDaemonSet(t *testing.T, objs objects) {
	t.Helper()
	r := routerOf(t, objs)
	spec := r.ds.Spec.Template.Spec

	// Shutdown: the kubelet must not SIGKILL a router still draining.
	delay, timeout := r.duration(t, "-drain-delay"), r.duration(t, "-drain-timeout")
	if spec.TerminationGracePeriodSeconds == nil {
		t.Fatal("no terminationGracePeriodSeconds")
	}
	if grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second; grace <= delay+timeout {
		t.Errorf("terminationGracePeriodSeconds %s is not above -drain-delay %s + -drain-timeout %s", grace, delay, timeout)
	}
	if r.flags["-node-name"] != "$(NODE_NAME)" || !envFromField(r.c, "NODE_NAME", "spec.nodeName") {
		t.Errorf("-node-name = %q: want $(NODE_NAME) with NODE_NAME from the downward API (spec.nodeName)", r.flags["-node-name"])
	}

	// Health: readiness is what the ALB checks; liveness never asks the API server.
	rp, lp := r.c.ReadinessProbe, r.c.LivenessProbe
	if rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/readyz" || rp.HTTPGet.Port.String() != "health" || rp.PeriodSeconds != 2 || rp.FailureThreshold != 1 {
		t.Errorf("readiness probe %+v: want GET /readyz on port health, every 2 s, failureThreshold 1", rp)
	}
	if lp == nil || lp.HTTPGet == nil || lp.HTTPGet.Path != "/healthz" || lp.HTTPGet.Port.String() != "health" {
		t.Errorf("liveness probe %+v: want GET /healthz on port health", lp)
	}

	// Host ports for the ALB; nothing else on the host.
	for name, port := range map[string]int32{"http": 8080, "health": 8081} {
		if p := r.port(t, name); p.HostPort != port || p.ContainerPort != port {
			t.Errorf("port %s = %d, host port %d: want %d on both", name, p.ContainerPort, p.HostPort, port)
		}
	}
	for _, p := range r.c.Ports {
		if p.Name != "http" && p.Name != "health" && p.HostPort != 0 {
			t.Errorf("port %s is exposed on the host (%d)", p.Name, p.HostPort)
		}
	}
	// The admin endpoint (POST /guard/confirm, the profiler) is on loopback
	// and declared as no port; Prometheus scrapes the metrics listener on
	// the pod IP, at the container port named metrics.
	adminHost, adminPort, err := net.SplitHostPort(r.flags["-admin-address"])
	if ip := net.ParseIP(adminHost); err != nil || ip == nil || !ip.IsLoopback() {
		t.Errorf("-admin-address=%s: want a loopback address (the admin endpoint applies held deletions and profiles the process)", r.flags["-admin-address"])
	}
	if _, ok := r.flags["-admin-token-file"]; ok {
		t.Errorf("-admin-token-file is set: a loopback admin endpoint needs none, and a token in the manifests is a secret to manage")
	}
	for _, p := range r.c.Ports {
		if strconv.Itoa(int(p.ContainerPort)) == adminPort || p.Name == "admin" {
			t.Errorf("container port %s (%d) declares the admin endpoint, which listens on loopback only", p.Name, p.ContainerPort)
		}
	}
	metricsHost, metricsPort, err := net.SplitHostPort(r.flags["-metrics-address"])
	if ip := net.ParseIP(metricsHost); err != nil || (ip != nil && ip.IsLoopback()) || metricsPort != strconv.Itoa(int(r.port(t, "metrics").ContainerPort)) {
		t.Errorf("-metrics-address=%s: want the pod IP (no host, or 0.0.0.0) and the port of the container port metrics (%d)",
			r.flags["-metrics-address"], r.port(t, "metrics").ContainerPort)
	}

	// Security: non-root, read-only root file system, no capabilities
	// (the init container adds back CHOWN only, for the state directory).
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", psc)
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("container %s has no securityContext", c.Name)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("container %s: root file system not read-only", c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("container %s: privilege escalation allowed", c.Name)
		case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
			t.Errorf("container %s: capabilities not dropped (want drop: [ALL])", c.Name)
		}
		if c.Name == "bulkhead" && (sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Add) > 0 || (sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot)) {
			t.Errorf("the router container adds capabilities or may run as root: %+v", sc)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s: want CPU and memory requests and a memory limit, have %+v", c.Name, c.Resources)
		}
	}

	// Scheduling and updates.
	if spec.PriorityClassName == "" {
		t.Error("no priorityClassName: an edge router must not be preempted by workloads")
	}
	if s := r.ds.Spec.UpdateStrategy; s.Type != appsv1.RollingUpdateDaemonSetStrategyType || s.RollingUpdate == nil || s.RollingUpdate.MaxUnavailable == nil {
		t.Errorf("update strategy %+v: want RollingUpdate with maxUnavailable", s)
	}

	// The last-known-good table survives restarts on the node.
	var state *corev1.Volume
	for i, v := range spec.Volumes {
		if v.HostPath != nil && v.HostPath.Path == r.flags["-state-dir"] {
			state = &spec.Volumes[i]
		}
	}
	if state == nil {
		t.Errorf("-state-dir=%s is not a hostPath volume", r.flags["-state-dir"])
	}
}

func envFromField(c corev1.Container, name, fieldPath string) bool {
	for _, e := range c.Env {
		if e.Name == name {
			return e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == fieldPath
		}
	}
	return false
}

// --- RBAC -----------------------------------------------------------------

func checkRBAC(t *testing.T, objs objects) {
	t.Helper()
	var cr rbacv1.ClusterRole
	objs.get(t, "ClusterRole", "bulkhead", &cr)
	var role rbacv1.Role
	objs.get(t, "Role", "bulkhead-leader-election", &role)
	for _, want := range []struct {
		rules    []rbacv1.PolicyRule
		group    string
		resource string
		verbs    []string
	}{
		{cr.Rules, "", "nodes", []string{"get", "list", "watch"}},
		{cr.Rules, "networking.k8s.io", "ingresses", []string{"get", "list", "watch"}},
		{cr.Rules, "networking.k8s.io", "ingressclasses", []string{"get", "list", "watch"}},
		{cr.Rules, "networking.k8s.io", "ingresses/status", []string{"update"}},
		{cr.Rules, "", "services", []string{"get", "list", "watch"}},
		{cr.Rules, "discovery.k8s.io", "endpointslices", []string{"get", "list", "watch"}},
		{cr.Rules, "", "events", []string{"create"}},
		{cr.Rules, "gateway.networking.k8s.io", "gatewayclasses", []string{"get", "list", "watch"}},
		{cr.Rules, "gateway.networking.k8s.io", "gateways", []string{"get", "list", "watch"}},
		{cr.Rules, "gateway.networking.k8s.io", "httproutes", []string{"get", "list", "watch"}},
		{cr.Rules, "gateway.networking.k8s.io", "referencegrants", []string{"get", "list", "watch"}},
		{cr.Rules, "gateway.networking.k8s.io", "httproutes/status", []string{"update"}},
		{cr.Rules, "gateway.networking.k8s.io", "grpcroutes", []string{"get", "list", "watch"}},
		{cr.Rules, "gateway.networking.k8s.io", "grpcroutes/status", []string{"update"}},
		{cr.Rules, "gateway.networking.k8s.io", "gateways/status", []string{"update"}},
		{cr.Rules, "gateway.networking.k8s.io", "gatewayclasses/status", []string{"update"}},
		{cr.Rules, "", "namespaces", []string{"list", "watch"}},
		{cr.Rules, "", "secrets", []string{"list", "watch"}},
		{role.Rules, "coordination.k8s.io", "leases", []string{"create", "get", "update"}},
	} {
		for _, verb := range want.verbs {
			if !allows(want.rules, want.group, want.resource, verb) {
				t.Errorf("RBAC does not allow %s %s (group %q)", verb, want.resource, want.group)
			}
		}
	}
	for _, r := range cr.Rules {
		if slices.Contains(r.Verbs, "*") || slices.Contains(r.Resources, "*") || slices.Contains(r.APIGroups, "*") {
			t.Errorf("wildcard in the ClusterRole: %+v", r)
		}
		if slices.Contains(r.Resources, "nodes") && slices.ContainsFunc(r.Verbs, func(v string) bool { return v != "get" && v != "list" && v != "watch" }) {
			t.Errorf("the router may change Nodes: %+v", r)
		}
	}
}

func allows(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
			return true
		}
	}
	return false
}

// --- monitoring -------------------------------------------------------------

// checkMonitoring: Prometheus scrapes the read-only metrics listener, never
// the admin endpoint (which checkDaemonSet keeps on loopback).
func checkMonitoring(t *testing.T, objs objects) {
	t.Helper()
	r := routerOf(t, objs)

	var svc corev1.Service
	objs.get(t, "Service", "bulkhead-metrics", &svc)
	if !matches(svc.Spec.Selector, r.ds.Spec.Template.Labels) {
		t.Errorf("the metrics Service selects %v; the pods carry %v", svc.Spec.Selector, r.ds.Spec.Template.Labels)
	}
	if !svc.Spec.PublishNotReadyAddresses {
		t.Error("the metrics Service drops unready routers: the draining ones would not be scraped")
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "metrics" ||
		svc.Spec.Ports[0].Port != r.port(t, "metrics").ContainerPort {
		t.Errorf("metrics Service ports %+v: want one, to the container port metrics (%d)", svc.Spec.Ports, r.port(t, "metrics").ContainerPort)
	}

	var sm struct {
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			Endpoints []struct{ Port, Path string } `json:"endpoints"`
		} `json:"spec"`
	}
	objs.get(t, "ServiceMonitor", "bulkhead", &sm)
	if !matches(sm.Spec.Selector.MatchLabels, svc.Labels) {
		t.Errorf("the ServiceMonitor selects %v; the Service carries %v", sm.Spec.Selector.MatchLabels, svc.Labels)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %+v: want port %s, path /metrics", sm.Spec.Endpoints, svc.Spec.Ports[0].Name)
	}
}

// --- network policy ----------------------------------------------------------

// peer is a source of connections to the router pods. A pod has labels and
// a namespace with labels; an address outside the cluster (the load
// balancer, the internet) has only an IP.
type peer struct {
	what                string
	namespace           string
	nsLabels, podLabels map[string]string // nil podLabels: not a pod
	ip                  string
}

var (
	internetClient   = peer{what: "an internet client", ip: "203.0.113.7"}
	loadBalancer     = peer{what: "a load balancer in the VPC", ip: "10.0.3.17"}
	tenantPod        = peer{what: "a pod of a tenant", namespace: "shop", nsLabels: map[string]string{"kubernetes.io/metadata.name": "shop"}, podLabels: map[string]string{"app": "web"}, ip: "10.244.1.5"}
	tenantPrometheus = peer{what: "a pod labelled prometheus in a tenant's namespace", namespace: "shop", nsLabels: map[string]string{"kubernetes.io/metadata.name": "shop"},
		podLabels: map[string]string{"app.kubernetes.io/name": "prometheus"}, ip: "10.244.1.6"}
	monitoringOther = peer{what: "another pod in namespace monitoring", namespace: "monitoring", nsLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"},
		podLabels: map[string]string{"app.kubernetes.io/name": "grafana"}, ip: "10.244.2.8"}
	prometheus = peer{what: "Prometheus", namespace: "monitoring", nsLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"},
		podLabels: map[string]string{"app.kubernetes.io/name": "prometheus", "prometheus": "k8s"}, ip: "10.244.2.9"}
)

// checkNetworkPolicies evaluates the rendered NetworkPolicies as a network
// plugin would for the router pods: which of the router's ports each kind
// of peer may connect to. The traffic and health ports are open to all
// (the router is the ingress; the load balancer checks health from its own
// addresses); the metrics port only to Prometheus, and only with the
// monitoring component; nothing else (the admin endpoint is not even on the
// pod IP).
func checkNetworkPolicies(t *testing.T, objs objects, monitoring bool) {
	t.Helper()
	r := routerOf(t, objs)
	var policies []networkingv1.NetworkPolicy
	for _, o := range objs {
		if o.Kind != "NetworkPolicy" {
			continue
		}
		var np networkingv1.NetworkPolicy
		if err := json.Unmarshal(o.raw, &np); err != nil {
			t.Fatal(err)
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			t.Fatalf("NetworkPolicy %s: %v", np.Name, err)
		}
		if np.Namespace != "" && np.Namespace != "bulkhead" || !sel.Matches(labels.Set(r.ds.Spec.Template.Labels)) {
			t.Errorf("NetworkPolicy %s (namespace %q) does not select the router pods", np.Name, np.Namespace)
			continue
		}
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			t.Errorf("NetworkPolicy %s does not isolate the router pods for ingress", np.Name)
		}
		for i, rule := range np.Spec.Ingress {
			if len(rule.Ports) == 0 {
				t.Errorf("NetworkPolicy %s, ingress rule %d opens every port", np.Name, i)
			}
		}
		policies = append(policies, np)
	}
	if len(policies) == 0 {
		t.Fatal("no NetworkPolicy selects the router pods: every pod in the cluster may reach every port")
	}

	for _, p := range []peer{internetClient, loadBalancer, tenantPod, tenantPrometheus, monitoringOther, prometheus} {
		for _, cp := range r.c.Ports {
			want := cp.Name == "http" || cp.Name == "health" || (cp.Name == "metrics" && monitoring && p.what == prometheus.what)
			if got := allowed(t, policies, p, cp); got != want {
				t.Errorf("%s may connect to port %s (%d): %v, want %v", p.what, cp.Name, cp.ContainerPort, got, want)
			}
		}
	}
	// No policy names the admin port, by name or number, should it ever be
	// bound beyond loopback.
	_, adminPort, _ := net.SplitHostPort(r.flags["-admin-address"])
	for _, np := range policies {
		for _, rule := range np.Spec.Ingress {
			for _, port := range rule.Ports {
				if port.Port != nil && (port.Port.String() == adminPort || port.Port.String() == "admin") {
					t.Errorf("NetworkPolicy %s opens the admin port %s", np.Name, port.Port)
				}
			}
		}
	}
}

// allowed reports whether any policy lets the peer connect to the container
// port (NetworkPolicies add up).
func allowed(t *testing.T, policies []networkingv1.NetworkPolicy, p peer, cp corev1.ContainerPort) bool {
	t.Helper()
	for _, np := range policies {
		for _, rule := range np.Spec.Ingress {
			if portMatches(rule.Ports, cp) && (len(rule.From) == 0 || slices.ContainsFunc(rule.From, func(from networkingv1.NetworkPolicyPeer) bool {
				return peerMatches(t, from, p)
			})) {
				return true
			}
		}
	}
	return false
}

func portMatches(ports []networkingv1.NetworkPolicyPort, cp corev1.ContainerPort) bool {
	for _, port := range ports {
		proto := corev1.ProtocolTCP
		if port.Protocol != nil {
			proto = *port.Protocol
		}
		cpProto := cp.Protocol
		if cpProto == "" {
			cpProto = corev1.ProtocolTCP
		}
		if proto != cpProto {
			continue
		}
		if port.Port == nil {
			return true
		}
		if port.Port.Type == intstr.String && port.Port.StrVal == cp.Name {
			return true
		}
		if port.Port.Type == intstr.Int {
			end := port.Port.IntVal
			if port.EndPort != nil {
				end = *port.EndPort
			}
			if cp.ContainerPort >= port.Port.IntVal && cp.ContainerPort <= end {
				return true
			}
		}
	}
	return false
}

func peerMatches(t *testing.T, from networkingv1.NetworkPolicyPeer, p peer) bool {
	t.Helper()
	if from.IPBlock != nil {
		_, cidr, err := net.ParseCIDR(from.IPBlock.CIDR)
		if err != nil {
			t.Fatalf("ipBlock %s: %v", from.IPBlock.CIDR, err)
		}
		ip := net.ParseIP(p.ip)
		if !cidr.Contains(ip) {
			return false
		}
		for _, ex := range from.IPBlock.Except {
			if _, e, err := net.ParseCIDR(ex); err == nil && e.Contains(ip) {
				return false
			}
		}
		return true
	}
	if p.podLabels == nil {
		return false // selectors match pods only
	}
	selects := func(s *metav1.LabelSelector, set map[string]string) bool {
		sel, err := metav1.LabelSelectorAsSelector(s)
		if err != nil {
			t.Fatal(err)
		}
		return sel.Matches(labels.Set(set))
	}
	if from.NamespaceSelector == nil {
		// A pod selector alone: pods of the policy's own namespace.
		return p.namespace == "bulkhead" && selects(from.PodSelector, p.podLabels)
	}
	if !selects(from.NamespaceSelector, p.nsLabels) {
		return false
	}
	return from.PodSelector == nil || selects(from.PodSelector, p.podLabels)
}

func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// checkAlertRules parses every alert expression with Prometheus's own
// parser (testdata/promqlcheck) and requires each metric it reads to be
// defined in bulkhead's Go source, so a renamed metric fails here and not
// silently in production (an alert on a missing series never fires).
func checkAlertRules(t *testing.T, objs objects) {
	t.Helper()
	var pr struct {
		Spec struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Alert       string            `json:"alert"`
					Expr        string            `json:"expr"`
					Labels      map[string]string `json:"labels"`
					Annotations map[string]string `json:"annotations"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	objs.get(t, "PrometheusRule", "bulkhead", &pr)
	var alerts, exprs []string
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			exprs = append(exprs, r.Expr)
			if r.Alert == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("rule %q in group %s: want an alert name, a severity label, a summary and a description", r.Alert, g.Name)
			}
			// The admin endpoint is on the router's loopback: an alert that
			// sends the operator there says how to get there.
			for name, text := range r.Annotations {
				if strings.Contains(text, "admin endpoint") && !strings.Contains(text, "port-forward pod/{{ $labels.pod }}") {
					t.Errorf("alert %s, %s: names the admin endpoint without the way to reach it (kubectl port-forward to the pod)", r.Alert, name)
				}
			}
		}
	}
	if len(exprs) == 0 {
		t.Fatal("no alert rules")
	}
	results := checkPromQL(t, exprs)
	source := goSource(t)
	used := map[string]bool{}
	for i, res := range results {
		if res.Error != "" {
			t.Errorf("alert %s: expression does not parse: %s\n%s", alerts[i], res.Error, exprs[i])
			continue
		}
		if len(res.Metrics) == 0 {
			t.Errorf("alert %s reads no metric", alerts[i])
		}
		for _, m := range res.Metrics {
			used[m] = true
			if !definedIn(source, m) {
				t.Errorf("alert %s reads %q, which no Go source file of bulkhead defines", alerts[i], m)
			}
		}
	}
	// The alerts the design asks for, by the metrics they watch.
	for _, m := range []string{"bulkhead_apiserver_connected", "bulkhead_table_source", "bulkhead_deletion_guard_holding",
		"bulkhead_upstream_breakers_open", "bulkhead_node_draining"} {
		if !used[m] {
			t.Errorf("no alert reads %s", m)
		}
	}
}

type promqlResult struct {
	Error   string   `json:"error"`
	Metrics []string `json:"metrics"`
}

func checkPromQL(t *testing.T, exprs []string) []promqlResult {
	t.Helper()
	dir, err := toolbuild.Ensure(context.Background(), toolbuild.Spec{
		Name:      "promqlcheck",
		ModuleDir: filepath.Join("deploy", "testdata", "promqlcheck"),
		Programs:  map[string]string{"promqlcheck": "."},
		LDFlags:   "-s -w",
		What:      "the PromQL checker (Prometheus's parser)",
	}, testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	in, _ := json.Marshal(exprs)
	cmd := exec.Command(filepath.Join(dir, "promqlcheck"))
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("promqlcheck: %v", err)
	}
	var results []promqlResult
	if err := json.Unmarshal(out, &results); err != nil || len(results) != len(exprs) {
		t.Fatalf("promqlcheck output (%v): %s", err, out)
	}
	return results
}

// goSource is the text of bulkhead's non-test Go files (nested modules and
// testdata excluded).
func goSource(t *testing.T) string {
	t.Helper()
	root, err := toolbuild.ModuleRoot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			all.Write(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return all.String()
}

// definedIn reports whether a metric name appears as a string literal in
// the source; the series a histogram or summary adds count as their base.
func definedIn(source, metric string) bool {
	if strings.Contains(source, strconv.Quote(metric)) {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(metric, suffix); ok && strings.Contains(source, strconv.Quote(base)) {
			return true
		}
	}
	return false
}

type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

// --- AWS ALB ----------------------------------------------------------------

// albHealthCheck is a target group's health check.
type albHealthCheck struct {
	interval, timeout  time.Duration
	unhealthy, healthy int
}

// awsDefaultHealthCheck is what an ALB target group does unless told
// otherwise (target type instance or ip).
var awsDefaultHealthCheck = albHealthCheck{interval: 30 * time.Second, timeout: 5 * time.Second, unhealthy: 2, healthy: 5}

// albMargin covers what the health-check arithmetic does not: the ALB's
// nodes acting on a target's new state, and, for a node drain, the router
// hearing of its node's change (one watch event).
const albMargin = 10 * time.Second

// fitsDrainDelay: /readyz answers 503 at once when draining; the ALB stops
// routing to the target once `unhealthy` consecutive checks have failed,
// at most interval x unhealthy later (the first failing check comes within
// one interval). The router must keep serving until then: the drain delay
// has to cover it, with a margin. (The timeout matters only for a router
// that does not answer, which a draining one does.)
func (hc albHealthCheck) fitsDrainDelay(drainDelay time.Duration) error {
	if hc.timeout >= hc.interval {
		return fmt.Errorf("health-check timeout %s must be below the interval %s", hc.timeout, hc.interval)
	}
	out := hc.interval * time.Duration(hc.unhealthy)
	if out+albMargin > drainDelay {
		return fmt.Errorf("the ALB may route to a draining router for %s (interval %s x unhealthy threshold %d); with a %s margin that is beyond the drain delay %s",
			out, hc.interval, hc.unhealthy, albMargin, drainDelay)
	}
	return nil
}

func checkALB(t *testing.T, objs objects) {
	t.Helper()
	r := routerOf(t, objs)
	var ing networkingv1.Ingress
	objs.get(t, "Ingress", "bulkhead-alb", &ing)
	ann := func(name string) string {
		v, ok := ing.Annotations["alb.ingress.kubernetes.io/"+name]
		if !ok {
			t.Errorf("the ALB Ingress has no %s annotation (the AWS default does not fit)", name)
		}
		return v
	}
	seconds := func(name string) time.Duration {
		n, err := strconv.Atoi(ann(name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		return time.Duration(n) * time.Second
	}
	count := func(name string) int {
		n, err := strconv.Atoi(ann(name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		return n
	}
	if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "alb" || ann("target-type") != "instance" {
		t.Errorf("want an Ingress of class alb with target-type instance")
	}

	// The ALB checks the same endpoint as the kubelet's readiness probe, on
	// the router's health host port.
	if got, want := ann("healthcheck-port"), strconv.Itoa(int(r.port(t, "health").HostPort)); got != want {
		t.Errorf("healthcheck-port %s: the router's health host port is %s", got, want)
	}
	if got := ann("healthcheck-path"); got != r.c.ReadinessProbe.HTTPGet.Path {
		t.Errorf("healthcheck-path %s: readiness is %s", got, r.c.ReadinessProbe.HTTPGet.Path)
	}
	if got := ann("success-codes"); got != "200" {
		t.Errorf("success-codes %q: /readyz answers 200 when ready, 503 when not", got)
	}

	hc := albHealthCheck{
		interval:  seconds("healthcheck-interval-seconds"),
		timeout:   seconds("healthcheck-timeout-seconds"),
		unhealthy: count("unhealthy-threshold-count"),
		healthy:   count("healthy-threshold-count"),
	}
	if err := hc.fitsDrainDelay(r.duration(t, "-drain-delay")); err != nil {
		t.Error(err)
	}
	// Back in service within a minute of an uncordon or a restart.
	if back := hc.interval * time.Duration(hc.healthy); back > time.Minute {
		t.Errorf("a recovered router waits %s for the ALB (healthy threshold %d x interval %s)", back, hc.healthy, hc.interval)
	}
	// In-flight requests of a deregistered target may finish: the ALB must
	// not cut them before the router's own drain timeout.
	dereg := time.Duration(-1)
	for _, attr := range strings.Split(ann("target-group-attributes"), ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(attr), "deregistration_delay.timeout_seconds="); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			dereg = time.Duration(n) * time.Second
		}
	}
	if timeout := r.duration(t, "-drain-timeout"); dereg < timeout {
		t.Errorf("deregistration delay %s (-1: unset, AWS default 300 s) is below -drain-timeout %s", dereg, timeout)
	}

	// The NodePort Service the ALB sends traffic to.
	var svc corev1.Service
	objs.get(t, "Service", "bulkhead", &svc)
	if b := ing.Spec.DefaultBackend; b == nil || b.Service == nil || b.Service.Name != svc.Name || len(svc.Spec.Ports) != 1 || b.Service.Port.Name != svc.Spec.Ports[0].Name {
		t.Fatalf("the ALB Ingress's default backend %+v does not name the Service %s and its port", ing.Spec.DefaultBackend, svc.Name)
	}
	if svc.Spec.Type != corev1.ServiceTypeNodePort || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("Service %s: type %s, externalTrafficPolicy %s: want NodePort and Local (traffic stays on the node the ALB chose)",
			svc.Name, svc.Spec.Type, svc.Spec.ExternalTrafficPolicy)
	}
	if !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s drops a draining router from its endpoints before the ALB stops sending to it: set publishNotReadyAddresses", svc.Name)
	}
	if !matches(svc.Spec.Selector, r.ds.Spec.Template.Labels) || svc.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("Service %s must select the router pods and target their http port", svc.Name)
	}
}
