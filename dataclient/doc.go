// Package dataclient is bulkhead's Kubernetes route source. It watches
// IngressClass, Ingress, Service and EndpointSlice objects and the
// kubernetes.io/tls Secrets (secrets.go: a field selector, so no other
// Secret is read; lean copies of tls.crt and tls.key; watched whether or
// not the Gateway API is served, for Ingress spec.tls, HTTPS Gateway
// listeners and the default certificate), and where the API server serves
// the Gateway API its GatewayClasses, Gateways, HTTPRoutes, GRPCRoutes
// (only when discovery lists grpcroutes: an informer for a kind the server
// lacks would never sync) and ReferenceGrants, with Namespaces for their
// labels (gatewaywatch.go), through client-go shared informers,
// translates a snapshot of them with package routing, and hands the
// result to skipper through skipper's DataClient interface. It
// is also where bulkhead keeps its last-known-good table: nothing the API
// server does removes a route.
//
// The files follow the flow: watcher.go (informers, how each object left),
// lean.go (the informers' transform: what the caches keep of an object),
// supervise.go (start, first sync, losing and regaining the
// API server, with gate.go between the informers and the server),
// rebuild.go (the debounced rebuild: translation, the guard of
// guard.go, the applied table; an endpoint-only change resolves only its
// Services' backends, found by binary search, and records their slices
// beside the served snapshot, served.go, so its cost does not grow with
// the cluster), publish.go (handing tables to skipper and
// seeing them go live, with sentinel.go), and status.go and metrics.go for
// operators. client.go holds the options and the main loop.
//
// Data flows one way: kube-apiserver → informers → (signal) → one rebuild
// goroutine → routing.Translate → deletion guard → applied table → skipper
// (LoadAll, LoadUpdate), and → the stored table on local disk (TableStore).
// Informer handlers do nothing but record when a change happened (and
// what: a snapshot lists again only the kinds whose caches changed, and
// keeps the Ingresses and EndpointSlices in a stable order, a changed
// object in its old place, so that the translator re-translates only the
// objects that changed: stablelist.go, routing's incremental path) and
// signal. The rebuild goroutine rebuilds at once on the first change
// after a quiet spell; a change that follows a rebuild within the
// hold-off is part of a burst and waits until no change has come for the
// hold-off (bounded by a maximum delay), so the rest of a burst costs one
// rebuild. A removal always waits, for a longer quiet spell (50 ms, at
// most 500 ms), so that the deletion guard sees a burst of deletions
// whole even when the API server is slow between them. Status-only Ingress updates (our own status writes) and relisted
// objects with an unchanged resourceVersion cause no rebuild, nor does a
// change of a Secret that neither a served Ingress's spec.tls, a Gateway's
// certificateRefs nor the default certificate names (a cluster holds many
// TLS Secrets: webhooks', cert-manager's); such a change costs a cache
// update.
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
// A lost API server is noticed by a failed watch, by a request failing at
// the transport, or by a /livez heartbeat while connected (client-go
// retries refused watch connections without reporting them). A supervisor
// then probes /readyz with jittered backoff capped at 2 s. What happens on
// the server's return is -apiserver-reconnect (gate.go):
//
//   - resume (the default): the informers are kept for the life of the
//     process, and their client's transport and dialer pass a gate. While
//     the probe says the server is away the gate holds every list and watch
//     request instead of failing it: client-go's reflector backs off only on
//     errors (up to 30 s), so it never sees one and is not slowed after the
//     outage. When the server is back, a watch from a known resourceVersion
//     goes at once (a resume: the server replays what changed from its watch
//     cache or etcd, cheap; it answers 410 Gone when that history is gone,
//     and the reflector then relists); a full list (LIST, or the streaming
//     watch-list client-go v0.36 uses by default, WatchListClient beta and
//     on since 1.35, served by kube-apiserver since 1.34) waits for a moment
//     this router draws at random within -apiserver-relist-spread, so a
//     fleet's relists are spread instead of arriving within a second of the
//     server's return. Connections from before the outage are closed then,
//     so nothing waits on one that died silently, and a watch stream reads
//     as a clean end however it ends (client-go relists after any other
//     error; after a clean end it re-watches from where it was). A relist replaces an informer's cache only once
//     the whole list has arrived, and what it no longer finds is a tombstone:
//     an unannounced removal for the guard. A server whose default/kubernetes
//     Service has another UID than the cached one (a wiped or replaced
//     store, another cluster) could accept a watch from one of our
//     resourceVersions and never tell what we hold that it lacks: then no
//     watch resumes, every kind is listed afresh.
//   - restart: new informers on fresh connections (Connector) as soon as
//     the probe succeeds, installed once fully synced; removals found by
//     comparing the old caches with the new ones are unannounced. Every
//     router lists everything within about 2 s of the server's return; kept
//     for comparison (make bench-fleet).
//
// Either way the table is never touched while the server is away.
//
// The deletion guard (guard.go: what it judges; guardcompare.go: what
// counts as removed; guardhold.go: serving what it holds) holds back removals the router cannot
// explain as one user's act, and nothing else: every rebuild applies all
// additions and changes at once. It counts source objects that left (an
// Ingress no longer served, an HTTPRoute or GRPCRoute (each a kind of its
// own) with no route left in the table,
// deleted or detached from its Gateway, a used Service losing its last
// usable endpoint), never the routes or endpoints that follow from them;
// each kind on its own. The watcher tells it how each object left: a
// watch DELETE was announced, and so was an update (a class, parentRefs or
// Gateway change); a relist tombstone (of the object, or of the
// IngressClass, Gateway or GatewayClass it depended on), informers
// restarted on a new connection (restart mode: inheritGone compares the
// old caches with the new ones, the Gateway API's too), or the first sync after
// serving the stored table was not. Announced removals are held
// only as a burst (MinObjects of a kind within Window, over the share),
// unannounced ones whenever over the share. Held objects go back into the
// snapshot (routing.Snapshot.HeldIngresses, a held Service's last slices)
// or are kept as the routes they were: a held HTTPRoute or GRPCRoute always, a held
// Ingress when the served table came from disk. Each is applied
// HoldPeriod after it was held, when an operator confirms (ConfirmHold),
// or dropped from the hold when it comes back.
//
// Endpoints live beside the routes (routing.Table.Backends). apply hands
// changed endpoint lists to the upstream layer (Options.Endpoints) before
// skipper can get a route naming them, and gives skipper a table only when
// its routes changed; a backend no route names any more is dropped once the
// table without those routes is live. The watcher records which Services'
// slices, which Services and which Ingresses changed. A rebuild caused by
// slices alone re-resolves only those Services' backends
// (routing.ResolveEndpoints) and translates nothing, at once, without the
// hold-off; unless a backend would lose its last endpoint, which is left to
// a full rebuild and the deletion guard. Its new endpoints are kept beside
// the Backends list of the table it started from (published.patched), which
// earlier tables share and nobody modifies, instead of a copy of the list
// per change; the list is made whole when read (Table, a full rebuild) and
// for the stored table, which such changes are offered to at most once a
// second (the pace the Store writes at), and such a table is not given to
// Options.OnTable. Changed Services no route names
// and Ingresses that are not ours (before nor after) cost nothing more
// than their cache update. Full rebuilds go through one routing.Translator,
// which translates again only what changed.
//
// skipper rebuilds its whole matcher, and makes every route's filters
// again, on any change of its table: at 10,000 Ingresses that was most of
// an Ingress change's cost. So the routes are split by host into shards
// (Options.Shards, routing.RouteShard), each a skipper table of its own fed
// by Shard(i); the proxy looks a request up in its host's shard
// (routing.RequestShard). A change gives skipper only the shards whose
// routes changed.
//
// Route-live latency is measured end to end: every shard's table carries a
// sentinel route whose predicate holds the table's version and shard; a
// skipper post-processor sees it when skipper installs that table, and
// once every shard a table changed has installed it, the time since each
// object change it contains is observed (the EndpointSlice
// last-change-trigger-time annotation where present).
package dataclient
