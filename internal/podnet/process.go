package podnet

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrClosed is returned by a stopped Spawner.
var ErrClosed = errors.New("podnet: closed")

// Spawner starts pod processes from one OS thread that stays alive until
// Stop. Pod processes get PR_SET_PDEATHSIG, which fires when the thread
// that started them exits; pinning that thread means a pod dies with the
// process that started it (even on SIGKILL) but not before.
type Spawner struct {
	requests chan spawnRequest
	quit     chan struct{}
	done     chan struct{}
	once     sync.Once
}

type spawnRequest struct {
	cmd    *exec.Cmd
	result chan error
}

// NewSpawner starts the spawning thread.
func NewSpawner() *Spawner {
	s := &Spawner{requests: make(chan spawnRequest), quit: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

func (s *Spawner) run() {
	// Locked so that every pod is forked from this one thread while the
	// Spawner lives. Unlocked before returning: a goroutine that exits
	// while locked makes the runtime destroy its thread, and that thread
	// may earlier have forked OTHER processes of this test binary (a
	// kube-apiserver, a toxiproxy of a parallel test) whose
	// PR_SET_PDEATHSIG would then kill them. Pods are killed by their
	// owners' Close; the death signal still covers the process dying,
	// since that ends every thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(s.done)
	for {
		select {
		case r := <-s.requests:
			r.result <- r.cmd.Start()
		case <-s.quit:
			return
		}
	}
}

// Start starts cmd on the spawning thread. Set cmd.SysProcAttr.Pdeathsig
// for the process to die with its starter.
func (s *Spawner) Start(cmd *exec.Cmd) error {
	r := spawnRequest{cmd: cmd, result: make(chan error, 1)}
	select {
	case s.requests <- r:
		return <-r.result
	case <-s.done:
		return ErrClosed
	}
}

// Stop ends the spawning thread; Start fails afterwards.
func (s *Spawner) Stop() {
	s.once.Do(func() { close(s.quit) })
	<-s.done
}

// Process watches one started pod process.
type Process struct {
	Cmd    *exec.Cmd
	Output *Output
	exited chan struct{}
	err    error // Wait's result, set before exited is closed
}

// Watch waits for cmd (started) in the background.
func Watch(cmd *exec.Cmd, output *Output) *Process {
	p := &Process{Cmd: cmd, Output: output, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p
}

// Exited is closed once the process has exited and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is Wait's result; valid once Exited is closed.
func (p *Process) Err() error { return p.err }

// ExitCode is the process's exit code, 128+N for death by signal N, valid
// once Exited is closed.
func (p *Process) ExitCode() int {
	st := p.Cmd.ProcessState
	if st == nil {
		return -1
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

// Kill SIGKILLs the process group and waits for the process to be reaped.
func (p *Process) Kill() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	if err := syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case <-p.exited:
		return nil
	case <-timer.C:
		return fmt.Errorf("process %d still running 10s after SIGKILL", p.Cmd.Process.Pid)
	}
}

// Output forwards a pod's log lines to a logger and keeps the last few for
// error messages.
type Output struct {
	log     *slog.Logger
	mu      sync.Mutex
	partial []byte
	last    []string
}

// NewOutput logs every line at info level with key "line".
func NewOutput(log *slog.Logger) *Output { return &Output{log: log} }

const keptOutputLines = 20

func (o *Output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.partial = append(o.partial, b...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			break
		}
		line := string(o.partial[:i])
		o.partial = o.partial[i+1:]
		o.log.Info("pod output", "line", line)
		o.last = append(o.last, line)
		if len(o.last) > keptOutputLines {
			o.last = o.last[1:]
		}
	}
	return len(b), nil
}

// Tail returns the last lines, indented, for an error message.
func (o *Output) Tail() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	lines := append([]string(nil), o.last...)
	if len(o.partial) > 0 {
		lines = append(lines, string(o.partial))
	}
	if len(lines) == 0 {
		return "  (no output)"
	}
	return "  " + strings.Join(lines, "\n  ")
}
