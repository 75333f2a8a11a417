package chaos

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bulkhead-router/bulkhead/internal/workloads"
	"github.com/bulkhead-router/bulkhead/upstream"
)

// workloadScenarios move the pods of a real Deployment the way users and
// Kubernetes do (kubectl, the Deployment, ReplicaSet and EndpointSlice
// controllers, the node agent's preStop hooks and signals), with the real
// controllers' timing. The hand-made pod scenarios (pod-kill,
// rolling-update) stay beside them where a fault needs exact control of
// an EndpointSlice's lag.
// withWorkloadScenarios puts them after the pod scenarios of hand-made
// pods (after "pod-kill"), so that -run ^pod- and the CI subset read in
// the order faults grow.
func withWorkloadScenarios(local []Scenario[*Local]) []Scenario[*Local] {
	i := slices.IndexFunc(local, func(s Scenario[*Local]) bool { return s.Name == "pod-kill" }) + 1
	return slices.Insert(local, i, workloadScenarios()...)
}

func workloadScenarios() []Scenario[*Local] {
	web := func(replicas int32) *workloads.App {
		return &workloads.App{Replicas: replicas, PreStopSleep: time.Second}
	}
	retriesNoted := func(e *Local, o *Outcome) error {
		_, err := e.noteMetrics(upstream.MetricRetries, upstream.MetricRetryBudgetExhausted)
		return err
	}
	return append([]Scenario[*Local]{
		{
			Name: "rolling-update",
			Summary: "`kubectl rollout restart` of a Deployment of 3 pods (maxSurge 1, maxUnavailable 0, 1s preStop sleep): " +
				"the real controllers replace every pod; GETs, slow GETs and POSTs",
			Bound: "0 failed of any method; /readyz always 200; every pod replaced",
			Short: true,
			Loads: []LoadSpec{
				{Method: http.MethodGet},
				{Method: http.MethodGet, Path: "/slow?sleep=300ms", Share: 0.2},
				{Method: http.MethodPost, Path: "/orders", Share: 0.5},
			},
			Setup: func(e *Local) error { return e.Start(StartOptions{Deployment: web(3)}) },
			Fault: func(e *Local) error {
				before, err := e.DeploymentPods()
				if err != nil {
					return err
				}
				if _, err := e.Kubectl(time.Minute, "-n", Namespace, "rollout", "restart", "deployment/web"); err != nil {
					return err
				}
				if err := e.AwaitRollout(3 * time.Minute); err != nil {
					return err
				}
				after, err := e.DeploymentPods()
				if err != nil {
					return err
				}
				for _, p := range after {
					for _, q := range before {
						if p == q {
							return fmt.Errorf("pod %s survived the rollout restart", p)
						}
					}
				}
				e.Note("pods %v replaced by %v", before, after)
				return nil
			},
			Check: retriesNoted,
		},
		{
			Name: "pod-force-delete",
			Summary: "`kubectl delete pod --grace-period=0 --force` of one of 3 pods: the Pod object goes at once, the node agent " +
				"kills the process while the router may still send to it; the ReplicaSet starts a replacement",
			Bound: "0 failed GETs; /readyz always 200; a replacement pod serving",
			Setup: func(e *Local) error { return e.Start(StartOptions{Deployment: web(3)}) },
			Fault: func(e *Local) error {
				pods, err := e.DeploymentPods()
				if err != nil {
					return err
				}
				if _, err := e.Kubectl(time.Minute, "-n", Namespace, "delete", "pod", pods[0], "--grace-period=0", "--force"); err != nil {
					return err
				}
				return e.AwaitRollout(2 * time.Minute)
			},
			Check: retriesNoted,
		},
		{
			Name: "scale-down-up",
			Summary: "`kubectl scale` of a Deployment of 3 pods (1s preStop sleep) to 1 (two pods terminate at once) and back to 3 " +
				"(two new pods join); GETs and POSTs",
			Bound: "0 failed of any method; /readyz always 200; exactly the remaining, then the new pods serving",
			Loads: []LoadSpec{{Method: http.MethodGet}, {Method: http.MethodPost, Path: "/orders", Share: 0.5}},
			Setup: func(e *Local) error { return e.Start(StartOptions{Deployment: web(3)}) },
			Fault: func(e *Local) error {
				for _, n := range []string{"1", "3"} {
					if _, err := e.Kubectl(time.Minute, "-n", Namespace, "scale", "deployment/web", "--replicas="+n); err != nil {
						return err
					}
					if err := e.AwaitRollout(2 * time.Minute); err != nil {
						return err
					}
					pods, err := e.DeploymentPods()
					if err != nil {
						return err
					}
					e.Note("scaled to %s: %v", n, pods)
				}
				return nil
			},
			Check: retriesNoted,
		},
		{
			Name: "node-drain",
			Summary: "`kubectl drain` of a Node running one of 3 pods (spread over 3 Nodes, 1s preStop sleep): the pod is evicted " +
				"and replaced on another Node; GETs and POSTs; then `kubectl uncordon`",
			Bound: "0 failed of any method; /readyz always 200; no pod left on the drained Node",
			Loads: []LoadSpec{{Method: http.MethodGet}, {Method: http.MethodPost, Path: "/orders", Share: 0.5}},
			Setup: func(e *Local) error { return e.Start(StartOptions{Deployment: web(3)}) },
			Fault: func(e *Local) error {
				_, nodes, err := workloads.RunningPods(e.Context(), e.Client, Namespace, e.app.Selector())
				if err != nil {
					return err
				}
				var node string
				for _, n := range nodes {
					if node == "" || n < node {
						node = n
					}
				}
				if node == "" {
					return errors.New("no pod running")
				}
				if _, err := e.Kubectl(3*time.Minute, "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=150s"); err != nil {
					return err
				}
				if err := e.AwaitRollout(2 * time.Minute); err != nil {
					return err
				}
				_, nodes, err = workloads.RunningPods(e.Context(), e.Client, Namespace, e.app.Selector())
				if err != nil {
					return err
				}
				for p, n := range nodes {
					if n == node {
						return fmt.Errorf("pod %s still on drained node %s", p, node)
					}
				}
				e.Note("drained %s; pods now on %v", node, nodes)
				if _, err := e.Kubectl(time.Minute, "uncordon", node); err != nil {
					return err
				}
				n, err := e.Client.CoreV1().Nodes().Get(e.Context(), node, metav1.GetOptions{})
				if err != nil {
					return err
				}
				if n.Spec.Unschedulable {
					return fmt.Errorf("node %s still unschedulable after uncordon", node)
				}
				return nil
			},
			Check: retriesNoted,
		},
	}, grpcScenarios()...)
}
