// Package deploy holds bulkhead's Kubernetes manifests (kustomize) and the
// test that validates them against a real kube-apiserver. There is no Go
// code to import here.
//
//   - base/: the namespace, a least-privilege ServiceAccount (read Ingress,
//     IngressClass, Service, EndpointSlice and Node; update Ingress status;
//     create events; the status Lease in its own namespace), the
//     IngressClass, the DaemonSet and a NetworkPolicy. The DaemonSet: host
//     ports 8080 (traffic) and 8081 (/healthz, /readyz), the admin
//     endpoint on the pod's loopback (127.0.0.1:9911, reached with kubectl
//     port-forward), the read-only metrics listener on the pod IP (9912), a
//     hostPath state directory for the last-known-good table, non-root,
//     read-only root file system, no capabilities, system-node-critical.
//     Its drain (-drain-delay=70s, -drain-timeout=60s, a 150 s grace
//     period) outlasts an ALB target group's default health check. The
//     NetworkPolicy opens the traffic and health ports to all and nothing
//     else.
//   - components/monitoring/: an optional kustomize Component for
//     prometheus-operator: a headless Service on the metrics port, a
//     ServiceMonitor, a NetworkPolicy opening that port to Prometheus's pods
//     only, and a PrometheusRule with bulkhead's alerts.
//   - overlays/example-with-monitoring/: base plus that component.
//   - overlays/aws-alb/: base behind an ALB made by the AWS Load Balancer
//     Controller (Ingress of class alb, instance targets, a NodePort
//     Service), with a health check on /readyz tight enough for a 35 s
//     drain delay. aws-alb.md explains the numbers, and how to configure a
//     target group managed outside Kubernetes.
//
// deploy_test.go renders each kustomization with kubectl, checks the
// properties the router depends on (grace period above drain delay plus
// drain timeout, the ALB health-check arithmetic, the security context,
// the RBAC rules, the admin endpoint on loopback, which ports each kind of
// peer may reach under the NetworkPolicies, and that every alert expression
// parses and reads only metrics defined in bulkhead's source), then applies the base to a real
// kube-apiserver and dry-runs the overlays there, with prometheus-operator's
// published CRDs installed. testdata/ holds two small nested modules: crds
// pins prometheus-operator's module (whose CRD files the test reads from the
// module cache) and promqlcheck wraps Prometheus's PromQL parser.
package deploy
