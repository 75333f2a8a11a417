package ingressconformance

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/bulkhead-router/bulkhead/internal/toolbuild"
)

const (
	// SuiteCommit pins the suite: the head of kubernetes-sigs/
	// ingress-controller-conformance (the self-signed TLS Secret of the
	// host rules feature is of type kubernetes.io/tls from this commit on).
	SuiteCommit = "f91a799"
	// suiteRepo is cloned when no local git directory holds the commit.
	suiteRepo = "https://github.com/kubernetes-sigs/ingress-controller-conformance"
	// localMirror is where these machines keep a bare copy of suiteRepo.
	localMirror = "/work/.mirror/kubernetes-sigs+ingress-controller-conformance/repo"
)

// suiteGitDir is the git directory the suite's source is read from:
// BULKHEAD_INGRESS_CONFORMANCE_GIT, else the local mirror, else a bare
// clone of the GitHub repository kept in the cache.
func suiteGitDir(ctx context.Context, cache string) (string, error) {
	if dir := os.Getenv("BULKHEAD_INGRESS_CONFORMANCE_GIT"); dir != "" {
		return dir, nil
	}
	if _, err := os.Stat(localMirror); err == nil {
		return localMirror, nil
	}
	dir := filepath.Join(cache, "ingress-conformance.git")
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	tmp := dir + ".tmp"
	_ = os.RemoveAll(tmp)
	if out, err := exec.CommandContext(ctx, "git", "clone", "--bare", "--quiet", suiteRepo, tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("no local copy of the Ingress conformance suite and cloning %s failed (set BULKHEAD_INGRESS_CONFORMANCE_GIT to a git directory holding commit %s): %v\n%s",
			suiteRepo, SuiteCommit, err, out)
	}
	return dir, os.Rename(tmp, dir)
}

// ensureSuite returns the directory holding the suite's source at
// SuiteCommit and its test binary (suite.test), extracting and building
// them first if the cache has none for this commit and Go version.
func ensureSuite(t *testing.T) (dir string) {
	t.Helper()
	ctx := t.Context()
	cache, err := toolbuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(cache, fmt.Sprintf("ingress-conformance-%s-%s", SuiteCommit, runtime.Version()))
	if _, err := os.Stat(filepath.Join(dir, "suite.test")); err == nil {
		return dir
	}
	gitDir, err := suiteGitDir(ctx, cache)
	if err != nil {
		t.Fatal(err)
	}
	// Extract and build beside the final place, then rename: a run killed
	// half way leaves no entry that looks complete.
	tmp, err := os.MkdirTemp(cache, "ingress-conformance-build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	archive, err := exec.CommandContext(ctx, "git", "-C", gitDir, "archive", "--format=tar", SuiteCommit).Output()
	if err != nil {
		t.Fatalf("git archive %s in %s: %v", SuiteCommit, gitDir, err)
	}
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", tmp)
	untar.Stdin = bytes.NewReader(archive)
	if out, err := untar.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	t.Logf("harness: building the Ingress conformance suite at %s (its own module; a minute or two the first time)", SuiteCommit)
	build := exec.CommandContext(ctx, "go", "test", "-c", "-o", "suite.test", ".")
	build.Dir = tmp
	build.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the suite: %v\n%s", err, out)
	}
	_ = os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil && !strings.Contains(err.Error(), "exists") {
		t.Fatal(err)
	}
	return dir
}
