// Package dataclient is bulkhead's Kubernetes route source. It watches
// IngressClass, Ingress, Service and EndpointSlice objects through client-go
// shared informers, translates a snapshot of them with package routing, and
// hands the result to skipper through skipper's DataClient interface. It
// is also where bulkhead keeps its last-known-good table: nothing the API
// server does removes a route.
//
// Data flows one way: kube-apiserver → informers → (signal) → one rebuild
// goroutine → routing.Translate → deletion guard → applied table → skipper
// (LoadAll, LoadUpdate), and → the stored table on local disk (TableStore).
// Informer handlers do nothing but record when a change happened and
// signal; the rebuild goroutine waits a short hold-off after the first
// signal (bounded by a maximum delay) so a burst of changes costs one
// rebuild. Status-only Ingress updates (our own status writes) and relisted
// objects with an unchanged resourceVersion cause no rebuild.
//
// skipper keeps its table when a data client returns an error and replaces
// it when it returns success, even an empty one. So LoadAll returns an
// error until there is a table: from the informers once synced, or the
// stored table when the API server is out of reach at start (it refuses
// connections, or does not sync within SyncTimeout). LoadAll and LoadUpdate
// wait up to a second for a table, so skipper's short poll tick neither
// spins nor delays changes; LoadUpdate returns only the routes that changed
// and the IDs that disappeared.
//
// A lost API server is noticed by a failed watch, or by a /livez heartbeat
// while connected (client-go retries refused watch connections without
// reporting them). A supervisor then probes /readyz with jittered, capped
// backoff and, when the server is back after an outage, restarts the
// informers on fresh connections (Connector) instead of leaving them to
// client-go's reflector backoff, which grows to 30 s. The new informers are
// installed only once fully synced, and the table is never touched while
// the server is away.
//
// The deletion guard holds back one update that would remove more than a
// share of all routes or all endpoints at once (spread over more than one
// Ingress or Service): the old table keeps serving until the same state has
// been seen for the hold period, or an operator confirms (ConfirmHold).
//
// Route-live latency is measured end to end: every table carries a sentinel
// route whose predicate holds the table's version; a skipper post-processor
// sees it when skipper installs that table and observes the time since each
// object change it contains (the EndpointSlice last-change-trigger-time
// annotation where present).
package dataclient
