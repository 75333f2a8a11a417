package nodeagent

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	"github.com/bulkhead-router/bulkhead/internal/podnet"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const helperEnv = "NODEAGENT_HELPER_KUBECONFIG"

func TestMain(m *testing.M) {
	if kubeconfig := os.Getenv(helperEnv); kubeconfig != "" {
		os.Exit(holdAgent(kubeconfig))
	}
	os.Exit(m.Run())
}

// holdAgent runs an agent with one node until killed, reporting its node.
func holdAgent(kubeconfig string) int {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	a, err := Start(context.Background(), kubernetes.NewForConfigOrDie(cfg), Options{Nodes: []string{"crash-node"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(a.Nodes()[0])
	select {} // until SIGKILL
}

func TestCrashedAgentIsCleanedUpByNextStart(t *testing.T) {
	cp := controlplane.ForTest(t)
	client := cp.Client()
	ensureServiceAccount(t, client, "default")
	if err := podnet.CheckPreconditions(true); err != nil && os.Getenv("CI") != "true" {
		t.Skip(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+cp.Kubeconfig())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadBytes('\n')
	if err != nil {
		t.Fatalf("helper reported nothing: %v", err)
	}
	var node NodeInfo
	if err := json.Unmarshal(line, &node); err != nil {
		t.Fatal(err)
	}
	createPod(t, client, testpodPod("orphan", "crash-node"))
	p := awaitPod(t, client, "default", "orphan", 30*time.Second, "ready", podReady)
	pid := containerPID(t, p)

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := podnet.AwaitProcessesGone(ctx, []int{pid}, 10*time.Second); err != nil {
		t.Errorf("pod process of the crashed agent: %v", err)
	}

	// The next agent (any podnet user) removes the netns, veth and bridge.
	ForTest(t, client, Options{Nodes: []string{"next-node"}})
	tool := podnet.NewTool()
	namespaces, _ := tool.NetnsNames(t.Context())
	links, _ := tool.LinkNames(t.Context())
	prefix := strings.TrimSuffix(node.Bridge, "b")
	for _, name := range slices.Concat(namespaces, links) {
		if name == node.Bridge || strings.HasPrefix(name, prefix+"-") || strings.HasPrefix(name, prefix+"h") {
			t.Errorf("%s left by the crashed agent still exists", name)
		}
	}
}
