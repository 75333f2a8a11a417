package podnet

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// buildDirPrefixes name the temporary directories holding built pod
// programs; the owning process is part of the name so a crashed run's
// directory can be recognised and removed (removeStaleBuildDirs).
// "bulkhead-testpod-" is what earlier versions of package testpods used.
const buildDirPrefix = "bulkhead-podprog-"

var staleBuildDirPrefixes = []string{buildDirPrefix, "bulkhead-testpod-"}

// builds are the process-wide pod programs, one per package, shared by all
// users of the process and removed when the last of them lets go.
// Rebuilding after that is cheap: the go command caches the result.
var builds struct {
	mu sync.Mutex
	m  map[string]*build
}

type build struct {
	users int
	dir   string
	path  string
}

// BuildProgram returns the path of pkg (an import path of a main package
// in the bulkhead module) built with `go build`, and the function that
// gives it back. The go command runs from the current directory, which must
// be inside the bulkhead module (true for its tests, demo and tools). Each
// package is built once per process while anyone holds it.
func BuildProgram(ctx context.Context, log *slog.Logger, pkg string) (binary string, release func(), err error) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.m == nil {
		builds.m = map[string]*build{}
	}
	b := builds.m[pkg]
	if b == nil {
		dir, err := os.MkdirTemp("", buildDirPrefix+strings.ReplaceAll(currentProcess().String(), " ", "-")+"-")
		if err != nil {
			return "", nil, fmt.Errorf("podnet: %w", err)
		}
		out := filepath.Join(dir, path.Base(pkg))
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		// A static binary does not care which mount namespace
		// `ip netns exec` gives it.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if output, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return "", nil, fmt.Errorf("podnet: go build %s (run from inside the bulkhead module): %w\n%s", pkg, err, output)
		}
		log.Info("built pod program", "package", pkg, "path", out)
		b = &build{dir: dir, path: out}
		builds.m[pkg] = b
	}
	b.users++
	var once sync.Once
	return b.path, func() { once.Do(func() { releaseProgram(pkg) }) }, nil
}

func releaseProgram(pkg string) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	b := builds.m[pkg]
	b.users--
	if b.users == 0 {
		os.RemoveAll(b.dir)
		delete(builds.m, pkg)
	}
}

// removeStaleBuildDirs removes build directories whose owning process is
// gone.
func removeStaleBuildDirs(log *slog.Logger) error {
	for _, prefix := range staleBuildDirPrefixes {
		matches, err := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
		if err != nil {
			return err
		}
		for _, dir := range matches {
			// <prefix><pid>-<starttime>-<random>
			parts := strings.Split(strings.TrimPrefix(filepath.Base(dir), prefix), "-")
			if len(parts) != 3 {
				continue
			}
			owner, err := parseProcessIdentity(parts[0] + " " + parts[1])
			if err != nil || owner.alive() {
				continue
			}
			log.Info("removing pod program build of a dead process", "dir", dir)
			os.RemoveAll(dir)
		}
	}
	return nil
}

// OwnedTempDir makes a temporary directory named after this process, like
// the program builds, so that NewHost removes it once this process is gone
// even if it never got to remove it itself.
func OwnedTempDir() (string, error) {
	dir, err := os.MkdirTemp("", buildDirPrefix+strings.ReplaceAll(currentProcess().String(), " ", "-")+"-")
	if err != nil {
		return "", fmt.Errorf("podnet: %w", err)
	}
	return dir, nil
}
