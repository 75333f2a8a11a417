package e2e

import (
	"context"
	"io"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bulkhead-router/bulkhead/internal/loadgen"
)

// albTarget plays an ALB toward one target: it health-checks /readyz every
// interval and, after unhealthy consecutive failures, stops sending new
// requests there (the load stops). Its keep-alive connections stay open
// until the target closes them, as an ALB's do.
type albTarget struct {
	load      *loadgen.Load
	outOfSvc  chan struct{} // closed when the target is taken out
	takenOut  time.Time
	result    *loadgen.Result
	stopCheck chan struct{}
	wg        sync.WaitGroup
}

func newALBTarget(e *env, interval time.Duration, unhealthy int) *albTarget {
	a := &albTarget{
		load:      loadgen.Start(loadgen.Target{URL: e.router.ProxyURL + "/", Host: "web.example"}, loadgen.Options{Rate: 50, Connections: 8}),
		outOfSvc:  make(chan struct{}),
		stopCheck: make(chan struct{}),
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		client := &http.Client{Timeout: time.Second}
		tick := time.NewTicker(interval)
		defer tick.Stop()
		fails := 0
		for {
			select {
			case <-a.stopCheck:
				return
			case <-tick.C:
			}
			resp, err := client.Get(e.router.HealthURL + "/readyz")
			ok := err == nil && resp.StatusCode == http.StatusOK
			if resp != nil {
				resp.Body.Close()
			}
			if ok {
				fails = 0
				continue
			}
			if fails++; fails == unhealthy {
				a.result = a.load.Stop()
				a.takenOut = time.Now()
				close(a.outOfSvc)
				return
			}
		}
	}()
	return a
}

// TestDrainOnSIGTERM: under keep-alive load from an ALB-like client
// (health check every 200 ms, 2 failures take the target out: the ALB's
// 30 s and 2, scaled down), SIGTERM fails /readyz at once while traffic is
// still served for the drain delay; then the listener closes, an in-flight
// long request finishes (with Connection: close), and the process exits 0.
// No request fails.
func TestDrainOnSIGTERM(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "-drain-delay", "2s", "-drain-timeout", "10s")
	e.ingressClass("bulkhead", false)
	e.startPods("up", "web", 2)
	e.apply(ingress("up", "web", "bulkhead", rule("web.example", path("/", prefix(), "web"))))
	e.router.WaitReady(30 * time.Second)
	e.expectAllPods("web.example", "web-0", "web-1")

	alb := newALBTarget(e, 200*time.Millisecond, 2)
	e.eventually(10*time.Second, "load flowing", func() error {
		if sent, _ := alb.load.Snapshot(); sent < 50 {
			return errNotYet
		}
		return nil
	})
	// A long request, in flight across the end of the drain delay.
	type answer struct {
		status int
		close  bool
		err    error
	}
	long := make(chan answer, 1)
	sigterm := time.Now()
	e.router.Signal(syscall.SIGTERM)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, e.router.ProxyURL+"/report?sleep=3s", nil)
		req.Host = "web.example"
		resp, err := e.http.Do(req)
		if err != nil {
			long <- answer{err: err}
			return
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		long <- answer{status: resp.StatusCode, close: resp.Close, err: err}
	}()

	select {
	case <-alb.outOfSvc:
	case <-time.After(10 * time.Second):
		t.Fatal("the ALB-like client never saw /readyz fail")
	}
	code := e.router.Wait(30 * time.Second)
	exited := time.Since(sigterm)
	close(alb.stopCheck)
	alb.wg.Wait()
	a := <-long
	t.Logf("drain: %s; taken out of service %s after SIGTERM; exited %s after SIGTERM with status %d; long request: %d, Connection: close %v, %v",
		alb.result, alb.takenOut.Sub(sigterm).Round(time.Millisecond), exited.Round(time.Millisecond), code, a.status, a.close, a.err)
	if alb.result.Failed != 0 || alb.result.Sent == 0 {
		t.Errorf("%d of %d requests failed during the drain: %s", alb.result.Failed, alb.result.Sent, alb.result)
	}
	if a.err != nil || a.status != http.StatusOK || !a.close {
		t.Errorf("long in-flight request: status %d, Connection: close %v, error %v; want 200 with Connection: close", a.status, a.close, a.err)
	}
	if code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	if exited < 2*time.Second {
		t.Errorf("exited %s after SIGTERM, before the 2s drain delay", exited)
	}
}

// TestNodeCordoned: cordoning the router's node fails /readyz while
// traffic goes on being served; uncordoning makes it ready again. The same
// for the cluster autoscaler's deletion taint.
func TestNodeCordoned(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "-node-name", "node-a")
	node, err := e.client.CoreV1().Nodes().Create(e.ctx(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.ingressClass("bulkhead", false)
	e.startPods("up", "web", 2)
	e.apply(ingress("up", "web", "bulkhead", rule("web.example", path("/", prefix(), "web"))))
	e.router.WaitReady(30 * time.Second)
	load := loadgen.Start(loadgen.Target{URL: e.router.ProxyURL + "/", Host: "web.example"}, loadgen.Options{Rate: 50})

	update := func(change func(*corev1.Node)) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n, err := e.client.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		change(n)
		if _, err := e.client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name       string
		drain, end func(*corev1.Node)
	}{
		{"cordon", func(n *corev1.Node) { n.Spec.Unschedulable = true }, func(n *corev1.Node) { n.Spec.Unschedulable = false }},
		{"autoscaler taint",
			func(n *corev1.Node) {
				n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "ToBeDeletedByClusterAutoscaler", Value: "1700000000", Effect: corev1.TaintEffectNoSchedule})
			},
			func(n *corev1.Node) { n.Spec.Taints = nil }},
	} {
		update(c.drain)
		e.router.WaitFor(10*time.Second, c.name+": /readyz failing", func() bool { return !e.router.Ready() })
		sent, failed := load.Snapshot()
		e.eventually(10*time.Second, "traffic served while the node drains", func() error {
			if s, _ := load.Snapshot(); s < sent+50 {
				return errNotYet
			}
			return nil
		})
		if _, f := load.Snapshot(); f != failed {
			t.Errorf("%s: requests failed while the node drained", c.name)
		}
		update(c.end)
		e.router.WaitFor(10*time.Second, c.name+" lifted: /readyz passing", e.router.Ready)
	}
	r := load.Stop()
	t.Logf("node drained and back, twice: %s", r)
	if r.Failed != 0 {
		t.Errorf("%d of %d requests failed: %s", r.Failed, r.Sent, r)
	}
	if v, _ := e.router.Metric("bulkhead_ready"); v != 1 {
		t.Errorf("bulkhead_ready = %v after the node came back", v)
	}
}

// TestSecondSignalStopsAtOnce: an operator who does not want to wait out
// the drain sends a second signal.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "-drain-delay", "5m")
	e.ingressClass("bulkhead", false)
	e.router.WaitReady(30 * time.Second)
	e.router.Signal(syscall.SIGTERM)
	e.router.WaitFor(10*time.Second, "/readyz failing after SIGTERM", func() bool { return !e.router.Ready() })
	e.router.Signal(syscall.SIGINT)
	if code := e.router.Wait(10 * time.Second); code == 0 {
		t.Errorf("exit status 0 after being stopped mid-drain")
	}
}
