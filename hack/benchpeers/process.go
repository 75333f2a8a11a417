package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is one proxy under test, running pinned to a CPU.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	log     *os.File
	done    chan struct{}
	err     error // Wait's result, set before done is closed
	// admin is bulkhead's operator endpoint (HOST:PORT), for profiling.
	admin string
}

// startPinned runs argv under `taskset -c cpu` (taskset execs the program,
// so the PID is the proxy's own and every thread or worker it starts
// inherits the CPU). Output goes to logPath. The process gets its own
// process group, so stop reaches nginx's and HAProxy's workers too, and
// dies with this program, even on SIGKILL.
func startPinned(name, logPath string, cpu int, env []string, argv ...string) (*process, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("taskset", append([]string{"-c", strconv.Itoa(cpu)}, argv...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, argv[0], err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

// exited is closed once the process has exited.
func (p *process) exited() <-chan struct{} { return p.done }

// stop ends the process group: SIGTERM, then SIGKILL if it is still there
// after a few seconds (bulkhead drains for up to its grace period, which
// an idle benchmark proxy does not need).
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	pgid := p.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Workers of nginx or HAProxy that outlived their master.
	syscall.Kill(-pgid, syscall.SIGKILL)
}

// tail returns the last n lines of the process's output.
func (p *process) tail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return "  (no output: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// exitError describes an early exit, with the process's last output.
func (p *process) exitError(while string) error {
	return fmt.Errorf("%s exited while %s (%v); its output (%s):\n%s", p.name, while, p.err, p.logPath, p.tail(20))
}

// pinSelf moves every thread of this program to cpu. Threads the Go
// runtime starts later inherit the mask of the thread that starts them, so
// everything this program runs from now on (the control plane, the pods,
// wrk, the fault-run load) stays off the proxies' CPU unless started with
// its own taskset.
func pinSelf(ctx context.Context, cpu int) error {
	out, err := exec.CommandContext(ctx, "taskset", "-a", "-p", "-c", strconv.Itoa(cpu), strconv.Itoa(os.Getpid())).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pinning this program to CPU %d: %w: %s", cpu, err, out)
	}
	return nil
}

// awaitCondition polls cond every interval until it returns nil, ctx ends,
// the process exits, or limit passes. Proxies are other processes: there is
// no event to wait on, only their answers.
func awaitCondition(ctx context.Context, p *process, limit, interval time.Duration, what string, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var exited <-chan struct{}
	if p != nil {
		exited = p.exited()
	}
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return p.exitError("waiting for " + what)
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s: not after %s: %w", what, limit, err)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}
