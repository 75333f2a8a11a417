// Package ingressconformance runs the upstream Ingress conformance suite
// (kubernetes-sigs/ingress-controller-conformance, pinned at commit
// f91a799, godog features), unmodified, against bulkhead on a local control
// plane: real kube-apiserver, controller-manager and scheduler, the node
// agent in the kubelet's place (it runs the suite's echo server image as
// internal/nodeagent/ingressecho) and bin/bulkhead.
//
// The suite is not a Go module on the module proxy: its source is taken
// with `git archive` from a git directory (BULKHEAD_INGRESS_CONFORMANCE_GIT,
// else the local mirror, else a clone of the GitHub repository in the
// cache) at the pinned commit, and its test binary built there with `go
// test -c` (its own go.mod; its dependencies come through the module
// proxy), cached under toolbuild.CacheDir(). Nothing of the suite is
// copied into this repository.
//
// It is a nested module so that `go test ./...` of the main module does not
// run it (the whole suite takes about 15 minutes); its path lies under the
// main module's so it may import the internal packages. Run it with make
// conformance-ingress (docs/CONFORMANCE.md).
package ingressconformance
