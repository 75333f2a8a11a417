// Command kube-controller-manager is the upstream Kubernetes controller
// manager (Deployment, ReplicaSet, EndpointSlice, namespace, garbage
// collector, node lifecycle, ...), built beside kube-apiserver so the local
// cluster behaves as a real one when a test asks for it.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
