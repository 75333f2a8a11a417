// Module crds pins the third-party CustomResourceDefinitions that deploy's
// test installs into its kube-apiserver before applying the manifests that
// use them: prometheus-operator's ServiceMonitor and PrometheusRule, from
// the example/prometheus-operator-crd directory of its Go module. The test
// reads them from the module cache (go mod download), so they are the
// published files, verified against go.sum, and never copied into this
// repository. There is no Go code here; do not run go mod tidy (it would
// drop the requirement).
module bulkhead.local/deploy-crds

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.85.0
