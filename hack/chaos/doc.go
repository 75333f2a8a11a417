// Command chaos runs bulkhead's chaos scenarios under steady load and
// prints, per scenario, the requests sent and failed (by status or error),
// p50, p99 and max latency, and whether the scenario stayed within its
// bound. It exits 1 if any scenario failed. See docs/CHAOS.md.
//
// Locally (the default; root, run from the repository): every scenario
// gets its own etcd and kube-apiserver, pods in network namespaces and the
// bulkhead binary built from this checkout.
//
//	go run ./hack/chaos                 # all scenarios (make chaos)
//	go run ./hack/chaos -short          # the CI subset
//	go run ./hack/chaos -run 'pod-'     # by name
//
// Against a real cluster, with a Deployment behind an Ingress that
// bulkhead serves, reached at -router-url:
//
//	go run ./hack/chaos -kubeconfig ~/.kube/config -namespace chaos \
//	    -deployment echo -router-url http://my-alb.example -host echo.example.com
//
// It is a development tool, hence under hack/ and not cmd/.
package main
