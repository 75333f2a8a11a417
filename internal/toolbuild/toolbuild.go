package toolbuild

import (
	"cmp"
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

// Spec describes one cached build.
type Spec struct {
	// Name prefixes the cache entry, e.g. "kube-v1.36.3".
	Name string
	// ModuleDir is the nested module, relative to bulkhead's module root.
	ModuleDir string
	// Programs maps output binary names to package paths, which may be
	// relative ("./etcd") or full import paths of tool dependencies.
	Programs map[string]string
	// LDFlags are passed to go build.
	LDFlags string
	// What is shown in the progress lines, e.g. "etcd, kube-apiserver and kubectl".
	What string
	// Expect tells how long the first build takes, e.g. "a few minutes on 2 cores".
	Expect string
}

// CacheDir is where built tools are kept: $BULKHEAD_CACHE_DIR, else
// <user cache dir>/bulkhead.
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

// Ensure returns the directory holding the spec's programs, building them
// first if the cache has none for the current sources. Build output is
// condensed into progress lines.
func Ensure(ctx context.Context, spec Spec, progress io.Writer) (string, error) {
	if progress == nil {
		progress = io.Discard
	}
	root, err := ModuleRoot(ctx)
	if err != nil {
		return "", err
	}
	srcDir := filepath.Join(root, spec.ModuleDir)
	key, err := sourceHash(srcDir, spec)
	if err != nil {
		return "", fmt.Errorf("%s: %w", spec.ModuleDir, err)
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	outDir := filepath.Join(cache, spec.Name+"-"+key)
	if complete(outDir) {
		return outDir, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	unlock, err := lockFile(filepath.Join(cache, spec.Name+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if complete(outDir) { // another process built it while we waited
		return outDir, nil
	}

	fmt.Fprintf(progress, "building %s from the Go module proxy (first run only; %s)...\n", spec.What, cmp.Or(spec.Expect, "under a minute"))
	tmp, err := os.MkdirTemp(cache, ".build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	names := make([]string, 0, len(spec.Programs))
	for name := range spec.Programs {
		names = append(names, name)
	}
	sort.Strings(names)
	counter := &packageCounter{w: progress}
	for _, name := range names {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-v", "-ldflags", spec.LDFlags,
			"-o", filepath.Join(tmp, name), spec.Programs[name])
		cmd.Dir = srcDir
		cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "CGO_ENABLED=0")
		cmd.Stdout = progress
		cmd.Stderr = counter
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("building %s in %s: %w", name, srcDir, err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), []byte(key+"\n"), 0o644); err != nil {
		return "", err
	}
	os.RemoveAll(outDir) // a half-written directory from a crashed build
	if err := os.Rename(tmp, outDir); err != nil {
		return "", err
	}
	fmt.Fprintf(progress, "built %s: %s\n", spec.What, outDir)
	return outDir, nil
}

func complete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, ".complete"))
	return err == nil
}

// ModuleRoot is the directory of bulkhead's go.mod, found from the working
// directory: tests run inside the module, and so do the tools.
func ModuleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("locating the bulkhead module (is go on PATH?): %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the bulkhead module: run from the repository")
	}
	return filepath.Dir(gomod), nil
}

// sourceHash identifies a build: the module's files, the Go version, the
// platform and the spec.
func sourceHash(dir string, spec Spec) (string, error) {
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
	fmt.Fprintf(h, "%s %s/%s %q %v\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, spec.LDFlags, spec.Programs)
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

// packageCounter turns `go build -v` output (one package per line, about
// 1,600 for the control plane) into a progress line every 100 packages, and
// passes compiler messages through.
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
