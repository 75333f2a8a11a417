package gatewaycrds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// Module and Version name the Gateway API release whose CRDs are
// installed; TestVersionMatchesGoMod keeps Version equal to the main
// module's requirement.
const (
	Module  = "sigs.k8s.io/gateway-api"
	Version = "v1.6.3"
)

// FieldManager is the server-side apply field manager of the objects
// Install writes.
const FieldManager = "bulkhead-gatewaycrds"

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// resources maps the kinds found in config/crd/standard to their
// (cluster-scoped) resources.
var resources = map[string]schema.GroupVersionResource{
	"apiextensions.k8s.io/v1/CustomResourceDefinition":                 {Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"},
	"admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy":        {Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicies"},
	"admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding": {Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicybindings"},
}

// ModuleDir returns the directory of sigs.k8s.io/gateway-api@Version in the
// module cache, downloading it through the go command if needed. The error
// names the module and the go command's output when that fails.
func ModuleDir(ctx context.Context) (string, error) {
	mod := Module + "@" + Version
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", mod)
	// Outside any module, so that no go.mod (ours or a nested one) matters.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct {
		Dir   string
		Error string
	}
	if jerr := json.Unmarshal(out, &info); jerr == nil && info.Error != "" {
		return "", fmt.Errorf("go mod download %s: %s", mod, info.Error)
	}
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", fmt.Errorf("locating %s: the go command is not on PATH: %w", mod, err)
		}
		return "", fmt.Errorf("go mod download %s: %v: %s%s", mod, err, out, stderr.Bytes())
	}
	if info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: no directory in %q", mod, out)
	}
	return info.Dir, nil
}

// Files returns the YAML files of the standard channel in the module
// directory dir, sorted.
func Files(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "config", "crd", "standard", "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no config/crd/standard/*.yaml in %s (%s@%s)", dir, Module, Version)
	}
	sort.Strings(files)
	return files, nil
}

// Objects reads the objects of the standard channel from the module
// directory dir: every CRD, and the ValidatingAdmissionPolicy and its
// binding.
func Objects(dir string) ([]*unstructured.Unstructured, error) {
	files, err := Files(dir)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for i, doc := range splitYAML(b) {
			var m map[string]any
			if err := yaml.Unmarshal(doc, &m); err != nil {
				return nil, fmt.Errorf("%s document %d: %w", filepath.Base(f), i, err)
			}
			if len(m) == 0 {
				continue
			}
			u := &unstructured.Unstructured{Object: m}
			if _, ok := resources[u.GetAPIVersion()+"/"+u.GetKind()]; !ok {
				return nil, fmt.Errorf("%s: unexpected %s %s", filepath.Base(f), u.GetAPIVersion(), u.GetKind())
			}
			objs = append(objs, u)
		}
	}
	return objs, nil
}

func splitYAML(b []byte) [][]byte {
	var docs [][]byte
	var cur []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimRight(line, " \t\r") == "---" {
			docs = append(docs, []byte(strings.Join(cur, "\n")))
			cur = nil
			continue
		}
		cur = append(cur, line)
	}
	return append(docs, []byte(strings.Join(cur, "\n")))
}

// Install applies the standard-channel objects of the pinned release
// (server-side apply, FieldManager, forced) and waits until every CRD is
// Established, or ctx ends. It returns the names of the CRDs.
func Install(ctx context.Context, cfg *rest.Config) ([]string, error) {
	dir, err := ModuleDir(ctx)
	if err != nil {
		return nil, err
	}
	return InstallFrom(ctx, cfg, dir)
}

// InstallFrom is Install from a module directory already located.
func InstallFrom(ctx context.Context, cfg *rest.Config, dir string) ([]string, error) {
	objs, err := Objects(dir)
	if err != nil {
		return nil, err
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	var crds []string
	force := true
	for _, u := range objs {
		gvr := resources[u.GetAPIVersion()+"/"+u.GetKind()]
		body, err := json.Marshal(u.Object)
		if err != nil {
			return nil, err
		}
		if _, err := client.Resource(gvr).Patch(ctx, u.GetName(), types.ApplyPatchType, body,
			metav1.PatchOptions{FieldManager: FieldManager, Force: &force}); err != nil {
			return nil, fmt.Errorf("applying %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		if gvr == crdGVR {
			crds = append(crds, u.GetName())
		}
	}
	if err := WaitEstablished(ctx, client, crds); err != nil {
		return nil, err
	}
	return crds, nil
}

// WaitEstablished waits until every named CRD has the condition
// Established=True (and NamesAccepted=True), polling every 100 ms.
func WaitEstablished(ctx context.Context, client dynamic.Interface, names []string) error {
	pending := ""
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		for _, name := range names {
			u, err := client.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				pending = name + ": " + err.Error()
				return false, nil
			}
			if !conditionTrue(u, "Established") || !conditionTrue(u, "NamesAccepted") {
				pending = name + " not Established"
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the Gateway API CRDs to be Established (%s): %w", pending, err)
	}
	return nil
}

func conditionTrue(u *unstructured.Unstructured, typ string) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == typ {
			return m["status"] == "True"
		}
	}
	return false
}
