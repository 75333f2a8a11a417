// Package dataclient is bulkhead's Kubernetes route source. It watches
// IngressClass, Ingress, Service and EndpointSlice objects through client-go
// shared informers, translates a snapshot of them with package routing, and
// hands the result to skipper through skipper's DataClient interface.
//
// Data flows one way: kube-apiserver → informers → (signal) → one rebuild
// goroutine → routing.Translate → published table → skipper (LoadAll,
// LoadUpdate). Informer handlers do nothing but record when a change
// happened and signal; the rebuild goroutine waits a short hold-off after
// the first signal (bounded by a maximum delay) so a burst of changes costs
// one rebuild.
//
// Until the informers have synced, LoadAll returns an error and never an
// empty table: skipper keeps its current table on error and would wipe it on
// an empty success. LoadUpdate waits for the next published table (so a
// change goes live without waiting for skipper's poll tick) and returns only
// the routes that changed and the IDs that disappeared.
//
// Route-live latency is measured end to end: every table carries a sentinel
// route whose predicate holds the table's version; a skipper post-processor
// sees it when skipper installs that table and observes the time since each
// object change it contains (the EndpointSlice last-change-trigger-time
// annotation where present).
package dataclient
