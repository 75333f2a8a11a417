// Package toolbuild builds the programs bulkhead's tests, demo and
// benchmarks run but do not ship (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kubectl, toxiproxy, vegeta) from
// pinned nested modules under hack/, with the Go module proxy as the only
// source, and caches the results.
//
// A build is keyed by a hash of the nested module's files, the Go version
// and the link flags, so a second run costs nothing and any change to a pin
// rebuilds. Concurrent callers, also in other processes (go test runs
// packages in parallel), wait for one build under an exclusive file lock
// instead of racing.
package toolbuild
