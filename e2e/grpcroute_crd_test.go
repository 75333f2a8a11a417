package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/bulkhead-router/bulkhead/internal/gatewaycrds"
	"github.com/bulkhead-router/bulkhead/internal/testrouter"
)

// A cluster with the Gateway API but without GRPCRoute's CRD (releases
// before v1.1 had it only in the experimental channel): the router starts
// no GRPCRoute informer, which could never sync, so it gets ready and
// serves its HTTPRoutes as before.
func TestGatewayWithoutGRPCRouteCRD(t *testing.T) {
	e := newEnvNoRouter(t)
	mod, err := gatewaycrds.ModuleDir(e.ctx())
	if err != nil {
		t.Fatal(err)
	}
	files, err := gatewaycrds.Files(mod)
	if err != nil {
		t.Fatal(err)
	}
	// A module directory of our own: the release's files but GRPCRoute's.
	dir := t.TempDir()
	std := filepath.Join(dir, "config", "crd", "standard")
	if err := os.MkdirAll(std, 0o755); err != nil {
		t.Fatal(err)
	}
	left := false
	for _, f := range files {
		if strings.Contains(filepath.Base(f), "grpcroutes") {
			left = true
			continue
		}
		if err := os.Symlink(f, filepath.Join(std, filepath.Base(f))); err != nil {
			t.Fatal(err)
		}
	}
	if !left {
		t.Fatalf("no GRPCRoute CRD among %v: the test would prove nothing", files)
	}
	crds, err := gatewaycrds.InstallFrom(e.ctx(), e.cp.RESTConfig(), dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range crds {
		if strings.HasPrefix(c, "grpcroutes.") {
			t.Fatalf("GRPCRoute CRD installed: %v", crds)
		}
	}
	gw, err := gatewayclient.NewForConfig(e.cp.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	e.router = testrouter.Start(t, testrouter.Options{Kubeconfig: e.cp.Kubeconfig(), StateDir: t.TempDir()})
	ge := &gwEnv{env: e, gw: gw}
	e.startPods("shop", "web", 1)
	e.router.WaitReady(30 * time.Second)
	ge.gatewayClass("bulkhead")
	ge.gateway("infra", "edge", 80)
	ge.applyRoute(httpRoute("shop", "web", "infra", "edge", "shop.example", toService("/", "web", 1)))
	e.expectPod("shop.example", "/anything", "web", "")
}
