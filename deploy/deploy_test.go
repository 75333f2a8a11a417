package deploy

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/bulkhead-router/bulkhead/internal/controlplane"
)

// TestBaseAppliesToARealAPIServer renders deploy/base with kubectl's
// kustomize and applies it server-side to a real kube-apiserver, so schema,
// RBAC and admission errors in the manifests fail here, not in a cluster.
// (The local control plane has no nodes: the DaemonSet is stored, not run.)
func TestBaseAppliesToARealAPIServer(t *testing.T) {
	cp := controlplane.ForTest(t)
	kubectl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(cp.Binaries().Kubectl, append([]string{"--kubeconfig", cp.Kubeconfig()}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	rendered := kubectl("kustomize", "base")
	for _, kind := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "IngressClass", "DaemonSet"} {
		if !strings.Contains(rendered, "kind: "+kind+"\n") {
			t.Errorf("deploy/base renders no %s", kind)
		}
	}
	out := kubectl("apply", "--server-side", "--field-manager=bulkhead-test", "-k", "base")
	if strings.Count(out, "serverside-applied") < 8 {
		t.Fatalf("not every object applied:\n%s", out)
	}
	// The DaemonSet's pod template passes API validation; read it back.
	got := kubectl("-n", "bulkhead", "get", "daemonset", "bulkhead", "-o", "jsonpath={.spec.template.spec.containers[0].readinessProbe.httpGet.path}")
	if got != "/readyz" {
		t.Fatalf("readiness probe path = %q", got)
	}
}
