// Package tablestore keeps bulkhead's last applied route table on local
// disk, so that bulkhead can serve it when it starts while the Kubernetes
// API server is unreachable.
//
// # What is stored
//
// One routing.Table: its routes with their origins (Ingress, Host, Path,
// PathType, VirtualHost, DefaultBackend, Service, Port, Endpoints), its
// Problems, its Served list, its Backends and its Certificates (the key
// pairs of the HTTPS Gateway listeners, of Ingress spec.tls hosts and the
// default certificate, private keys included: see "Private keys"). Every exported field of Table and Route that is not
// tagged json:"-" is stored (the Gateway API status is not: it describes
// live objects): the file holds Table and Route as encoding/json makes them
// (Route's JSON tags, Table's field names), the routes' skipper definitions
// being the one exception. Route.Eskip is not JSON; it is stored as eskip
// text, ID included ("ing__ns__name__...: PathSubtree(...) -> ... -> <...>;"),
// and parsed back with skipper's eskip parser. Before writing, Save parses
// each text back and checks it with eskip.Eq against the route; a table
// with a route that would not come back the same is not written. "The
// same" is eskip.Eq after two adjustments it needs (see forComparison):
// numeric arguments compare as float64, as the parser makes them (routing
// emits ints: a loaded table has status(503.0) where the live one had
// status(503), which eskip.Eq alone calls different), and predicates of
// one name are ordered by arguments. The deprecated eskip.Route Name and
// Namespace fields are not in eskip text and come back empty.
//
// A field added to Table or Route is stored without changes here, as long
// as encoding/json can carry it; the round-trip test of a fully populated
// table (which fails while a field is left unset in its fixture) checks it.
// Routes and Backends are encoded one by one (see encodeCached), and a
// write takes the JSON of those the last write had from the file it wrote,
// read back and checked to be exactly what was written (fileCache): only
// where each is in the file is kept between writes; the rest of the table
// is encoded whole, and the two lists are spliced into it: at "Routes",
// the first field of Table, and at "Backends", found by its key wherever
// it stands among the others.
//
// # Private keys
//
// Table.Certificates holds the PEM certificate and private key of every
// certificate served (HTTPS Gateway listeners, Ingress TLS hosts, the
// default certificate; base64 in the JSON), so that a router restarted
// while the API server is unreachable still terminates TLS. The file is as
// secret as the Secrets it copies. It is created mode 0o600 (os.CreateTemp,
// then renamed into place; never widened), in a directory Open creates
// 0o700, owned by the router's user. Threat model: root on the node and
// processes of the router's user can read it, and both can read the same
// Secrets already, through the router's ServiceAccount token mounted in its
// pod; the file adds no reader among them. What it adds is a copy on the
// node's disk: keep -state-dir on a volume of the router alone (emptyDir or
// a dedicated hostPath), not one that is backed up or shared. A Secret
// removed from the cluster leaves the file at the next write; a snapshot
// left behind on a node keeps its keys until it is deleted. A table shown
// with jq, attached to a bug report, shows the keys: remove "Certificates".
//
// # File format
//
// One file, routes.snapshot, mode 0o600, of two lines:
//
//	{"format":"bulkhead-route-table","version":1,"schema":"d1992dd0a8807c33","savedAt":"2026-03-04T04:06:07.890123456Z","routes":5,"payloadBytes":2861,"payloadSHA256":"d252…"}
//	{"savedAt":"2026-03-04T04:06:07.890123456Z","table":{"Routes":[{"eskip":"…","ingress":{…},…}],"Problems":[…],"Served":[…],"Backends":[…],"Certificates":[…]}}
//
// The header line names the format and its version, a fingerprint of the
// payload's Go types ("schema": field names, JSON tags and types of Table,
// Route and everything in them), the time of the save, the number of
// routes, and the payload's length in bytes and SHA-256. The payload is the
// rest of the file, one line of JSON ending in a newline; `head -1` shows
// the header, `tail -n +2 routes.snapshot | sha256sum` checks the checksum,
// `tail -n +2 routes.snapshot | jq` shows the table. The payload repeats the
// save time, so the checksum covers it. Equal tables saved at the same time
// give identical files.
//
// # Durability
//
// Save replaces the file so that after a crash or power loss at any moment
// the file is the old snapshot or the new one, whole:
//
//  1. The new content goes into a new temporary file in the same directory
//     (routes.snapshot.tmp-*), never into the snapshot itself: a crash
//     while writing would leave half a table under the real name.
//  2. The temporary file is fsynced and closed: a rename can reach the disk
//     before the data, and a power loss would then leave the real name on
//     an empty or partial file.
//  3. It is renamed over routes.snapshot: rename within one directory
//     (one file system) is atomic, so readers, also concurrent ones, see
//     the old file or the new one.
//  4. The directory is fsynced: the rename is an update of the directory,
//     and only this makes it survive a power loss. A failure here is
//     reported, though the new snapshot is probably already in place.
//
// On any failure the temporary file is removed. A crash can still leave one
// behind; Open removes them. Open also creates the directory (0o700) if it
// is missing and checks, by creating, syncing and removing a file, that it
// is a writable directory: a wrong -state-dir fails at start with an error
// naming the path, not at the first save.
//
// # Bad files
//
// Load returns the whole table or nothing. A missing file is ErrNoSnapshot.
// Anything else that is wrong with it is a *CorruptError naming the file
// and the reason, counted in bulkhead_snapshot_load_errors_total by kind:
//
//   - unreadable: not a regular file (a directory or FIFO in its place), a
//     symlink loop, an I/O error;
//   - truncated: the file ends within the header line or before the
//     payload length the header declares (an empty file too);
//   - not_a_snapshot: the file does not start with the format identifier;
//   - unknown_version: another format version, or a payload schema this
//     build does not have (written by a bulkhead whose Table differs).
//     Earlier schemas whose tables differ only by fields added since are
//     read (earlierSchemas, each with a stored file a test loads): a
//     router upgraded during an outage keeps its table;
//   - checksum_mismatch: the payload's SHA-256 is not the header's;
//   - malformed: everything else (a header that does not decode or is not
//     byte for byte what this build would write, bytes after the payload,
//     header and payload disagreeing, a payload that does not decode
//     strictly, eskip text that does not parse into exactly one route).
//
// The caller logs the error and goes on without the snapshot; a bad file is
// left in place (the next successful Save replaces it).
//
// # Writing in the background
//
// The data client calls Offer with every new table; it never blocks, and
// the newest table wins. RunWriter writes: a table offered after a quiet
// interval at once, later ones at most once per interval (default one
// second), and the pending one when its context ends. A write failing for
// an I/O reason is retried with the newest table after the interval,
// doubling per failure up to a minute; a table that cannot be encoded is
// dropped. Failed writes are counted in bulkhead_snapshot_writes_total and
// logged: the first of a run at once, then at most one line a minute (with
// the number of failures not logged), and one line when a write succeeds
// again.
//
// # Metrics
//
// bulkhead_snapshot_writes_total{result="ok|error"},
// bulkhead_snapshot_last_write_timestamp_seconds,
// bulkhead_snapshot_bytes (size of the snapshot last written or loaded),
// bulkhead_snapshot_load_errors_total{reason} (reasons as above).
package tablestore
