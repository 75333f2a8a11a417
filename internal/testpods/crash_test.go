package testpods

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/podnet"
)

// The test binary doubles as a second process holding a Cluster, to test
// what only other processes can show: allocation under the host lock and
// cleanup after a crash.

const helperEnv = "TESTPODS_HELPER_PROCESS"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "hold" {
		os.Exit(holdCluster())
	}
	os.Exit(m.Run())
}

// helperReport is what a helper process prints once its pod answers.
type helperReport struct {
	Subnet string `json:"subnet"`
	Bridge string `json:"bridge"`
	Owner  string `json:"owner"`
	PodURL string `json:"podURL"`
	PodPID int    `json:"podPID"`
	Netns  string `json:"netns"`
	Veth   string `json:"veth"`
}

// holdCluster starts a Cluster with one pod, reports it on stdout and keeps
// it until stdin closes.
func holdCluster() int {
	ctx := context.Background()
	c, err := New(ctx, nil, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	p, err := c.StartPod(ctx, PodSpec{Service: "web", Name: "held"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(helperReport{
		Subnet: c.Subnet(), Bridge: c.net.Bridge(), Owner: c.net.OwnerRecord(), PodURL: p.URL("/"),
		PodPID: p.proc.Cmd.Process.Pid, Netns: p.network.Netns, Veth: p.network.HostVeth,
	})
	io.Copy(io.Discard, os.Stdin)
	if err := c.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

type helperProcess struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	report helperReport
}

func startHelper(t *testing.T) *helperProcess {
	t.Helper()
	h, err := startHelperProcess(t)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// startHelperProcess may run outside the test goroutine.
func startHelperProcess(t *testing.T) (*helperProcess, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=hold")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h := &helperProcess{cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("helper process reported nothing: %w", err)
	}
	if err := json.Unmarshal(line, &h.report); err != nil {
		return nil, fmt.Errorf("helper report %q: %w", line, err)
	}
	return h, nil
}

func TestClustersInOtherProcessesGetDistinctSubnets(t *testing.T) {
	own := ForTest(t, nil, Options{})
	// Start both helpers at once so they contend for the host lock.
	type started struct {
		h   *helperProcess
		err error
	}
	results := make(chan started, 2)
	for range 2 {
		go func() {
			h, err := startHelperProcess(t)
			results <- started{h, err}
		}()
	}
	var helpers []*helperProcess
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		helpers = append(helpers, r.h)
	}
	first, second := helpers[0], helpers[1]
	subnets := []string{own.Subnet(), first.report.Subnet, second.report.Subnet}
	slices.Sort(subnets)
	if len(slices.Compact(subnets)) != 3 {
		t.Fatalf("subnets collide: own %s, helpers %s and %s", own.Subnet(), first.report.Subnet, second.report.Subnet)
	}
	for _, h := range []*helperProcess{first, second} {
		if _, e := getEcho(t, newRequest(t, "GET", h.report.PodURL)); e.Pod != "held" {
			t.Errorf("helper pod at %s answered as %q", h.report.PodURL, e.Pod)
		}
		h.stdin.Close()
		if err := h.cmd.Wait(); err != nil {
			t.Errorf("helper process: %v", err)
		}
		namespaces, links := hostState(t, own.ip)
		if slices.Contains(namespaces, h.report.Netns) || slices.Contains(links, h.report.Veth) ||
			slices.Contains(links, h.report.Bridge) {
			t.Errorf("helper's Close left %s, %s or %s behind", h.report.Netns, h.report.Veth, h.report.Bridge)
		}
	}
}

func TestCrashedRunIsCleanedUpByNextNew(t *testing.T) {
	requireHost(t)
	h := startHelper(t)

	// Crash: no Close, no deferred functions.
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.cmd.Wait()

	// The pod dies with the process that started it (PR_SET_PDEATHSIG).
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := podnet.AwaitProcessesGone(ctx, []int{h.report.PodPID}, 10*time.Second); err != nil {
		t.Errorf("pod of the crashed process: %v", err)
	}

	// The next New removes what the crashed process left.
	c := ForTest(t, nil, Options{})
	namespaces, links := hostState(t, c.ip)
	for _, name := range []string{h.report.Netns, h.report.Veth, h.report.Bridge} {
		if slices.Contains(namespaces, name) || slices.Contains(links, name) {
			t.Errorf("%s left by the crashed process still exists", name)
		}
	}
	if _, err := os.Stat(h.report.Owner); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ownership record %s of the crashed process still exists (%v)", h.report.Owner, err)
	}
}
