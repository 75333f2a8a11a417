// Package gatewaycrds installs the Gateway API's standard-channel CRDs (and
// the ValidatingAdmissionPolicy that guards safe upgrades) of the pinned
// sigs.k8s.io/gateway-api release into a cluster, straight from the Go
// module: the YAML is read from the module's directory in the module cache
// (go mod download -json), never copied into this repository, so the CRDs,
// their OpenAPI schemas and CEL rules are exactly the upstream ones.
//
// It is test and tooling infrastructure (the conformance harness in
// hack/conformance, integration tests); the router itself never writes
// CRDs. It depends only on client-go and the go command.
package gatewaycrds
