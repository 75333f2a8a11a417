package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/testpods"
)

// TestPodKilledWhileStillListed: a pod dies abruptly and, as in a real
// cluster, its EndpointSlice lists it for a few more seconds. GETs that land
// on it fail to connect and are retried on the other pod: 0 failures.
func TestPodKilledWhileStillListed(t *testing.T) {
	t.Parallel()
	e, pods := newTwoPodEnv(t)

	s := e.steadyLoad()
	sentBefore, _ := s.load.Snapshot()
	e.eventually(10*time.Second, "load flowing", func() error {
		if sent, _ := s.load.Snapshot(); sent < sentBefore+50 {
			return errNotYet
		}
		return nil
	})
	if err := pods[0].Kill(); err != nil {
		t.Fatal(err)
	}
	<-time.After(3 * time.Second) // the endpoint controller's lag, during which the dead pod stays listed
	e.pods.RemoveFromEndpoints(pods[0])
	e.syncSlice("up", "web")
	e.expectAllPods("web.example", "web-1")
	r := s.finish(t, "pod SIGKILLed, listed 3 s longer")
	if retries := sumMetric(e.router, "bulkhead_upstream_retries_total"); retries == 0 {
		t.Errorf("no retries counted although a listed pod was dead (%s)", r)
	}
}

// TestPodAnswering503: a pod answers 503; GETs are retried elsewhere (0
// failures) and its breaker opens; when the pod recovers it gets traffic
// again.
func TestPodAnswering503(t *testing.T) {
	t.Parallel()
	e, pods := newTwoPodEnv(t)

	s := e.steadyLoad()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pods[0].SetMode(ctx, testpods.Mode503); err != nil {
		t.Fatal(err)
	}
	e.router.WaitFor(30*time.Second, "the breaker of the failing pod to open", func() bool {
		v, _ := e.router.Metric("bulkhead_upstream_breakers_open")
		return v == 1
	})
	// The operator sees it: the failing pod's breaker is open, and
	// Kubernetes still calls it ready.
	_, body := e.router.Admin("/endpoints", "Accept", "application/json")
	var backends []struct {
		Backend   string `json:"backend"`
		Endpoints []struct {
			Address string `json:"address"`
			Ready   bool   `json:"ready"`
			Breaker string `json:"breaker"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal([]byte(body), &backends); err != nil || len(backends) != 1 || backends[0].Backend != "up/web:80" {
		t.Fatalf("/endpoints: %v\n%s", err, body)
	}
	for _, ep := range backends[0].Endpoints {
		if want := map[bool]string{true: "open", false: "closed"}[ep.Address == pods[0].Addr]; ep.Breaker != want || !ep.Ready {
			t.Errorf("/endpoints shows %s breaker %s ready %v, want breaker %s and ready", ep.Address, ep.Breaker, ep.Ready, want)
		}
	}
	if err := pods[0].SetMode(ctx, testpods.ModeOK); err != nil {
		t.Fatal(err)
	}
	e.expectAllPods("web.example", "web-0", "web-1") // recovered: half-open probe, then closed
	s.finish(t, "pod answering 503")
}

// newTwoPodEnv is a router serving web.example from two pods, both in use.
func newTwoPodEnv(t *testing.T) (*env, []*testpods.Pod) {
	t.Helper()
	e := newEnv(t)
	e.ingressClass("bulkhead", false)
	pods := e.startPods("up", "web", 2)
	e.apply(ingress("up", "web", "bulkhead", rule("web.example", path("/", prefix(), "web"))))
	e.router.WaitReady(30 * time.Second)
	e.expectAllPods("web.example", "web-0", "web-1")
	return e, pods
}
