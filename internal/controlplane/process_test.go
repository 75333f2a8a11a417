package controlplane

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCrashLeavesNothing: a test process that dies without Stop (SIGKILL,
// the harshest case: no deferred call, no cleanup runs) leaves none of the
// control plane's processes behind. The kernel kills each child with its
// parent (PR_SET_PDEATHSIG), so no etcd, kube-apiserver or controller keeps
// ports, memory or, worse, writes objects into a later test's cluster.
func TestCrashLeavesNothing(t *testing.T) {
	if dir := os.Getenv("BULKHEAD_CRASH_CHILD"); dir != "" {
		crashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("needs a real control plane; not run with -short (make unit)")
	}
	if _, err := EnsureBinaries(t.Context(), testWriter{t}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashLeavesNothing$", "-test.v")
	cmd.Env = append(os.Environ(), "BULKHEAD_CRASH_CHILD="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// The child's lines, read on their own goroutine so a child that hangs
	// fails the test at a deadline instead of blocking it.
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var pids []int
	deadline := time.After(3 * time.Minute)
	for pids == nil {
		var line string
		var ok bool
		select {
		case line, ok = <-lines:
		case <-deadline:
			t.Fatal("the child did not report its processes in 3 minutes")
		}
		if !ok {
			break
		}
		rest, found := strings.CutPrefix(line, "pids:")
		if !found {
			t.Logf("child: %s", line)
			continue
		}
		pids = []int{}
		for _, f := range strings.Fields(rest) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("child said %q", line)
			}
			pids = append(pids, pid)
		}
	}
	if len(pids) != 4 {
		cmd.Process.Kill()
		t.Fatalf("the child did not report its four processes (got %v); it exited: %v", pids, cmd.Wait())
	}
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("pid %d is not running before the crash", pid)
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	go func() {
		for range lines { // drain, so the reader goroutine ends
		}
	}()
	eventually(t, 10*time.Second, fmt.Sprintf("etcd, kube-apiserver, kube-controller-manager, kube-scheduler (%v) gone after their parent was killed", pids), func() (bool, string) {
		var left []string
		for _, pid := range pids {
			if alive(pid) {
				left = append(left, strconv.Itoa(pid))
			}
		}
		return len(left) == 0, "still running: " + strings.Join(left, ", ")
	})
}

// crashChild starts a control plane, then its controllers, reports its
// processes and waits to be killed.
func crashChild(dir string) {
	bins, err := EnsureBinaries(context.Background(), nil) // cached by the parent
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	// Started later, the way chaos scenarios add them to a running
	// cluster (TestControllers covers Options.Controllers).
	cp, err := Start(context.Background(), Options{Dir: dir, Binaries: bins})
	if err == nil {
		err = cp.StartControllers(context.Background())
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	kcm, sched, err := cp.ControllerPIDs()
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Printf("pids: %d %d %d %d\n", cp.etcd.pid(), cp.APIServerPID(), kcm, sched)
	select {} // until SIGKILL
}

// alive reports whether pid is a process that has not exited (a zombie
// waiting for its new parent to reap it has exited).
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := strings.LastIndexByte(string(data), ')')
	return i < 0 || i+2 >= len(data) || data[i+2] != 'Z'
}
