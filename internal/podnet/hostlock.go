package podnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stateDir is where Hosts of all processes on this host coordinate: the
// lock file and one ownership record per /24 in use. /run is preferred
// because it is emptied on reboot, like the interfaces and namespaces the
// records describe; it also holds /run/netns, which `ip netns` relies on.
func stateDir() (string, error) {
	var errs []error
	for _, base := range []string{"/run", os.TempDir()} {
		dir := filepath.Join(base, "bulkhead-testpods")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		return dir, nil
	}
	return "", fmt.Errorf("podnet: no state directory: %w", errors.Join(errs...))
}

// lockHost takes the host-wide lock (flock on dir/lock) and returns the
// function that releases it. It polls rather than blocks so ctx can cut the
// wait short; holders keep the lock for a few ip commands only.
func lockHost(ctx context.Context, dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("podnet: open host lock: %w", err)
	}
	ticker := time.NewTicker(5 * time.Millisecond)
	defer ticker.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("podnet: take host lock: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("podnet: waiting for host lock: %w", ctx.Err())
		case <-ticker.C:
		}
	}
}

// processIdentity names a process across PID reuse: the PID plus its start
// time in clock ticks since boot.
type processIdentity struct {
	pid       int
	startTime uint64
}

func currentProcess() processIdentity {
	start, _ := processStartTime(os.Getpid())
	return processIdentity{pid: os.Getpid(), startTime: start}
}

func (p processIdentity) String() string { return fmt.Sprintf("%d %d", p.pid, p.startTime) }

func parseProcessIdentity(s string) (processIdentity, error) {
	fields := strings.Fields(s)
	if len(fields) != 2 {
		return processIdentity{}, fmt.Errorf("bad process identity %q", s)
	}
	pid, err1 := strconv.Atoi(fields[0])
	start, err2 := strconv.ParseUint(fields[1], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return processIdentity{}, fmt.Errorf("bad process identity %q: %w", s, err)
	}
	return processIdentity{pid: pid, startTime: start}, nil
}

// alive says whether the very process that wrote the record still runs.
func (p processIdentity) alive() bool {
	start, err := processStartTime(p.pid)
	return err == nil && start == p.startTime && ProcessRunning(p.pid)
}

// procStat returns the fields of /proc/PID/stat after the command name,
// which may itself contain spaces and parentheses.
func procStat(pid int) ([]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return strings.Fields(string(data[i+1:])), nil
}

func processStartTime(pid int) (uint64, error) {
	fields, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	// Field 22 of stat is starttime; fields[0] here is field 3 (state).
	if len(fields) < 20 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// ProcessRunning is false for processes that are gone or zombies.
func ProcessRunning(pid int) bool {
	fields, err := procStat(pid)
	if err != nil || len(fields) == 0 {
		return false
	}
	return fields[0] != "Z" && fields[0] != "X"
}
