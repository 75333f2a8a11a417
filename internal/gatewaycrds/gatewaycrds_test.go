package gatewaycrds_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	"github.com/bulkhead-router/bulkhead/internal/gatewaycrds"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

// TestVersionMatchesGoMod: the CRDs installed are those of the release the
// router is built against. Until the main module requires gateway-api
// there is nothing to compare with, and the test says so.
func TestVersionMatchesGoMod(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		if len(fields) >= 2 && fields[0] == gatewaycrds.Module {
			if fields[1] != gatewaycrds.Version {
				t.Fatalf("go.mod requires %s %s, gatewaycrds.Version is %s", gatewaycrds.Module, fields[1], gatewaycrds.Version)
			}
			return
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("go.mod does not require %s yet; nothing to compare %s with", gatewaycrds.Module, gatewaycrds.Version)
}

func TestObjectsFromModule(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command (module download)")
	}
	dir, err := gatewaycrds.ModuleDir(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	objs, err := gatewaycrds.Objects(dir)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	names := map[string]bool{}
	for _, o := range objs {
		kinds[o.GetKind()]++
		names[o.GetName()] = true
	}
	for _, want := range []string{"gatewayclasses.gateway.networking.k8s.io", "gateways.gateway.networking.k8s.io",
		"httproutes.gateway.networking.k8s.io", "referencegrants.gateway.networking.k8s.io", "grpcroutes.gateway.networking.k8s.io"} {
		if !names[want] {
			t.Errorf("no CRD %s in %s", want, dir)
		}
	}
	if kinds["ValidatingAdmissionPolicy"] != 1 || kinds["ValidatingAdmissionPolicyBinding"] != 1 {
		t.Errorf("kinds %v: want the safe-upgrades policy and its binding", kinds)
	}
}

var (
	gatewayClasses = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gatewayclasses"}
	gateways       = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}
	httpRoutes     = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
)

func object(t *testing.T, s string) *unstructured.Unstructured {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}

// TestInstall against a real kube-apiserver: every CRD Established, the
// core objects can be created, and the CRDs' own validation (CEL) refuses
// an HTTPRoute path that does not start with "/", which only the real
// schemas do.
func TestInstall(t *testing.T) {
	cp := controlplane.ForTest(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	crds, err := gatewaycrds.Install(ctx, cp.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d CRDs established in %v", len(crds), time.Since(start).Round(time.Millisecond))
	if len(crds) < 5 {
		t.Fatalf("CRDs %v", crds)
	}
	client := dynamic.NewForConfigOrDie(cp.RESTConfig())
	// Installing twice is harmless (apply is idempotent).
	if _, err := gatewaycrds.Install(ctx, cp.RESTConfig()); err != nil {
		t.Fatalf("second install: %v", err)
	}
	if _, err := client.Resource(schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicies"}).
		Get(ctx, "safe-upgrades.gateway.networking.k8s.io", metav1.GetOptions{}); err != nil {
		t.Errorf("the safe-upgrades policy: %v", err)
	}

	create := func(gvr schema.GroupVersionResource, ns, s string) error {
		_, err := client.Resource(gvr).Namespace(ns).Create(ctx, object(t, s), metav1.CreateOptions{})
		return err
	}
	if err := create(gatewayClasses, "", `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: bulkhead}
spec: {controllerName: bulkhead.io/gateway-controller}`); err != nil {
		t.Fatal(err)
	}
	if err := create(gateways, "default", `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: bulkhead
  listeners: [{name: http, protocol: HTTP, port: 80}]`); err != nil {
		t.Fatal(err)
	}
	route := `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %s}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: %s}}]
    backendRefs: [{name: echo, port: 80}]`
	if err := create(httpRoutes, "default", sprintf(route, "good", "/api")); err != nil {
		t.Fatal(err)
	}
	err = create(httpRoutes, "default", sprintf(route, "bad", "api"))
	if err == nil {
		t.Fatal("an HTTPRoute with path prefix \"api\" was accepted: the CRDs' validation is missing")
	}
	if !strings.Contains(err.Error(), "must be an absolute path") {
		t.Errorf("rejected, but not by the CRD's rule: %v", err)
	}
	t.Logf("refused as expected: %v", err)
	// The defaults of the real schema are applied.
	got, err := client.Resource(httpRoutes).Namespace("default").Get(ctx, "good", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rules, _, _ := unstructured.NestedSlice(got.Object, "spec", "rules")
	if len(rules) != 1 {
		t.Fatalf("rules %v", rules)
	}
	refs, _ := rules[0].(map[string]any)["backendRefs"].([]any)
	if len(refs) != 1 || refs[0].(map[string]any)["weight"] == nil {
		t.Errorf("backendRef weight not defaulted by the schema: %v", refs)
	}
}

func sprintf(format string, a ...string) string {
	for _, s := range a {
		format = strings.Replace(format, "%s", s, 1)
	}
	return format
}
