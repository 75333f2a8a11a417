// Package dataclient is bulkhead's Kubernetes route source. It watches
// IngressClass, Ingress, Service and EndpointSlice objects through client-go
// shared informers, translates a snapshot of them with package routing, and
// hands the result to skipper through skipper's DataClient interface. It
// is also where bulkhead keeps its last-known-good table: nothing the API
// server does removes a route.
//
// The files follow the flow: watcher.go (informers, lean caches, how each
// object left), supervise.go (start, first sync, losing and regaining the
// API server), rebuild.go (the debounced rebuild: translation, the guard of
// guard.go, the applied table), publish.go (handing tables to skipper and
// seeing them go live, with sentinel.go), and status.go and metrics.go for
// operators. client.go holds the options and the main loop.
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
// The deletion guard (guard.go) holds back removals the router cannot
// explain as one user's act, and nothing else: every rebuild applies all
// additions and changes at once. It counts source objects that left (an
// Ingress no longer served, a used Service losing its last usable
// endpoint), never the routes or endpoints that follow from them. The
// watcher tells it how each object left: a watch DELETE was announced; a
// relist tombstone, informers restarted on a new connection, or the first
// sync after serving the stored table was not. Announced removals are held
// only as a burst (MinObjects of a kind within Window, over the share),
// unannounced ones whenever over the share. Held objects go back into the
// snapshot (routing.Snapshot.HeldIngresses, a held Service's last slices)
// or, when the served table came from disk, are kept as the routes they
// were; each is applied HoldPeriod after it was held, when an operator
// confirms (ConfirmHold), or dropped from the hold when it comes back.
//
// Route-live latency is measured end to end: every table carries a sentinel
// route whose predicate holds the table's version; a skipper post-processor
// sees it when skipper installs that table and observes the time since each
// object change it contains (the EndpointSlice last-change-trigger-time
// annotation where present).
package dataclient
