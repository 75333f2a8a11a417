// Package toxiproxy runs Shopify's toxiproxy server (built from the Go
// module proxy by internal/toolbuild) on loopback and drives it through its
// HTTP API, so tests can cut, reset or black-hole the network between
// bulkhead and the kube-apiserver with a real proxy in the path.
package toxiproxy
