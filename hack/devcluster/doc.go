// Command devcluster runs bulkhead's local Kubernetes control plane in the
// background (etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler, from internal/controlplane), for people who want to point
// kubectl and a locally built bulkhead at a real cluster: Deployments get
// ReplicaSets and Pods, Services get EndpointSlices from the real controller,
// deleted namespaces finish. There are no Nodes yet (the node agent that
// will run pods as processes in network namespaces is to be started in
// serve), so pods stay Pending.
//
//	go run ./hack/devcluster up       # build on first use, start, print the kubeconfig
//	go run ./hack/devcluster status   # running or not, and where
//	go run ./hack/devcluster down     # stop (the data is kept for the next up)
//	go run ./hack/devcluster build    # only build the binaries (used by make)
//
// State lives in -dir (default .devcluster in the working directory).
package main
