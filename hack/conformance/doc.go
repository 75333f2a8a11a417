// Package conformance runs the upstream Gateway API conformance suite
// (sigs.k8s.io/gateway-api/conformance, pinned v1.6.3; profiles GATEWAY-HTTP
// and GATEWAY-GRPC), unmodified, against bulkhead on a local control plane:
// real kube-apiserver, controller-manager and scheduler, the node agent in
// the kubelet's place (it runs the suite's echo-basic, in its HTTP and gRPC
// modes, and coredns images as our own programs), the Gateway API CRDs of
// the same release (internal/gatewaycrds) and bin/bulkhead.
//
// It is a nested module so that the main module never carries the suite's
// dependencies (controller-runtime, testify, grpc); its path lies under the
// main module's so it may import the internal packages. Run it with
// make conformance-gateway (docs/CONFORMANCE.md).
package conformance
