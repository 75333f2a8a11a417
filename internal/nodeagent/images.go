package nodeagent

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// Image is what the agent runs for an image name: a program of this
// repository with the entrypoint and default arguments an image would
// carry. A container's command replaces Entrypoint (its first element must
// name the program, see Program), its args replace DefaultArgs, as
// Kubernetes does with ENTRYPOINT and CMD.
type Image struct {
	// Repository is the image name without tag or digest.
	Repository string
	// Package is the main package built and run for it.
	Package string
	// Program is the file name the image would run; a container command
	// naming it (as "Program" or "/Program") runs Package.
	Program string
	// DefaultArgs are the image's CMD, used when the container has no
	// args.
	DefaultArgs []string
	// Env is the image's ENV, overridden by the container's env.
	Env map[string]string
	// Note says what the mapping is for, for the documentation and the
	// error naming the supported images.
	Note string
}

const (
	// TestpodImage runs the test pod program (internal/testpods/testpod)
	// serving HTTP on :8080 and its control endpoint on :15000.
	TestpodImage = "bulkhead.local/testpod"
	// GRPCEchoImage runs the gRPC test pod (internal/testpods/grpcecho):
	// grpc.testing.TestService and grpc.health.v1 over h2c on :8080, its
	// control endpoint (readiness: GET /ready) on :15000.
	GRPCEchoImage = "bulkhead.local/grpc-echo"
	// EchoBasicImage runs echobasic under our own name.
	EchoBasicImage = "bulkhead.local/echo-basic"
	// GatewayEchoBasicImage is the Gateway API conformance suite's echo
	// server; echobasic answers in its format.
	GatewayEchoBasicImage = "registry.k8s.io/gateway-api/echo-basic"
	// CoreDNSImage is used by the conformance base manifests for UDPRoute
	// tests; echobasic's DNS placeholder keeps that Deployment ready.
	CoreDNSImage = "registry.k8s.io/coredns/coredns"
	// IngressEchoImage is the Ingress conformance suite's echo server
	// (kubernetes-sigs/ingress-controller-conformance, pinned by digest
	// there); ingressecho answers in its format.
	IngressEchoImage = "k8s.gcr.io/ingressconformance/echoserver"

	testpodPackage   = "github.com/bulkhead-router/bulkhead/internal/testpods/testpod"
	grpcechoPackage  = "github.com/bulkhead-router/bulkhead/internal/testpods/grpcecho"
	echobasicPackage = "github.com/bulkhead-router/bulkhead/internal/nodeagent/echobasic"
	ingressEchoPkg   = "github.com/bulkhead-router/bulkhead/internal/nodeagent/ingressecho"
)

// Images is the fixed image table; any tag or digest of a repository maps
// to the same program. The conformance suite v1.6.3 uses
// registry.k8s.io/gateway-api/echo-basic:v1.5.1, :v1.6.0-dev.2 and
// :v1.6.0-dev.3, registry.k8s.io/coredns/coredns:v1.12.2 (base manifests,
// GATEWAY-HTTP needs them all ready) and, for mesh tests only,
// registry.k8s.io/gateway-api/echo-advanced:v1.5.1 (not mapped).
var Images = []Image{
	{
		Repository:  TestpodImage,
		Package:     testpodPackage,
		Program:     "testpod",
		DefaultArgs: []string{"-listen", ":8080", "-control", ":15000"},
		Note:        "test pod: JSON echo on :8080 (pod name from POD_NAME or HOSTNAME), control on :15000",
	},
	{
		Repository:  GRPCEchoImage,
		Package:     grpcechoPackage,
		Program:     "grpc-echo",
		DefaultArgs: []string{"-listen", ":8080", "-control", ":15000"},
		Note:        "gRPC test pod: TestService and health over h2c on :8080 (pod name from POD_NAME or HOSTNAME), control and readiness (/ready) on :15000",
	},
	{
		Repository: EchoBasicImage,
		Package:    echobasicPackage,
		Program:    "echo-basic",
		Note:       "Gateway API echo-basic format on :3000 (h2c :3001, https :8443)",
	},
	{
		Repository: GatewayEchoBasicImage,
		Package:    echobasicPackage,
		Program:    "echo-basic",
		Note:       "Gateway API conformance echo server (our echobasic)",
	},
	{
		Repository: CoreDNSImage,
		Package:    echobasicPackage,
		Program:    "coredns",
		Note:       "DNS placeholder answering REFUSED on :53 (for the conformance base manifests)",
	},
	{
		Repository: IngressEchoImage,
		Package:    ingressEchoPkg,
		Program:    "echoserver",
		Note:       "Ingress conformance echo server (our ingressecho): JSON echo on :3000, /health",
	},
}

// lookupImage finds the table entry of an image reference
// ("repo", "repo:tag", "repo@sha256:..."), also accepting the docker.io
// spellings of a bare name.
func lookupImage(ref string) (Image, error) {
	repo, err := imageRepository(ref)
	if err != nil {
		return Image{}, err
	}
	for _, im := range Images {
		if im.Repository == repo {
			return im, nil
		}
	}
	return Image{}, fmt.Errorf("image %q is not known to the bulkhead node agent (no container runtime here: "+
		"images map to programs of the repository); supported: %s", ref, supportedImages())
}

func imageRepository(ref string) (string, error) {
	if ref == "" || strings.ContainsAny(ref, " \t\n") || ref != strings.TrimSpace(ref) {
		return "", &invalidImageError{ref}
	}
	repo := ref
	if i := strings.IndexByte(repo, '@'); i >= 0 {
		repo = repo[:i]
	}
	// A tag is a colon after the last slash (a colon before it is a
	// registry port).
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo = repo[:i]
	}
	if repo == "" || strings.ToLower(repo) != repo {
		return "", &invalidImageError{ref}
	}
	return repo, nil
}

type invalidImageError struct{ ref string }

func (e *invalidImageError) Error() string {
	return fmt.Sprintf("invalid image reference %q; supported images: %s", e.ref, supportedImages())
}

func supportedImages() string {
	var names []string
	for _, im := range Images {
		names = append(names, im.Repository+":<any tag>")
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// commandLine resolves a container's command and args against its image:
// the program's arguments, or an error when the command names a program
// the image does not have.
func (im Image) commandLine(command, args []string) ([]string, error) {
	var out []string
	if len(command) > 0 {
		if p := path.Base(command[0]); p != im.Program && command[0] != im.Program {
			return nil, fmt.Errorf("command %q: image %s only contains /%s", command[0], im.Repository, im.Program)
		}
		out = append(out, command[1:]...)
	}
	if len(args) > 0 {
		out = append(out, args...)
	} else if len(command) == 0 {
		out = append(out, im.DefaultArgs...)
	}
	if im.Program == "coredns" && len(command) == 0 {
		// echobasic recognises the DNS placeholder by a leading -conf,
		// which is what the suite passes; make it so for any args.
		if len(out) == 0 || out[0] != "-conf" {
			out = append([]string{"-conf", ""}, out...)
		}
	}
	return out, nil
}
