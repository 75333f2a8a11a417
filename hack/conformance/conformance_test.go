package conformance

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	"github.com/bulkhead-router/bulkhead/internal/gatewaycrds"
	"github.com/bulkhead-router/bulkhead/internal/nodeagent"
	"github.com/bulkhead-router/bulkhead/internal/testrouter"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/apis/v1alpha2"
	"sigs.k8s.io/gateway-api/apis/v1alpha3"
	xv1alpha1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"
	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/tests"
	conformanceconfig "sigs.k8s.io/gateway-api/conformance/utils/config"
	"sigs.k8s.io/gateway-api/conformance/utils/flags"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
)

const (
	// GatewayClassName and ControllerName: the GatewayClass the harness
	// creates and the controller name bulkhead answers to.
	GatewayClassName = "bulkhead"
	ControllerName   = "bulkhead.io/gateway-controller"
)

// SupportedFeatures is the one place that says what bulkhead claims: the
// core features and the extended ones it implements; the suite runs the
// tests of these and skips the others.
var SupportedFeatures = []features.FeatureName{
	features.SupportGateway,
	features.SupportHTTPRoute,
	features.SupportReferenceGrant,
	features.SupportGatewayPort8080,
	features.SupportHTTPRouteQueryParamMatching,
	features.SupportHTTPRouteMethodMatching,
	features.SupportHTTPRouteResponseHeaderModification,
	features.SupportHTTPRouteBackendRequestHeaderModification,
	features.SupportHTTPRoutePortRedirect,
	features.SupportHTTPRouteSchemeRedirect,
	features.SupportHTTPRoutePathRedirect,
	features.SupportHTTPRoute303RedirectStatusCode,
	features.SupportHTTPRoute307RedirectStatusCode,
	features.SupportHTTPRoute308RedirectStatusCode,
	features.SupportHTTPRouteHostRewrite,
	features.SupportHTTPRoutePathRewrite,
	features.SupportHTTPRouteRequestTimeout,
	features.SupportHTTPRouteBackendTimeout,
	features.SupportHTTPRouteParentRefPort,
	features.SupportHTTPRouteDestinationPortMatching,
	features.SupportHTTPRouteNamedRouteRule,
	features.SupportGatewayHTTPListenerIsolation,
	// Toward pods over h2c (appProtocol kubernetes.io/h2c), and WebSocket
	// upgrades (kubernetes.io/ws).
	features.SupportHTTPRouteBackendProtocolH2C,
	features.SupportHTTPRouteBackendProtocolWebSocket,
	// GATEWAY-GRPC: GRPCRoute over h2c listeners to h2c backends.
	features.SupportGRPCRoute,
	features.SupportGRPCRouteNamedRouteRule,
}

// Profiles are the conformance profiles run and reported: one run of the
// suite covers both, each test once.
var Profiles = []suite.ConformanceProfileName{
	suite.GatewayHTTPConformanceProfileName,
	suite.GatewayGRPCConformanceProfileName,
}

// routerGatewayArgs are the router flags for the suite: it sends requests
// to the address in each Gateway's status on the listener's port, and
// tells Gateways apart by address (HTTPRouteMultipleGateways: two Gateways
// on port 80 without hostnames). So the router binds the listener ports
// the suite's manifests use (docs/CONFORMANCE.md) on every address, and
// gives each Gateway a loopback address of its own (-gateway-addresses).
func routerGatewayArgs() []string {
	pool := make([]string, 0, 32)
	for i := 1; i <= 32; i++ {
		pool = append(pool, fmt.Sprintf("127.0.0.%d", i))
	}
	return []string{
		"-gateway-controller-name=" + ControllerName,
		"-publish-address=127.0.0.1",
		"-gateway-addresses=" + strings.Join(pool, ","),
		"-gateway-listeners=80=:80,443=:443,8080=:8080,8090=:8090",
		// The suite deletes each test's objects when the test ends, often
		// three or more HTTPRoutes of the few that exist, and expects them
		// gone at once: a burst the deletion guard would hold for its
		// period (docs/CONFORMANCE.md). Announced deletions are never held
		// here; removals nobody announced (a relist after an outage) still
		// are.
		"-deletion-guard-min-objects=1000000",
	}
}

// TestGatewayConformance runs the whole suite (make conformance-gateway).
func TestGatewayConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("the conformance suite needs a control plane, root and several minutes")
	}
	runSuite(t, nil)
}

// ShortTests are the suite's tests make test runs (TestGatewayConformanceShort):
// one of each kind of core behaviour, a couple of minutes in all with the
// suite's setup.
var ShortTests = []string{
	"HTTPRouteSimpleSameNamespace",
	"HTTPRouteMatchingAcrossRoutes",
	"HTTPRouteWeight",
	"HTTPRouteHTTPSListener",
	"HTTPRouteReferenceGrant",
	"HTTPRouteRedirectHostAndStatus",
	"GatewayInvalidTLSConfiguration",
	// GATEWAY-GRPC: h2c from the suite's gRPC client through the router to
	// the gRPC echo pods, method matching and 404 as UNIMPLEMENTED; and
	// listener hostnames against the call's :authority.
	"GRPCExactMethodMatching",
	"GRPCRouteListenerHostnameMatching",
}

// TestGatewayConformanceShort runs ShortTests of the unmodified suite
// (every other test skipped through the suite's own SkipTests option), for
// make test.
func TestGatewayConformanceShort(t *testing.T) {
	if testing.Short() {
		t.Skip("the conformance suite needs a control plane and root")
	}
	keep := map[string]bool{}
	for _, name := range ShortTests {
		keep[name] = true
	}
	var skip []string
	for _, ct := range tests.ConformanceTests {
		if !keep[ct.ShortName] {
			skip = append(skip, ct.ShortName)
		}
		delete(keep, ct.ShortName)
	}
	if len(keep) > 0 {
		t.Fatalf("ShortTests names tests the suite does not have: %v", keep)
	}
	runSuite(t, func(o *suite.ConformanceOptions) { o.SkipTests = skip })
}

// runSuite starts the cluster and the router and hands over to the suite;
// adjust, when set, changes the suite's options last.
func runSuite(t *testing.T, adjust func(*suite.ConformanceOptions)) {
	// controller-runtime complains unless a logger is set.
	log.SetLogger(zap.New(zap.WriteTo(os.Stdout), zap.UseDevMode(true)))
	start := time.Now()
	step := func(what string) { t.Logf("harness: %s after %v", what, time.Since(start).Round(100*time.Millisecond)) }

	// The internal packages find hack/kube and the router's sources from
	// the main module (go env GOMOD), so run from its root.
	t.Chdir(filepath.Join("..", ".."))
	cp := controlplane.ForTestWith(t, controlplane.Options{Controllers: true})
	step("control plane with controllers up")
	nodeagent.ForTest(t, cp.Client(), nodeagent.Options{})
	step("node agent running")

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	crds, err := gatewaycrds.Install(ctx, cp.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	step("Gateway API CRDs established (" + strings.Join(crds, ", ") + ")")

	cfg, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, install := range []func(*runtime.Scheme) error{v1alpha3.Install, v1alpha2.Install, xv1alpha1.Install, gatewayv1.Install, apiextensionsv1.AddToScheme} {
		if err := install(c.Scheme()); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := clientset.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	testrouter.Start(t, testrouter.Options{Kubeconfig: cp.Kubeconfig(), Args: routerGatewayArgs()})
	step("router started")

	gwc := &gatewayv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: GatewayClassName},
		Spec:       gatewayv1.GatewayClassSpec{ControllerName: ControllerName},
	}
	if err := c.Create(ctx, gwc); err != nil {
		t.Fatal(err)
	}
	step("GatewayClass " + GatewayClassName + " created; handing over to the suite")

	opts := suite.ConformanceOptions{
		ConfigurableOptions: suite.ConfigurableOptions{
			GatewayClassName:     GatewayClassName,
			CleanupBaseResources: true,
			CleanupTestResources: true,
			SupportedFeatures:    SupportedFeatures,
			ConformanceProfiles:  Profiles,
			Mode:                 flags.DefaultMode,
			TimeoutConfig:        conformanceconfig.DefaultTimeoutConfig(),
			Implementation: confv1.Implementation{
				Organization: "bulkhead-router",
				Project:      "bulkhead",
				URL:          "https://github.com/bulkhead-router/bulkhead",
				Version:      gitVersion(t),
				Contact:      []string{"https://github.com/bulkhead-router/bulkhead/issues"},
			},
			// Written only when asked (make conformance-gateway).
			ReportOutputPath: os.Getenv("BULKHEAD_CONFORMANCE_REPORT"),
		},
		Client:     c,
		Clientset:  cs,
		RestConfig: cfg,
	}
	// The suite's own flags (-run-test, -skip-tests, -debug, -exempt-features,
	// ...) still work: go test ./... -args -run-test=HTTPRouteSimpleSameNamespace.
	flags.ApplyAll(&opts.ConfigurableOptions)
	if adjust != nil {
		adjust(&opts)
	}
	conformance.RunConformanceWithOptions(t, opts)
}

// gitVersion names the commit under test: git describe, "-dirty" if the
// tree has changes.
func gitVersion(t *testing.T) string {
	out, err := exec.Command("git", "describe", "--always", "--dirty", "--tags").Output()
	if err != nil {
		t.Logf("git describe: %v; version \"dev\"", err)
		return "dev"
	}
	return strings.TrimSpace(string(out))
}
