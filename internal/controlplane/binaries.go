package controlplane

import (
	"context"
	"io"
	"path/filepath"
	"strings"

	"github.com/bulkhead-router/bulkhead/internal/toolbuild"
)

// KubernetesVersion is the release the control plane is built from. It must
// match the k8s.io/kubernetes requirement in hack/kube/go.mod.
const KubernetesVersion = "v1.36.3"

// Binaries are the paths of the control-plane programs.
type Binaries struct {
	Etcd                  string
	KubeAPIServer         string
	KubeControllerManager string
	KubeScheduler         string
	Kubectl               string
}

// EnsureBinaries returns the control-plane binaries, building them first
// if the cache has none for the current contents of hack/kube. The first
// build takes minutes (progress goes to progress); later calls return at
// once.
func EnsureBinaries(ctx context.Context, progress io.Writer) (Binaries, error) {
	dir, err := toolbuild.Ensure(ctx, toolbuild.Spec{
		Name:      "kube-" + KubernetesVersion,
		ModuleDir: filepath.Join("hack", "kube"),
		Programs: map[string]string{
			"etcd":                    "./etcd",
			"kube-apiserver":          "./kube-apiserver",
			"kube-controller-manager": "./kube-controller-manager",
			"kube-scheduler":          "./kube-scheduler",
			"kubectl":                 "./kubectl",
		},
		LDFlags: versionLDFlags(),
		What:    "etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl " + KubernetesVersion,
		Expect:  "about 5 minutes on an idle 2-core machine",
	}, progress)
	if err != nil {
		return Binaries{}, err
	}
	return Binaries{
		Etcd:                  filepath.Join(dir, "etcd"),
		KubeAPIServer:         filepath.Join(dir, "kube-apiserver"),
		KubeControllerManager: filepath.Join(dir, "kube-controller-manager"),
		KubeScheduler:         filepath.Join(dir, "kube-scheduler"),
		Kubectl:               filepath.Join(dir, "kubectl"),
	}, nil
}

// versionLDFlags stamps the release into the binaries; without it
// kube-apiserver reports v0.0.0-master, which clients and kubectl warn about.
func versionLDFlags() string {
	minor := strings.Split(KubernetesVersion, ".")[1]
	var flags []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		flags = append(flags,
			"-X", pkg+".gitVersion="+KubernetesVersion,
			"-X", pkg+".gitMajor=1",
			"-X", pkg+".gitMinor="+minor)
	}
	return "-s -w " + strings.Join(flags, " ")
}
