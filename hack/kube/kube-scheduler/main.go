// Command kube-scheduler is the upstream Kubernetes scheduler, which binds
// the local cluster's pods to the Nodes a node agent registers.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	os.Exit(cli.Run(app.NewSchedulerCommand()))
}
