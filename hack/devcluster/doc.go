// Command devcluster runs bulkhead's local Kubernetes control plane in the
// background (etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler, from internal/controlplane), for people who want to point
// kubectl and a locally built bulkhead at a real cluster: Deployments get
// ReplicaSets and Pods, Services get EndpointSlices from the real controller,
// deleted namespaces finish. The node agent (internal/nodeagent) registers
// three Nodes in two zones and runs their pods as processes in network
// namespaces, so `kubectl create deployment web
// --image=bulkhead.local/testpod --replicas=3` and `kubectl expose
// deployment web --port=80 --target-port=8080` give running, ready pods
// and an EndpointSlice a router can send to from this host. There is no
// container runtime, kube-proxy or CNI: an image names a program of this
// repository (internal/nodeagent lists them), and Service ClusterIPs do not
// route. It needs root.
//
//	go run ./hack/devcluster up       # build on first use, start, print the kubeconfig
//	go run ./hack/devcluster status   # running or not, and where
//	go run ./hack/devcluster down     # stop (the data is kept for the next up)
//	go run ./hack/devcluster build    # only build the binaries (used by make)
//
// State lives in -dir (default .devcluster in the working directory).
package main
