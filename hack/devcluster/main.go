package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	"github.com/bulkhead-router/bulkhead/internal/nodeagent"
)

func main() {
	fs := flag.NewFlagSet("devcluster", flag.ExitOnError)
	dir := fs.String("dir", ".devcluster", "directory for the cluster's data, logs and kubeconfig")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: devcluster [-dir DIR] up|down|status|build")
		fs.PrintDefaults()
	}
	fs.Parse(os.Args[1:])
	if fs.NArg() != 1 {
		fs.Usage()
		os.Exit(2)
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fatal(err)
	}
	ctx := context.Background()
	switch fs.Arg(0) {
	case "up":
		err = up(ctx, abs)
	case "down":
		err = down(abs)
	case "status":
		err = status(abs)
	case "build":
		_, err = controlplane.EnsureBinaries(ctx, os.Stdout)
	case "serve": // internal: the background process started by up
		err = serve(ctx, abs)
	default:
		fs.Usage()
		os.Exit(2)
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "devcluster: %v\n", err)
	os.Exit(1)
}

func pidFile(dir string) string   { return filepath.Join(dir, "devcluster.pid") }
func readyFile(dir string) string { return filepath.Join(dir, "ready") }
func logFile(dir string) string   { return filepath.Join(dir, "devcluster.log") }

// running returns the pid of a live serve process, or 0.
func running(dir string) int {
	data, err := os.ReadFile(pidFile(dir))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

func up(ctx context.Context, dir string) error {
	if running(dir) != 0 {
		fmt.Println("already running")
		return status(dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Build in the foreground so the user sees progress.
	if _, err := controlplane.EnsureBinaries(ctx, os.Stdout); err != nil {
		return err
	}
	os.Remove(readyFile(dir))
	log, err := os.OpenFile(logFile(dir), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-dir", dir, "serve")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives this terminal command
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(3 * time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(readyFile(dir)); err == nil {
			return status(dir)
		}
		select {
		case err := <-exited:
			return fmt.Errorf("the control plane did not start (%v); see %s", err, logFile(dir))
		case <-deadline:
			return fmt.Errorf("the control plane is not ready after 3 minutes; see %s", logFile(dir))
		case <-tick.C:
		}
	}
}

// serve runs the control plane until SIGTERM or SIGINT.
func serve(ctx context.Context, dir string) error {
	cp, err := controlplane.Start(ctx, controlplane.Options{
		Dir:         filepath.Join(dir, "data"),
		Progress:    os.Stdout,
		Controllers: true, // Deployments, EndpointSlices, namespaces, node lifecycle, scheduling
	})
	if err != nil {
		return err
	}
	defer cp.Stop()
	// The Nodes: the node agent registers them and runs their pods as
	// processes in network namespaces. It stops before the control plane
	// (defers run last first); the Nodes stay and are marked NotReady, and
	// the next up runs their pods again, as a rebooted kubelet does.
	agent, err := nodeagent.Start(ctx, cp.Client(), nodeagent.Options{
		Logger: slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		return fmt.Errorf("node agent: %w", err)
	}
	defer agent.Close()
	if err := os.WriteFile(pidFile(dir), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(pidFile(dir))
	info := fmt.Sprintf("kubeconfig=%s\nkubectl=%s\nserver=%s\nlogs=%s\n",
		cp.Kubeconfig(), cp.Binaries().Kubectl, cp.URL(), filepath.Join(cp.Dir(), "logs"))
	if err := os.WriteFile(readyFile(dir), []byte(info), 0o644); err != nil {
		return err
	}
	defer os.Remove(readyFile(dir))
	fmt.Print("ready\n" + info)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	fmt.Println("stopping")
	return nil
}

func down(dir string) error {
	pid := running(dir)
	if pid == 0 {
		fmt.Println("not running")
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			return errors.New("the control plane did not stop in 30 s; killed it")
		}
		time.Sleep(100 * time.Millisecond) // polling another process's exit: there is nothing to wait on
	}
	fmt.Println("stopped (data kept in " + dir + "; remove it for a fresh cluster)")
	return nil
}

func status(dir string) error {
	pid := running(dir)
	if pid == 0 {
		fmt.Println("not running; start it with: go run ./hack/devcluster up")
		return nil
	}
	info, err := os.ReadFile(readyFile(dir))
	if err != nil {
		fmt.Printf("starting (pid %d); log: %s\n", pid, logFile(dir))
		return nil
	}
	vals := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(info)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vals[k] = v
		}
	}
	fmt.Printf("running (pid %d), API server %s\n\n  export KUBECONFIG=%s\n  alias kubectl=%s\n\nlogs: %s\n",
		pid, vals["server"], vals["kubeconfig"], vals["kubectl"], vals["logs"])
	return nil
}
