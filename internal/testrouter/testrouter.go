package testrouter

import (
	"github.com/bulkhead-router/bulkhead/internal/freeport"

	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds ./cmd/bulkhead (once per process) and returns its path.
//
// BULKHEAD_BINARY, when set, names a prebuilt binary to use instead (a
// benchmark comparing two builds in one run: make bench-routes).
func Binary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("BULKHEAD_BINARY"); bin != "" {
		return bin
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bulkhead-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "bulkhead")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/bulkhead-router/bulkhead/cmd/bulkhead")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building bulkhead: %v", buildErr)
	}
	return binPath
}

// Router is one running bulkhead process.
type Router struct {
	t       testing.TB
	bin     string
	args    []string
	logPath string

	// ProxyURL, HealthURL, AdminURL and MetricsURL (the read-only metrics
	// listener) are http://127.0.0.1:PORT (Options.Host instead, if set).
	ProxyURL, HealthURL, AdminURL, MetricsURL string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	exit error
}

// Options for Start.
type Options struct {
	Kubeconfig string
	StateDir   string   // empty: a new temporary directory
	Args       []string // more flags
	// Host is the IP every listener binds (and the URLs name) instead of
	// 127.0.0.1: an address a test made (a test pod bridge's) that an
	// EndpointSlice may name, unlike loopback. Off loopback the admin
	// listener needs -admin-token-file in Args.
	Host string
}

// Start runs bulkhead and waits until it listens (not until it is ready:
// tests about readiness need to see it unready). The process is stopped at
// the end of the test and its log added to the output if the test failed.
func Start(t testing.TB, o Options) *Router {
	t.Helper()
	ports, err := freeport.Get(4) // below the ephemeral range: Restart reuses them
	if err != nil {
		t.Fatal(err)
	}
	if o.StateDir == "" {
		o.StateDir = t.TempDir()
	}
	host := "127.0.0.1"
	if o.Host != "" {
		host = o.Host
	}
	hostPort := func(port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
	r := &Router{
		t:          t,
		bin:        Binary(t),
		logPath:    filepath.Join(t.TempDir(), "bulkhead.log"),
		ProxyURL:   "http://" + hostPort(ports[0]),
		HealthURL:  "http://" + hostPort(ports[1]),
		AdminURL:   "http://" + hostPort(ports[2]),
		MetricsURL: "http://" + hostPort(ports[3]),
	}
	r.args = append([]string{
		"-address", hostPort(ports[0]),
		"-health-address", hostPort(ports[1]),
		"-admin-address", hostPort(ports[2]),
		// Each router its own metrics port, never the default :9912 that
		// routers of parallel tests would share.
		"-metrics-address", hostPort(ports[3]),
		"-state-dir", o.StateDir,
		"-log-level", "debug",
		// Tests that drain say so; the others should stop at once on
		// SIGTERM, not after an ALB's worth of health checks.
		"-drain-delay", "0s",
	}, o.Args...)
	if o.Kubeconfig != "" {
		r.args = append(r.args, "-kubeconfig", o.Kubeconfig)
	}
	t.Cleanup(func() {
		r.Kill()
		if t.Failed() {
			// The cause of a failed request is often far from the end
			// of a debug log: warnings and errors first, then the tail.
			t.Logf("--- bulkhead warnings and errors (%s):\n%s", r.logPath, r.LogLevels(40, "level=WARN", "level=ERROR"))
			t.Logf("--- bulkhead log (last 60 lines of %s):\n%s", r.logPath, r.LogTail(60))
		}
	})
	r.Restart()
	return r
}

// Restart starts the process again (after Kill or Signal) with the same
// flags and ports.
func (r *Router) Restart() {
	r.t.Helper()
	log, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	fmt.Fprintf(log, "---- start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(r.bin, r.args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		r.t.Fatalf("starting bulkhead: %v", err)
	}
	done := make(chan struct{})
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	go func() {
		err := cmd.Wait()
		log.Close()
		r.mu.Lock()
		r.exit = err
		r.mu.Unlock()
		close(done)
	}()
	r.WaitFor(30*time.Second, "health listener up", func() bool {
		resp, err := http.Get(r.HealthURL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// Pid is the running process's id (0 if none).
func (r *Router) Pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Signal sends sig to the process.
func (r *Router) Signal(sig syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		r.cmd.Process.Signal(sig)
	}
}

// Wait waits for the process to exit and returns its exit code.
func (r *Router) Wait(timeout time.Duration) int {
	r.t.Helper()
	r.mu.Lock()
	done := r.done
	r.mu.Unlock()
	select {
	case <-done:
	case <-time.After(timeout):
		r.t.Fatalf("bulkhead did not exit within %s", timeout)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.exit == nil {
		return 0
	}
	if ee, ok := r.exit.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// Kill SIGKILLs the process and waits for it, if it runs.
func (r *Router) Kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// Ready reports whether /readyz answers 200.
func (r *Router) Ready() bool {
	resp, err := http.Get(r.HealthURL + "/readyz")
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// WaitReady waits until /readyz answers 200.
func (r *Router) WaitReady(timeout time.Duration) {
	r.t.Helper()
	r.WaitFor(timeout, "ready", r.Ready)
}

// WaitFor polls cond every 20 ms until it holds, failing the test after
// timeout or if the process exits first.
func (r *Router) WaitFor(timeout time.Duration, what string, cond func() bool) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		r.mu.Lock()
		done := r.done
		r.mu.Unlock()
		select {
		case <-done:
			r.t.Fatalf("bulkhead exited while waiting for %s; log:\n%s", what, r.LogTail(40))
		case <-ctx.Done():
			r.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

// Admin GETs a path on the admin endpoint and returns status and body.
func (r *Router) Admin(path string, header ...string) (int, string) {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, r.AdminURL+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatalf("admin %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// Metric returns the value of one sample (name with labels exactly as
// exposed, e.g. `bulkhead_routes` or `bulkhead_problems{reason="X"}`), and
// whether it was present.
func (r *Router) Metric(sample string) (float64, bool) {
	r.t.Helper()
	_, body := r.Admin("/metrics")
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// LogTail returns the last n lines of the process log.
func (r *Router) LogTail(n int) string {
	data, _ := os.ReadFile(r.logPath)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// LogLevels returns the last n lines of the log that contain any of
// marks (such as "level=ERROR").
func (r *Router) LogLevels(n int, marks ...string) string {
	data, _ := os.ReadFile(r.logPath)
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		for _, m := range marks {
			if strings.Contains(l, m) {
				out = append(out, l)
				break
			}
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.Join(out, "\n")
}

// Log returns the whole process log.
func (r *Router) Log() string {
	data, _ := os.ReadFile(r.logPath)
	return string(data)
}
