package controlplane

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
)

// KubernetesVersion is the release the control plane is built from. It must
// match the k8s.io/kubernetes requirement in hack/kube/go.mod.
const KubernetesVersion = "v1.36.3"

// Binaries are the paths of the control-plane programs.
type Binaries struct {
	Etcd          string
	KubeAPIServer string
	Kubectl       string
}

// Dir is the directory holding all three binaries.
func (b Binaries) Dir() string { return filepath.Dir(b.KubeAPIServer) }

// CacheDir is where bulkhead's tools keep built artefacts:
// $BULKHEAD_CACHE_DIR, else <user cache dir>/bulkhead.
func CacheDir() (string, error) {
	if dir := os.Getenv("BULKHEAD_CACHE_DIR"); dir != "" {
		return dir, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory: set BULKHEAD_CACHE_DIR: %w", err)
	}
	return filepath.Join(base, "bulkhead"), nil
}

// EnsureBinaries returns the control-plane binaries, building them first if
// the cache has none for the current contents of hack/kube. The first build
// takes minutes (the Go toolchain's output is copied to progress); later calls
// return at once. Concurrent callers, also in other processes (go test runs
// packages in parallel), wait for one build instead of racing.
func EnsureBinaries(ctx context.Context, progress io.Writer) (Binaries, error) {
	if progress == nil {
		progress = io.Discard
	}
	srcDir, err := kubeModuleDir(ctx)
	if err != nil {
		return Binaries{}, err
	}
	key, err := sourceHash(srcDir)
	if err != nil {
		return Binaries{}, err
	}
	cache, err := CacheDir()
	if err != nil {
		return Binaries{}, err
	}
	outDir := filepath.Join(cache, "kube-"+KubernetesVersion+"-"+key)
	bins := Binaries{
		Etcd:          filepath.Join(outDir, "etcd"),
		KubeAPIServer: filepath.Join(outDir, "kube-apiserver"),
		Kubectl:       filepath.Join(outDir, "kubectl"),
	}
	if complete(outDir) {
		return bins, nil
	}

	if err := os.MkdirAll(cache, 0o755); err != nil {
		return Binaries{}, err
	}
	unlock, err := lockFile(filepath.Join(cache, "kube-build.lock"))
	if err != nil {
		return Binaries{}, err
	}
	defer unlock()
	if complete(outDir) { // another process built it while we waited
		return bins, nil
	}

	fmt.Fprintf(progress, "building etcd, kube-apiserver and kubectl %s from the Go module proxy (first run only; a few minutes on 2 cores)...\n", KubernetesVersion)
	tmp, err := os.MkdirTemp(cache, ".kube-build-")
	if err != nil {
		return Binaries{}, err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-v", "-ldflags", versionLDFlags(), "-o", tmp+string(os.PathSeparator),
		"./kube-apiserver", "./etcd", "./kubectl")
	cmd.Dir = srcDir
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "CGO_ENABLED=0")
	cmd.Stdout = progress
	cmd.Stderr = &packageCounter{w: progress}
	if err := cmd.Run(); err != nil {
		return Binaries{}, fmt.Errorf("building the control plane in %s: %w", srcDir, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), []byte(KubernetesVersion+"\n"), 0o644); err != nil {
		return Binaries{}, err
	}
	os.RemoveAll(outDir) // a half-written directory from a crashed build
	if err := os.Rename(tmp, outDir); err != nil {
		return Binaries{}, err
	}
	fmt.Fprintf(progress, "control plane built: %s\n", outDir)
	return bins, nil
}

func complete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, ".complete"))
	return err == nil
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

// kubeModuleDir finds hack/kube from the enclosing module of the working
// directory: tests run inside the module, and so do the demo and devcluster.
func kubeModuleDir(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("locating the bulkhead module (is go on PATH?): %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the bulkhead module: run from the repository")
	}
	dir := filepath.Join(filepath.Dir(gomod), "hack", "kube")
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", fmt.Errorf("control-plane module not found: %w", err)
	}
	return dir, nil
}

// sourceHash identifies a build: the module's files, the Go version and the
// platform. Any change to hack/kube gives a new cache entry.
func sourceHash(dir string) (string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".go") || d.Name() == "go.mod" || d.Name() == "go.sum") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	h := sha256.New()
	fmt.Fprintf(h, "%s %s/%s %s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, versionLDFlags())
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(dir, f)
		fmt.Fprintf(h, "%s %d\n", rel, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// lockFile takes an exclusive flock, blocking until it is free.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// packageCounter turns `go build -v` output (one package per line, ~3,000 of
// them) into a progress line every 100 packages, and passes errors through.
type packageCounter struct {
	w       io.Writer
	n       int
	partial []byte
}

func (p *packageCounter) Write(b []byte) (int, error) {
	p.partial = append(p.partial, b...)
	for {
		i := strings.IndexByte(string(p.partial), '\n')
		if i < 0 {
			return len(b), nil
		}
		line := string(p.partial[:i])
		p.partial = p.partial[i+1:]
		switch {
		case strings.HasPrefix(line, "#") || strings.Contains(line, ": ") || strings.HasPrefix(line, "\t"):
			fmt.Fprintln(p.w, line) // a compiler or linker message
		default:
			p.n++
			if p.n%100 == 0 {
				fmt.Fprintf(p.w, "  ... %d packages compiled\n", p.n)
			}
		}
	}
}
