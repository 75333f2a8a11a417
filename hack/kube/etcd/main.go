// Command etcd is the etcd server at the version kube-apiserver pins, built
// in the same module so both share one dependency graph.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
