// Command devcluster runs bulkhead's local Kubernetes control plane (etcd and
// kube-apiserver, no nodes) in the background, for people who want to point
// kubectl and a locally built bulkhead at a real API server.
//
//	go run ./hack/devcluster up       # build on first use, start, print the kubeconfig
//	go run ./hack/devcluster status   # running or not, and where
//	go run ./hack/devcluster down     # stop (the data is kept for the next up)
//	go run ./hack/devcluster build    # only build the binaries (used by make)
//
// State lives in -dir (default .devcluster in the working directory).
package main
