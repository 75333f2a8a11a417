package nodeagent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	"github.com/bulkhead-router/bulkhead/internal/testpods"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// testOptions make restarts and lease renewals quick enough for tests.
func testOptions() Options {
	return Options{BackoffBase: time.Second, BackoffMax: 4 * time.Second, LeaseDuration: 8 * time.Second}
}

// setUp starts a control plane and an agent with three nodes.
func setUp(t *testing.T, opts Options) (kubernetes.Interface, *Agent) {
	t.Helper()
	cp := controlplane.ForTest(t)
	client := cp.Client()
	a := ForTest(t, client, opts)
	ensureServiceAccount(t, client, "default")
	return client, a
}

// ensureServiceAccount makes the namespace's default ServiceAccount, which
// admission requires for pods and which, without a controller-manager,
// nobody else makes.
func ensureServiceAccount(t *testing.T, client kubernetes.Interface, ns string) {
	t.Helper()
	_, err := client.CoreV1().ServiceAccounts(ns).Create(t.Context(), &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func testpodPod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: ptr.To[int64](10),
			Containers: []corev1.Container{{
				Name:  "web",
				Image: TestpodImage + ":latest",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
					FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
			}},
		},
	}
}

func fastProbe(port string) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString(port)}},
		PeriodSeconds: 1, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 1,
	}
}

func createPod(t *testing.T, client kubernetes.Interface, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	created, err := client.CoreV1().Pods(pod.Namespace).Create(t.Context(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return created
}

// awaitPod polls the pod until cond holds, failing the test at the
// deadline with what was last seen.
func awaitPod(t *testing.T, client kubernetes.Interface, ns, name string, within time.Duration, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	var last *corev1.Pod
	var lastErr error
	for {
		p, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = p
			if cond(p) {
				return p
			}
		} else if what == "gone" && apierrors.IsNotFound(err) {
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s/%s: not %s within %s; last error %v; last status %s", ns, name, what, within, lastErr, describe(last))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func describe(p *corev1.Pod) string {
	if p == nil {
		return "(none)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "phase=%s podIP=%s", p.Status.Phase, p.Status.PodIP)
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, " %s=%s", c.Type, c.Status)
	}
	for _, cs := range p.Status.ContainerStatuses {
		fmt.Fprintf(&b, " [%s ready=%v restarts=%d state=%+v last=%+v]", cs.Name, cs.Ready, cs.RestartCount, cs.State, cs.LastTerminationState)
	}
	return b.String()
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podCondition(p *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

var direct = testpods.DirectClient(5 * time.Second)

func get(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := direct.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func setMode(t *testing.T, podIP string, mode testpods.Mode) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+podIP+":15000/mode?value="+string(mode), nil)
	resp, err := direct.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("set mode %s: %s", mode, resp.Status)
	}
}

func TestTestpodBecomesReadyAndAnswers(t *testing.T) {
	client, a := setUp(t, testOptions())
	node := a.Nodes()[1]
	pod := testpodPod("web-1", node.Name)
	pod.Spec.Containers[0].ReadinessProbe = fastProbe("http")
	start := time.Now()
	createPod(t, client, pod)
	p := awaitPod(t, client, "default", "web-1", 30*time.Second, "ready", podReady)
	t.Logf("pod start latency (create to Ready written): %s", time.Since(start).Round(time.Millisecond))

	if p.Status.Phase != corev1.PodRunning {
		t.Errorf("phase %s, want Running", p.Status.Phase)
	}
	ip, err := netip.ParseAddr(p.Status.PodIP)
	if err != nil || !netip.MustParsePrefix(node.PodCIDR).Contains(ip) {
		t.Errorf("podIP %q not in node %s's range %s", p.Status.PodIP, node.Name, node.PodCIDR)
	}
	if len(p.Status.PodIPs) != 1 || p.Status.PodIPs[0].IP != p.Status.PodIP {
		t.Errorf("podIPs %v", p.Status.PodIPs)
	}
	if p.Status.HostIP != node.InternalIP || p.Status.StartTime == nil {
		t.Errorf("hostIP %q (want %s), startTime %v", p.Status.HostIP, node.InternalIP, p.Status.StartTime)
	}
	for _, ct := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodReadyToStartContainers,
		corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		if s := podCondition(p, ct); s != corev1.ConditionTrue {
			t.Errorf("condition %s = %q, want True", ct, s)
		}
	}
	cs := p.Status.ContainerStatuses
	if len(cs) != 1 || !cs[0].Ready || cs[0].Started == nil || !*cs[0].Started || cs[0].State.Running == nil ||
		cs[0].RestartCount != 0 || cs[0].ContainerID == "" || cs[0].Image != pod.Spec.Containers[0].Image {
		t.Errorf("container status %+v", cs)
	}

	resp, body := get(t, "http://"+p.Status.PodIP+":8080/hello")
	e, err := testpods.DecodeEcho(strings.NewReader(string(body)))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("answer %s %q: %v", resp.Status, body, err)
	}
	if e.Pod != "web-1" || e.Path != "/hello" {
		t.Errorf("echo %+v, want pod web-1 (downward API) and path /hello", e)
	}

	// Without a probe a pod is ready once its process runs.
	start = time.Now()
	createPod(t, client, testpodPod("web-2", node.Name))
	awaitPod(t, client, "default", "web-2", 30*time.Second, "ready", podReady)
	t.Logf("pod start latency without a readiness probe: %s", time.Since(start).Round(time.Millisecond))
}

func TestUnknownImageIsAStatusError(t *testing.T) {
	client, a := setUp(t, testOptions())
	pod := testpodPod("nginx", a.Nodes()[0].Name)
	pod.Spec.Containers[0].Image = "nginx:1.27"
	createPod(t, client, pod)
	p := awaitPod(t, client, "default", "nginx", 20*time.Second, "ErrImagePull", func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].State.Waiting != nil && cs[0].State.Waiting.Reason == "ErrImagePull"
	})
	msg := p.Status.ContainerStatuses[0].State.Waiting.Message
	if !strings.Contains(msg, "nginx:1.27") || !strings.Contains(msg, TestpodImage) || !strings.Contains(msg, GatewayEchoBasicImage) {
		t.Errorf("message %q should name the image and the supported ones", msg)
	}
	if p.Status.Phase != corev1.PodPending || podReady(p) {
		t.Errorf("phase %s ready %v, want Pending and not ready", p.Status.Phase, podReady(p))
	}
	// The agent is still fine: another pod on the same node runs.
	createPod(t, client, testpodPod("after", a.Nodes()[0].Name))
	awaitPod(t, client, "default", "after", 30*time.Second, "ready", podReady)
}

func TestEchoBasicAnswersInConformanceFormat(t *testing.T) {
	client, a := setUp(t, testOptions())
	// As in the conformance suite's base manifests.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "infra-backend-v1-abc", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName: a.Nodes()[2].Name,
			Containers: []corev1.Container{{
				Name: "infra-backend-v1", Image: "registry.k8s.io/gateway-api/echo-basic:v1.5.1",
				Env: []corev1.EnvVar{
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
				},
			}},
		},
	}
	createPod(t, client, pod)
	p := awaitPod(t, client, "default", pod.Name, 30*time.Second, "ready", podReady)
	base := "http://" + p.Status.PodIP

	// The container is ready when its process runs (no probe); the port
	// opens a moment later.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := direct.Get(base + ":3000/health")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // polling for a port to open: nothing to wait on
	}
	resp, body := get(t, base+":3000/some//path?x=1", "X-Echo-Set-Header", "X-Foo: bar, X-Other: baz", "X-Req", "v")
	var echo struct {
		Path, Host, Method, Proto, HTTPPort, Namespace, Ingress, Service, Pod string
		Headers                                                               map[string][]string
	}
	if err := json.Unmarshal(body, &echo); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if echo.Pod != pod.Name || echo.Namespace != "default" || echo.Path != "/some//path?x=1" ||
		echo.Method != "GET" || echo.HTTPPort != "3000" || echo.Headers["X-Req"][0] != "v" || echo.Proto != "HTTP/1.1" {
		t.Errorf("echo %+v", echo)
	}
	if resp.Header.Get("X-Foo") != "bar" || resp.Header.Get("X-Other") != "baz" ||
		resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("response headers %v", resp.Header)
	}
	if resp, _ := get(t, base+":3000/status/418"); resp.StatusCode != 418 {
		t.Errorf("/status/418 answered %s", resp.Status)
	}
	if resp, _ := get(t, base+":3001/"); resp.StatusCode != 400 {
		t.Errorf("HTTP/1 without upgrade on the h2c port answered %s, want 400", resp.Status)
	}
}

func TestReadinessFollowsProbe(t *testing.T) {
	client, a := setUp(t, testOptions())
	pod := testpodPod("flappy", a.Nodes()[0].Name)
	pod.Spec.Containers[0].ReadinessProbe = fastProbe("http")
	createPod(t, client, pod)
	p := awaitPod(t, client, "default", "flappy", 30*time.Second, "ready", podReady)

	setMode(t, p.Status.PodIP, testpods.Mode503)
	start := time.Now()
	p = awaitPod(t, client, "default", "flappy", 10*time.Second, "unready", func(p *corev1.Pod) bool { return !podReady(p) })
	t.Logf("Ready=false %s after the probe target started failing (period 1s, failureThreshold 1)", time.Since(start).Round(time.Millisecond))
	if podCondition(p, corev1.ContainersReady) != corev1.ConditionFalse || p.Status.ContainerStatuses[0].Ready ||
		p.Status.Phase != corev1.PodRunning || p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("unready pod: %s", describe(p))
	}
	setMode(t, p.Status.PodIP, testpods.ModeOK)
	start = time.Now()
	awaitPod(t, client, "default", "flappy", 10*time.Second, "ready again", podReady)
	t.Logf("Ready=true %s after it recovered", time.Since(start).Round(time.Millisecond))
}

func TestLivenessFailureRestarts(t *testing.T) {
	client, a := setUp(t, testOptions())
	pod := testpodPod("sick", a.Nodes()[0].Name)
	pod.Spec.TerminationGracePeriodSeconds = ptr.To[int64](2)
	pod.Spec.Containers[0].LivenessProbe = fastProbe("http")
	pod.Spec.Containers[0].LivenessProbe.FailureThreshold = 2
	// Not before the process listens (it would count as a failure).
	pod.Spec.Containers[0].LivenessProbe.InitialDelaySeconds = 1
	// Ready means listening, also after the restart.
	pod.Spec.Containers[0].ReadinessProbe = fastProbe("http")
	createPod(t, client, pod)
	p := awaitPod(t, client, "default", "sick", 30*time.Second, "ready", podReady)
	firstID := p.Status.ContainerStatuses[0].ContainerID

	setMode(t, p.Status.PodIP, testpods.Mode503)
	start := time.Now()
	p = awaitPod(t, client, "default", "sick", 20*time.Second, "restarted and ready", func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].RestartCount == 1 && podReady(p)
	})
	took := time.Since(start)
	t.Logf("restarted and ready %s after liveness started failing (period 1s, failureThreshold 2)", took.Round(time.Millisecond))
	if took < 900*time.Millisecond {
		t.Errorf("restarted after %s: two failures 1s apart cannot have happened", took)
	}
	cs := p.Status.ContainerStatuses[0]
	last := cs.LastTerminationState.Terminated
	if last == nil || last.ContainerID != firstID || cs.ContainerID == firstID || cs.State.Running == nil {
		t.Errorf("after restart: %s (first container %s)", describe(p), firstID)
	}
	// The new process starts in mode ok again.
	if resp, _ := get(t, "http://"+p.Status.PodIP+":8080/"); resp.StatusCode != 200 {
		t.Errorf("restarted pod answered %s", resp.Status)
	}
}

func TestRestartPolicies(t *testing.T) {
	client, a := setUp(t, testOptions())
	never := testpodPod("never", a.Nodes()[0].Name)
	never.Spec.RestartPolicy = corev1.RestartPolicyNever
	never.Spec.Containers[0].Args = []string{"-no-such-flag"}
	always := testpodPod("always", a.Nodes()[1].Name)
	always.Spec.Containers[0].Args = []string{"-no-such-flag"}
	createPod(t, client, never)
	createPod(t, client, always)

	p := awaitPod(t, client, "default", "never", 30*time.Second, "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if term := p.Status.ContainerStatuses[0].State.Terminated; term == nil || term.ExitCode != 2 || term.Reason != "Error" || p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("never: %s", describe(p))
	}
	// Always: restarts, with back-off (1s base here) shown as CrashLoopBackOff.
	start := time.Now()
	p = awaitPod(t, client, "default", "always", 30*time.Second, "crash looping", func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].RestartCount >= 2 && cs[0].State.Waiting != nil && cs[0].State.Waiting.Reason == "CrashLoopBackOff"
	})
	t.Logf("always: 2 restarts and CrashLoopBackOff after %s", time.Since(start).Round(time.Millisecond))
	if last := p.Status.ContainerStatuses[0].LastTerminationState.Terminated; last == nil || last.ExitCode != 2 || p.Status.Phase != corev1.PodRunning {
		t.Errorf("always: %s", describe(p))
	}
}

func TestStartupProbe(t *testing.T) {
	client, a := setUp(t, testOptions())
	ok := testpodPod("starts", a.Nodes()[0].Name)
	ok.Spec.Containers[0].StartupProbe = fastProbe("http")
	ok.Spec.Containers[0].StartupProbe.FailureThreshold = 30
	never := testpodPod("never-starts", a.Nodes()[1].Name)
	never.Spec.TerminationGracePeriodSeconds = ptr.To[int64](2)
	never.Spec.Containers[0].StartupProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(9)}},
		PeriodSeconds: 1, TimeoutSeconds: 1, FailureThreshold: 2, SuccessThreshold: 1,
	}
	createPod(t, client, ok)
	createPod(t, client, never)

	p := awaitPod(t, client, "default", "starts", 30*time.Second, "ready", podReady)
	if cs := p.Status.ContainerStatuses[0]; cs.Started == nil || !*cs.Started {
		t.Errorf("ready without started: %s", describe(p))
	}
	// A startup probe that never passes: killed and restarted, never ready.
	p = awaitPod(t, client, "default", "never-starts", 30*time.Second, "restarted by its startup probe", func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].RestartCount >= 1
	})
	if podReady(p) || *p.Status.ContainerStatuses[0].Started {
		t.Errorf("never-starts: %s", describe(p))
	}
}
