// Package deploy holds bulkhead's Kubernetes manifests (kustomize, under
// base/) and the test that validates them against a real kube-apiserver.
// There is no Go code to import here.
package deploy
