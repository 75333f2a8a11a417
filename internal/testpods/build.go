package testpods

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// TestpodPackage is the import path of the pod server program.
const TestpodPackage = "github.com/bulkhead-router/bulkhead/internal/testpods/testpod"

// buildDirPrefix names the temporary directories holding a built testpod.
// The owning process is part of the name so a crashed run's directory can
// be recognised and removed (removeStaleBuildDirs).
const buildDirPrefix = "bulkhead-testpod-"

// testpodBuild is the process-wide testpod binary, shared by all Clusters
// of the process and removed when the last of them closes. Rebuilding after
// that is cheap: the go command caches the result.
var testpodBuild struct {
	mu    sync.Mutex
	users int
	dir   string
	path  string
}

// acquireTestpod returns the path of a freshly built testpod binary and the
// function that gives it back.
func acquireTestpod(ctx context.Context, log *slog.Logger) (path string, release func(), err error) {
	b := &testpodBuild
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.users == 0 {
		dir, err := os.MkdirTemp("", buildDirPrefix+strings.ReplaceAll(currentProcess().String(), " ", "-")+"-")
		if err != nil {
			return "", nil, fmt.Errorf("testpods: %w", err)
		}
		path := filepath.Join(dir, "testpod")
		// Run from the current directory, which must be inside the
		// bulkhead module (true for its tests and its demo).
		cmd := exec.CommandContext(ctx, "go", "build", "-o", path, TestpodPackage)
		// A static binary does not care which mount namespace
		// `ip netns exec` gives it.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			os.RemoveAll(dir)
			return "", nil, fmt.Errorf("testpods: go build %s (run from inside the bulkhead module): %w\n%s",
				TestpodPackage, err, out)
		}
		log.Info("built testpod", "path", path)
		b.dir, b.path = dir, path
	}
	b.users++
	var once sync.Once
	return b.path, func() { once.Do(releaseTestpod) }, nil
}

func releaseTestpod() {
	b := &testpodBuild
	b.mu.Lock()
	defer b.mu.Unlock()
	b.users--
	if b.users == 0 {
		os.RemoveAll(b.dir)
		b.dir, b.path = "", ""
	}
}

// removeStaleBuildDirs removes testpod build directories whose owning
// process is gone.
func removeStaleBuildDirs(log *slog.Logger) error {
	matches, err := filepath.Glob(filepath.Join(os.TempDir(), buildDirPrefix+"*"))
	if err != nil {
		return err
	}
	for _, dir := range matches {
		// bulkhead-testpod-<pid>-<starttime>-<random>
		parts := strings.Split(strings.TrimPrefix(filepath.Base(dir), buildDirPrefix), "-")
		if len(parts) != 3 {
			continue
		}
		owner, err := parseProcessIdentity(parts[0] + " " + parts[1])
		if err != nil || owner.alive() {
			continue
		}
		log.Info("removing testpod build of a dead process", "dir", dir)
		os.RemoveAll(dir)
	}
	return nil
}
