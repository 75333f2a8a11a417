/*
Package routing translates a snapshot of Kubernetes objects (IngressClasses,
Ingresses, Services, EndpointSlices, and the Gateway API's GatewayClasses,
Gateways, HTTPRoutes, GRPCRoutes and ReferenceGrants) into a skipper route table, and
provides the two request-time pieces those routes rely on: PrepareRequest,
which puts the request's host in front of its path before skipper's route
lookup, and the bulkheadRestorePath filter (NewRestorePathSpec), which
takes it out again (and the filters of some routes: bulkheadSSLRedirect,
the Gateway API's).

# Place in the data flow

The data client builds a Snapshot from its informer caches and calls
its Translator (see "Translating again"); skipper's routing loads the resulting Table's routes, with
NewRestorePathSpec() in its filter registry, and the upstream layer takes
its Backends. Routes name their backend (a Service port, BackendKey) and
never list endpoints: an endpoint change is a change of Table.Backends
alone, which the data client re-resolves for the Services concerned with
ResolveEndpoints, without translating anything or touching skipper's
matcher. Services and EndpointSlices come in this package's own forms
(Service, EndpointSlice, made by NewService and NewEndpointSlice): what
translation reads of them and nothing more, since every router caches
every one of the cluster's (the informers store these forms). The proxy handler calls
PrepareRequest on every request before skipper's lookup. Translate is pure:
it uses no clients, globals, clock or logging, does not modify its input,
gives byte-identical output for the same objects in any order, and never
panics; a bad object becomes a Problem and everything else is still
translated. This package imports nothing of bulkhead; it imports skipper
(eskip, filters, predicates), httppath (skipper's path cleaning), the
Kubernetes and Gateway API types, and skipper's routing package (imported
as skrouting) only for the PredicateSpec interface of BulkheadGatewayPort;
skipper's proxy package only in tests.

# Which Ingresses are served

An Ingress is ours when spec.ingressClassName names an IngressClass whose
spec.controller is Options.ControllerName; else, when ingressClassName is
unset, when the legacy annotation kubernetes.io/ingress.class names such a
class; else, when neither is set, when one of our classes is annotated
ingressclass.kubernetes.io/is-default-class: "true". Other Ingresses are
ignored silently. spec.tls gives certificates (see "TLS for Ingresses").
Table.Served lists every Ingress selected this way, whether or not it
produced routes (for the status writer).

# Paths

  - Exact matches the path exactly, case-sensitively: "/foo" does not match
    "/foo/".
  - Prefix matches element-wise on "/": "/foo" matches "/foo", "/foo/" and
    "/foo/bar", not "/foobar". A trailing slash in the rule is ignored;
    "/" matches every path.
  - ImplementationSpecific means Prefix here, in every respect: matching,
    and conflicts (an ImplementationSpecific and a Prefix rule on the same
    host and path conflict). A missing pathType is read as
    ImplementationSpecific.
  - An empty path means "/".
  - The longest matching path wins; on the same path Exact beats Prefix.
  - A path that is not absolute, contains ':' or '*' (skipper's path tree
    reads those as wildcards and refuses them inside a segment), or is not
    clean ("//", "." or ".." segments; request paths are cleaned before
    matching, so such a rule could never match as written) is an
    InvalidPath problem; that path is skipped.
  - Request paths are matched cleaned (httppath.Clean, as skipper does:
    "/a/../b" is "/b"), but the pod receives the path as sent.

# Hosts and precedence

Hosts are case-insensitive; the port and a trailing dot of the Host header
are ignored. "*.foo.com" matches exactly one more label: "bar.foo.com", not
"baz.bar.foo.com" nor "foo.com". A rule without host matches every host,
including none and hosts that are not DNS names (IP literals, odd
characters). A request host is a DNS name when its labels are 1 to 63
letters, digits, '-' or '_' (253 characters in all); '_' is refused in rule
hosts, as Kubernetes does, but a wildcard or host-less rule serves such a
request host.

A request goes to the best rule that matches it, where host class comes
first (exact host, then wildcard, then host-less) and path second. So when
the rules of the request's most specific host do not match its path, it
falls through to the wildcard rules and then to the host-less ones: with
A = "foo.com" Prefix "/" and B = host-less Prefix "/api", "foo.com/api/x"
goes to A although B's path is longer, and "bar.com/api/x" to B; with
A = "foo.com" Prefix "/a" and B = host-less Prefix "/b", "foo.com/b" goes
to B.

This is built on skipper's path tree alone, with no predicate per host.
A host is split at its first dot into its first label and the rest, its
parent, and becomes the two path segments "/<parent>/<label>" (hostkey.go):
"bar.foo.com" is "/foo.com/bar"; a single-label host has the parent "~"
("localhost" is "/~/localhost"); a request host that is not a DNS name is
"/~/~". DNS names contain neither '/' nor '~', so no two hosts share a key.
Each rule is emitted once, with its path behind the key of its host:

  - exact host "foo.com": "/com/foo" + path. Prefix "/api" is
    PathSubtree("/com/foo/api"), Prefix "/" is PathSubtree("/com/foo"),
    Exact "/x" is Path("/com/foo/x");
  - wildcard "*.foo.com": "/foo.com/:label" + path; the wildcard segment
    matches exactly one label, which is the "exactly one more label" rule;
  - host-less: "/:parent/:label" + path.

PrepareRequest gives the request the same form: the path, cleaned first (so
".." cannot climb out of it into the key), behind the key of its Host. A
request for "bar.foo.com/api/x" is looked up as "/foo.com/bar/api/x".
Skipper's tree (pathmux) tries a node's static children before its
wildcard child, a leaf's routes until one matches, and backtracks when
none does; and a subtree's catch-all only after everything more specific.
So the lookup tries the static "foo.com" then "bar", that is, the rules of
the exact host bar.foo.com, longest path first; when none matches, the
":label" child of "foo.com", the rules of "*.foo.com", longest first; then
the root's ":parent/:label" children, the host-less rules; and last the
default backend. That is host class first, path second, with fall-through,
and a host-less path can never beat a more specific host's rule by being
longer: it lies in another branch of the tree. The cost of a lookup
depends on the length of the request path and on the rules of the hosts
it falls through, not on the number of hosts.

Exact routes carry Weight(1), so that on a node where an Exact and a
Prefix route of the same host meet ("/x" is a node of both Path("/x") and
PathSubtree("/x")), the Exact one is tried first. Skipper's
IgnoreTrailingSlash option must stay off.

The bulkheadRestorePath filter, first on every route, puts back the
original path (kept in r.Pattern) and removes the key from RawPath, so
that later filters and the pod see the request as the client sent it. Any
other route loaded into the same skipper table sees the prefixed paths
too, and must be written for them (or never match, like the data client's
table-version sentinel).

# Default backend, 404 and 503

spec.defaultBackend gets the requests that match no rule of any served
Ingress: it is emitted without any predicate, a root leaf that skipper
tries last. Without a default backend such requests get skipper's 404.

A rule whose backend cannot serve (unknown Service or port, ExternalName
Service, resource backend, no usable endpoint) keeps its path and answers
503 with a one-line text body saying why, and its Ingress gets a Problem:
the path exists, its backend is down, and that must not look like a 404 nor
fall through to another rule.

# Conflicts

Rules of several Ingresses for the same host merge. Two rules with the same
host, path and path type (ImplementationSpecific counting as Prefix), or two
default backends, conflict: the Ingress with the oldest creationTimestamp
wins, then the lower namespace/name; the other rule is dropped with a
Conflict (or DuplicateDefaultBackend) problem naming the winner, and the
rest of that Ingress is kept. Within one Ingress the first such rule wins.

Snapshot.HeldIngresses are Ingresses the deletion guard keeps serving after
a removal it cannot explain. They are translated as served whatever their
class, after every live Ingress, so they lose every conflict to one (a new
Ingress taking over a held one's host and path wins at once); a live
Ingress of the same namespace and name replaces the held copy, and held
Ingresses are not in Table.Served (nothing to write status to).

# TLS for Ingresses

Each host of a served Ingress's spec.tls (exact or "*." wildcard, as rule
hosts) gets the key pair of the kubernetes.io/tls Secret secretName in the
Ingress's namespace, as a Certificate with Port 0 (IngressPort) and
Certificate.Ingress set, in Table.Certificates beside the Gateway ones, so
it is stored with the last-known-good table. Conflicts follow the rules'
order: a host goes to the first Ingress in precedence order (oldest, then
namespace/name; held Ingresses after the live ones) that lists it with a
Secret that can be served; a later Ingress naming another Secret for the
host gets a Conflict problem (naming the same Secret is no conflict, as
several Ingresses sharing a host usually do). An entry without secretName,
without hosts (no catch-all from an Ingress: that is the router's default
certificate), naming a Secret that is not in the snapshot (only
kubernetes.io/tls Secrets are read, so a Secret of another type is "not
found" there; in a snapshot that holds one, its type is named), or one
whose tls.crt and tls.key crypto/tls refuses as a key pair (malformed,
mismatched) is an InvalidCertificate problem naming the Ingress and the
Secret; an invalid host is InvalidHost. A host served with a certificate
whose leaf does not name it (as a client checks; for a wildcard host, a
name one label below it) is served all the same and reported as
CertificateHostMismatch. Only an invalid entry is left out: its
hosts keep a certificate another Ingress gives them, or the default one,
and the Ingress's routes are served as before, over plain HTTP and over
TLS. Validity dates are not checked (translation has no clock): an expired
certificate is served as the Secret holds it; package tlsterm exports each
one's expiry as a metric. Options.DefaultCertificate names the Secret of
the default certificate (Certificate.Default, Port 0, no hostname),
checked likewise; a problem there is of kind Secret.

Which certificate a handshake gets is CertificateIndex.Serve: the
listener's Gateway port's listeners (see "HTTPS listeners"), then Ingress
hosts (exact, then the longest wildcard: like Gateway hostnames, "*.foo.com"
is looked up for "a.b.foo.com" too, though the certificate will only
convince a client for one label), then the default certificate (also for a
ClientHello without server name). Ingress certificates are offered on every
listener, since Ingress routes answer on every listener.

bulkhead.io/ssl-redirect: "true" (or "false"; another value is an
InvalidAnnotation problem) puts the filter bulkheadSSLRedirect() right
after bulkheadRestorePath on the Ingress's routes whose host is one of its
spec.tls hosts (or one label below a wildcard one) whose own Secret can be
served: a host whose Secret is broken or missing keeps being served over
plain HTTP rather than sending clients to a failing handshake. Host-less
rules and the default backend are never redirected. The filter
(NewSSLRedirectSpec) answers a request that did not arrive over TLS with
308 Permanent Redirect to https://<host without port><path and query as
sent>. Whether it arrived over TLS is X-Forwarded-Proto as the proxy sets
it on every request before the lookup: from the connection, unless the
peer is a trusted proxy that sent the header (an ALB that took the client's
request over plain HTTP says "http" even on a TLS connection to us). An
untrusted client's header is replaced, so it can neither cause nor
suppress the redirect. Because the redirect depends on Secrets, a
Translator also remembers, per Ingress asking for it, the Secrets its
spec.tls named, and makes the entry again when one of them changes.

# Backends

A backend's service.port.number or service.port.name selects a TCP Service
port. Its target port comes from the EndpointSlices labelled
kubernetes.io/service-name in the same namespace: the slice port with the
Service port's name (both empty for a single unnamed port) and protocol, so
named targetPorts resolve per pod. IPv4 and IPv6 slices are used (IPv6
bracketed in URLs), FQDN ones skipped; only the first address of an
endpoint is used. Conditions are read as Kubernetes defines them (ready nil
means ready, serving nil means as ready, terminating nil means not). The
ready endpoints are used; when none is ready, those serving and
terminating. Addresses are deduplicated across slices and sorted into the
backend's entry of Table.Backends, one per Service port that routes name.

A route to a usable backend (the Service and its TCP port exist, and the
Service is not ExternalName) ends in bulkheadBackend("namespace/service:port")
and skipper's <dynamic> backend: the filter, which the upstream layer
provides, picks one of the backend's current endpoints per request
(least in-flight, or round robin with a second argument "roundRobin" when
the Ingress asks) and answers 503 while it has none. A route whose backend
cannot be used answers 503 itself (a status(503) shunt) and carries a
problem on its Ingress. No endpoints is not a route's problem but the
Service's (NoEndpoints), so that it can change without the routes.

The protocol toward the pods is the Service port's appProtocol (Ingress
and Gateway API backends alike; compared ignoring case):
kubernetes.io/h2c, h2c, grpc and http2 mean HTTP/2 with prior knowledge
in the clear, written as a "protocol=h2c" argument of bulkheadBackend;
https, tls and h2 mean TLS (HTTP/2 or HTTP/1.1 as the pod's ALPN answer
says), written "protocol=tls" with "server-name=<service>.<namespace>.svc",
the name the upstream layer checks the pod's certificate against (pods
are reached by IP). Anything else, unset, http, kubernetes.io/ws,
kubernetes.io/wss (upgrades bypass the TLS round tripper) and the
domain-prefixed values Kubernetes allows any tool to use, is HTTP/1.1 and
adds nothing: an unknown value is not a problem.

Pods and tenants can write EndpointSlices, so an endpoint may name
anything (CVE-2021-25740). Endpoints at loopback, link-local (the instance
metadata address 169.254.169.254 among them), fd00:ec2::254 (AWS's IPv6
metadata), unspecified, multicast or broadcast addresses are always
refused, IPv4-mapped IPv6 forms judged as IPv4; so are those at
Options.SelfAddresses (the router) and Options.NodeAddresses (its node), on
every port (see Options for why). A refused endpoint is taken out before
the ready/terminating choice and reported as a RefusedEndpoint problem on
the Service, naming the address and why; with no endpoint left the route
answers 503, like a backend without endpoints.

# Annotations

bulkhead.io/ annotations of an Ingress apply to all of its routes
(ssl-redirect: to those of its TLS hosts, see "TLS for Ingresses"):
load-balancer (least-in-flight or round-robin), connect-timeout,
response-header-timeout, request-timeout, slow-start (durations in Go
syntax; "0" for none where allowed) and retry-non-idempotent (true or
false). All but load-balancer become the arguments of one
bulkheadUpstream("key=value", ...) filter, after bulkheadRestorePath. An
unknown bulkhead.io/ annotation or a bad value is an InvalidAnnotation
problem and is ignored alone: the routes stay, with the router's defaults.
Other annotations are not ours and are not looked at.

Objects that share a kind, namespace and name in one snapshot (which
informer caches never produce) are all ignored with a DuplicateObject
problem: keeping one would make the output depend on the input order.

# Translating again

A Translator (NewTranslator) is Translate with a memory, for a caller that
translates the same cluster over and over: the data client keeps one for
its full rebuilds. For the same snapshot and options it returns exactly
what Translate returns (Translate is a fresh Translator's first call, and a
test compares the two after every step of random change sequences), but it
reuses the work done for objects that did not change since its previous
call. It knows objects by pointer: informer caches never modify an object,
they replace it, so an object at the same address is the same object.
Remembered are, per Ingress, its settings, its rules validated and with
their backends resolved, its own problems and its emitted routes, until
the Ingress or a Service it names (or its absence) changes, or, for an
Ingress with the ssl-redirect, a Secret its spec.tls names; per backend,
its endpoints and their problems, until its Service or the set of its
EndpointSlices changes, or the options; and the order of the previous
table (Ingresses by precedence, routes by ID, backends by key), into which
a call merges what changed instead of sorting everything. When a call's
Services and EndpointSlices lists hold the same objects in the same order
as the previous call's (the data client lists again only the kinds that
changed), they are not indexed again and no backend is checked. What depends on
several Ingresses (precedence, conflicts, the default backend, the IDs of
colliding routes) is decided again on a full call, by a pass over the
remembered rules.

A call that differs from the previous one in a few Ingresses and
EndpointSlices only (the same IngressClasses, Services, Secrets and
options, nothing held by the deletion guard, no Gateway API route) takes
the incremental path (incremental.go): it finds the changed objects by
comparing the lists position by position, which is why the data client
keeps each kind's list in a stable order (a changed object in the place of
the old one), and then works on the changed Ingresses' names and their
hosts and paths alone: every claimant of each host and path is kept, in
precedence order, so a key whose winner left is won by the next one; the
routes whose winner changed are spliced into the sorted list, and the
problems are kept as counted contributions. Its work follows the change, not
the cluster; what stays proportional to the cluster is the copy of the
lists it returns (earlier tables are never modified): at 10,000 Ingresses,
one changed Ingress is about 4 ms, most of it copying the 10,000 routes,
against 13 ms before this path and 100 ms for a full translation. Anything else (more than a sixteenth of a list, a
changed Ingress whose name is duplicated, colliding route IDs) is a full
call. A test compares both paths with Translate after every step of random
change sequences, several changes between two calls.

The routes can be split into shards by host key (RouteShard, RequestShard):
a request can only match routes of its own host key and routes that match
any (wildcard and host-less rules, the default backend), so a shard holding
the routes of its keys plus every route of the second kind answers each of
its requests as the whole table would. The proxy gives skipper one table
per shard, so a change rebuilds one shard's matcher. An emitted route whose inputs did not change is the same
*eskip.Route as in the previous table (also when its Ingress was replaced
by an equal object), so the data client tells unchanged routes by pointer.
This is still a pure function of the snapshot: what is remembered is only
ever a result computed from objects that are still there, unchanged, and
nothing remembered or returned is ever modified afterwards (a route whose
ID must be renamed is copied), which is also why tables a Translator
returns must not be modified by their users.

# Gateway API

Gateway API objects (GatewayClass, Gateway, HTTPRoute, ReferenceGrant, all
read as gateway.networking.k8s.io/v1, and Namespaces for their labels) are
a second input of the same translation (gateway.go). Their routes are
Routes like the Ingress ones (Route.Gateway says where they came from:
HTTPRoute, rule, match, Gateway listener, backendRef), in the same path
tree, ending in the same bulkheadBackend filter and <dynamic> backend, with
their Services' endpoints in the same Table.Backends; the status the leader
is to write (Table.GatewayClasses, Gateways, HTTPRoutes) is part of the
output, every condition with its observedGeneration and without
lastTransitionTime (the writer keeps the old time when a condition's status
did not change). This pass is computed afresh on every call; a Translator
remembers nothing of it.

  - A GatewayClass is ours, and Accepted, when its controllerName is
    Options.GatewayControllerName (default bulkhead.io/gateway-controller);
    a Gateway is ours when its class is.
  - Listeners: protocols HTTP and HTTPS are accepted (TLS and others:
    Accepted=False UnsupportedProtocol; HTTPS below), only on a port in
    Options.GatewayPorts (else PortUnavailable: a per-node router listens
    on fixed ports). Listeners of one Gateway on one port with the same
    hostname, or another protocol, are Conflicted (HostnameConflict,
    ProtocolConflict) and not accepted. A port is served in clear or with
    TLS for all Gateways: the oldest Gateway (then namespace/name) with a
    listener on it that is otherwise served decides, and a listener of
    another Gateway with the other protocol is PortUnavailable.
    allowedRoutes.kinds may list HTTPRoute and GRPCRoute (both allowed
    when it lists none); others make ResolvedRefs=False
    InvalidRouteKinds, and supportedKinds lists what is left.
    allowedRoutes.namespaces: Same (default), All, Selector (on the
    Namespace's labels; a missing Namespace has none), None.
    attachedRoutes counts the HTTPRoutes and GRPCRoutes attached to the
    listener. A
    listener is served (Programmed) when accepted and, for HTTPS, its
    certificate resolved. A Gateway is Accepted when a listener is served
    (reason ListenersNotValid when some are not), not when it asks for
    spec.addresses (UnsupportedAddress); Programmed when accepted and
    Options.PublishAddresses is not empty (they are its status addresses,
    IPs as IPAddress, others as Hostname), else AddressNotAssigned.
  - An HTTPRoute attaches through each parentRef naming one of our
    Gateways (other parents get no status entry from us) to the listeners
    matching its sectionName and port: none is NoMatchingParent; none that
    is accepted and allows the route's namespace and kind is
    NotAllowedByListeners; none whose hostname intersects one of the
    route's is NoMatchingListenerHostname. The intersection is the more
    specific of the two hostnames (a wildcard "*.foo.com" matches one or
    more labels: "a.foo.com", "a.b.foo.com", never "foo.com").
  - Matches: path Exact and PathPrefix (as Ingress Exact and Prefix:
    element-wise, trailing slash ignored), and RegularExpression: Go's RE2
    syntax, matched against the whole path (anchored at both ends,
    case-sensitive), cleaned as the other matches see it, by the
    BulkheadPathRegexp predicate (gatewaypath.go), which strips the host
    key first (skipper's PathRegexp would see the key, and an expression's
    own "^" could not follow it); an expression that does not compile
    drops its match. Headers Exact (skipper's Header) and
    RegularExpression (HeaderRegexp), the first of each name only, as the
    spec says; queryParams Exact (QueryParam with the quoted value
    anchored) and RegularExpression; method. A rule without matches
    matches every path ("/" prefix).
  - Filters, all after bulkheadRestorePath, so that they see the request
    as the client sent it, and in the rule's order (gatewayfilters.go):
    RequestHeaderModifier and ResponseHeaderModifier become
    bulkheadRequestHeaders / bulkheadResponseHeaders("set"|"add"|"remove",
    name, value, ...), ours because skipper's setRequestHeader expands
    "${...}" templates, and a user's value must reach the pod as written.
    RequestRedirect becomes bulkheadRedirect("status=302",
    "listener-port=80", ...), last on a <shunt> route: it answers with the
    Location the spec describes (scheme: the filter's, else the request's,
    which is http unless the router itself terminated TLS: a client can
    set X-Forwarded-Proto, so it is not read;
    hostname: the filter's, else the Host header's without port; port:
    the filter's, else the scheme's well-known port when the filter sets a
    scheme, else the listener port; 80 with http and 443 with https left
    out; the path as sent, or with ReplaceFullPath / ReplacePrefixMatch
    applied; the query kept). URLRewrite becomes bulkheadRewrite: hostname
    is the Host the pod receives (skipper's outgoing host), the path
    ReplaceFullPath or ReplacePrefixMatch. ReplacePrefixMatch replaces the
    match's prefix element by element ("/foo/bar" with prefix "/foo" and
    "/xyz" is "/xyz/bar", with "" or "/" it is "/bar"; empty is "/"); the
    filter gets the prefix of its route's match as an argument, and
    compares it with the cleaned path as the match did, so a path that
    was not clean is sent clean after a prefix replacement; escapes in the
    rest of the path are kept. Header modifiers on a backendRef apply to
    that backend's share only, after the rule's filters. RequestMirror
    becomes the upstream layer's bulkheadMirror("<backend key>",
    <fraction>), one per mirror, after the rule's other filters (the copy
    carries their changes) and before a backendRef's own: percent / 100,
    or fraction numerator / denominator (default 100), 1 when neither is
    set. Its backendRef resolves as a backendRef does (a core Service, a
    ReferenceGrant across namespaces, the port): one that does not is
    ResolvedRefs=False with the same reasons and a problem, and the rule is
    served without that mirror. The mirror Service's endpoints are in
    Table.Backends (Route.Gateway.Mirrors names them), though no route's
    Backend is it. A route that answers 500 or redirects mirrors nothing.
    Percent and fraction together, or either out of 0..1, is refused (see
    below). The upstream layer sends the copy without ever holding the
    client's request (see package upstream). CORS, ExternalAuth,
    ExtensionRef, and filter types other than the header modifiers on a
    backendRef are not supported: a rule with one answers 500 as a whole,
    as the spec requires for a filter that cannot be applied (never
    skipped silently), and the route is PartiallyInvalid=True
    UnsupportedValue (Accepted stays True for the rest), or
    Accepted=False UnsupportedValue when every match of every rule was
    dropped. Values the spec says make a route not accepted (an unknown
    filter type, redirect scheme, status code or path modifier type;
    ReplacePrefixMatch beside a match that is not PathPrefix; a mirror's
    percent with a fraction, or a share out of range; a redirect
    beside a URLRewrite or backendRefs; a hostname that is not a DNS name;
    a header name that is not one; bad timeouts) make it Accepted=False UnsupportedValue: that rule
    answers 500, the route's other rules are still served (a not accepted
    route is not counted in attachedRoutes). Each is also an
    UnsupportedValue problem.
  - Timeouts: request becomes the upstream layer's request-timeout (the
    whole request, retries and response body included) and backendRequest
    its response-header-timeout (each attempt, until the pod's response
    headers: the upstream layer has no per-attempt bound on the body,
    which request covers), in the same bulkheadUpstream filter the
    Ingress annotations use; "0s" disables either; a timeout answers 504.
    A value that is not a Gateway API duration, one above 24h (the
    upstream layer's limit), or a backendRequest above a non-zero request
    is refused (see above). Retry and session persistence (experimental)
    are ignored.
  - backendRefs: core Services only (else InvalidKind); in another
    namespace only with a ReferenceGrant there from HTTPRoutes of the
    route's namespace to that Service or all Services (else
    RefNotPermitted); a missing Service or port is BackendNotFound. The
    first such failure is ResolvedRefs=False on every parent, and a
    problem. Each backendRef with a weight above 0 gets its own route,
    with skipper's TrafficSegment(lo, hi) splitting the rule's traffic by
    weight (skipper draws one number per request, so exactly one share
    matches); an invalid backend's share answers 500; weight 0 gets no
    route; a rule without backendRefs, or with all weights 0, answers 500.

HTTPS listeners. TLS mode Terminate only (Passthrough is for TLSRoute:
Accepted=False UnsupportedValue), and not when the Gateway asks for client
certificates for the listener's port (spec.tls.frontend validation:
UnsupportedValue, since serving without would let any client through).
Each tls.certificateRef must be a core Secret (group "" or "core", kind
Secret; else ResolvedRefs=False InvalidCertificateRef), in the Gateway's
namespace or in one whose ReferenceGrant allows Gateways of the Gateway's
namespace to refer to it or to all Secrets (else RefNotPermitted), that
exists in Snapshot.Secrets, of type kubernetes.io/tls, whose tls.crt and
tls.key crypto/tls accepts as a key pair (else InvalidCertificateRef,
with the parser's reason; validity dates are not checked: an expired
certificate is served, as the Secret says); no certificateRef is
InvalidCertificateRef too. Such a listener stays Accepted (its spec is
valid) but is not Programmed (Invalid) and not served: HTTPRoutes attach
to it (they count in its attachedRoutes and are Accepted, as the spec
wants) but none of their routes is served on it, and it is a problem of its Gateway (kind Gateway, reason the
ResolvedRefs one); the Gateway's other listeners are served. Every
certificateRef is checked, the first is served: several certificates per
listener (RSA beside ECDSA) are not supported, and a second one that does
not resolve makes the listener unresolved all the same. tls.options are
ignored. HTTPRoutes attach to HTTPS listeners as to HTTP ones, their
routes keyed by the listener's port (BulkheadGatewayPort). A served HTTPS
listener whose hostname overlaps another served HTTPS listener's on the
same port of the same Gateway ("*.foo.com" and "a.foo.com"; no hostname
overlaps every other) gets OverlappingTLSConfig=True OverlappingHostnames
(never set False). Requests are routed by Host alone, whichever listener's
certificate the handshake used; misdirected requests are not answered 421.

Table.Certificates is one Certificate per served HTTPS listener (besides
those of Ingress TLS, see "TLS for Ingresses"), the PEM
tls.crt and tls.key copied, sorted by port and then the most specific
hostname first. Table.CertificateFor(port, serverName), or a
CertificateIndex built once per table, picks the one for a ClientHello as
the spec's hostname matching does: an exact hostname, else the longest
wildcard ("*.foo.com" matches one or more labels before "foo.com"), else
a listener without hostname; without SNI only a listener without
hostname; none is a failed handshake. Listeners of several Gateways with
one port and hostname: the first Gateway by namespace and name serves.
A Translator checks a Secret's key pair once per Secret object (they are
immutable in informer caches). Snapshot.Secrets hold private keys: clear
their data before a snapshot leaves the cluster in a bug report.

Hosts in the tree. An exact hostname uses its host key, as an Ingress rule
does; no hostname uses the host-less "/:parent/:label". A wildcard
"*.foo.com" is emitted twice: under "/foo.com/:label" for the names one
label deeper, exactly as an Ingress wildcard, and under the host-less key
with a case-insensitive Host regexp that requires two or more labels before
"foo.com", for the deeper names (the tree's host key holds only the first
label, so nothing static can). The deeper names therefore rank with the
host-less rules: for "a.b.foo.com", a host-less rule with a longer path
wins over "*.foo.com", where the spec would prefer the wildcard; on the
same path the wildcard wins (its weight, below). One-label names, the
common case, follow the spec fully. Listeners on one port share the tree;
different ports are kept apart by BulkheadGatewayPort.

Precedence. Skipper's tree already orders by host class and path length
(longest first, with fall-through). A RegularExpression match is placed
at its host's root node (PathSubtree of the host key), where the only
other path is PathPrefix "/" (and Exact "/"): it ranks after Exact and
after every longer PathPrefix of its host (their nodes are tried first),
and before PathPrefix "/" (the spec leaves regular expression precedence
to the implementation). Within one tree node, skipper sorts the routes
by weight (the Weight() value plus one per other predicate; Method,
Host, BulkheadPathRegexp, each header, query and port predicate count
one, TrafficSegment none) with a stable sort over an insertion order
that is not deterministic. So the Gateway routes of each node are ranked
by the spec's order (most specific host; Exact, then regular expression,
then prefix; longer path, method, more headers, more query params,
oldest route, namespace/name, rule and match order) and given total
weights 64 apart in that order (the Weight() argument is the total minus
the other predicates; 64 exceeds the most a route's other predicates can
add), the last one 64: above any Ingress route of the same node (0, or 1
for Exact), which happens only on host-less and deep-wildcard nodes. The
shares of one rule's TrafficSegment split share a weight; they never
match together.

Listener isolation. A request belongs to the most specific listener of
a Gateway on its port whose hostname matches its host (exact, then the
longest wildcard, then none), and only that listener's routes answer it.
A route of a listener that more specific listeners of its Gateway shadow
carries BulkheadListenerIsolation(<their hostnames>) (gatewayisolation.go;
only those that can match a host of the route's vhost), matching hosts
none of them matches; it counts one toward the route's weight like any
predicate.

Gateway addresses. A per-node router has one address; Gateways on one
port with the same hostnames are then indistinguishable. With
Options.GatewayAddresses (a pool of the router's own IPs) each of our
Gateways gets one: it keeps the pool address its status already shows
unless an older Gateway (creation time, then namespace/name) shows it
too, the others take the lowest free one, oldest first, so an address
stays with its Gateway while it lives; beyond the pool's size Gateways
share addresses round-robin. That address is the Gateway's only status
address (instead of PublishAddresses), and its routes carry it as
BulkheadGatewayPort(<port>, "<address>"), matching only requests whose
connection was accepted on that local address (WithGatewayConn).

Listener ports. Every Gateway route carries BulkheadGatewayPort(<listener
port>) (gatewayport.go). The proxy must put the Gateway port a request
came in on into its context with WithGatewayPort (and skipper's routing
context, skrouting.NewContext, which skipper's proxy adds and
TrafficSegment needs) before the lookup, and register the
NewGatewayPortSpec, NewPathRegexpSpec, TrafficSegment and QueryParam
predicates and the NewRequestHeadersSpec, NewResponseHeadersSpec,
NewRedirectSpec and NewRewriteSpec filters; a request without a port
matches no Gateway route (fail closed). Route IDs are "gw__<namespace>__<route>__
<rule name or ruleN>__m<match>__<gateway namespace>__<gateway>__<listener>
__<host>__<bN, redirect or fail>__<hash>", the host "deep_wildcard_..." for the
deeper-names copy of a wildcard; a GRPCRoute's start with "grpc" instead.

# GRPCRoute

A GRPCRoute (grpcroute.go) is translated as the HTTPRoute it means on the
wire, a gRPC call being an HTTP/2 POST to "/<service>/<method>", and then
goes through the HTTPRoute code above: parentRefs, listeners, hostnames,
status, ReferenceGrants, backendRefs, weights, precedence and emission are
shared. Route.Gateway.Kind is "GRPCRoute" (HTTPRoute then names the
GRPCRoute; empty for HTTPRoutes, so stored tables read as before); its
status is in Table.GRPCRoutes, its problems of kind GRPCRoute.

  - Method matches (type Exact by default): service and method become the
    Exact path "/<service>/<method>"; a service alone the PathPrefix
    "/<service>" (element-wise: each of its methods); a method alone
    (implementation-specific) the path regexp "/[^/]+/<method>";
    RegularExpression the path regexp "/(?:<service>)/(?:<method>)", an
    empty one "[^/]+" (RE2, anchored, case-sensitive, as BulkheadPathRegexp
    matches). A regexp that does not compile, or a method match with
    neither, drops its match (PartiallyInvalid, a problem), and a rule
    left without matches is dropped, as for HTTPRoute. No match: every
    call. Precedence is then HTTPRoute's: Exact, then regular expressions
    at the host's root, then longer prefixes, so service and method beat
    the service alone, which beats the method alone (the spec's "most
    characters of a matching service, then method"); more header matches
    first; among regular expressions the older route, then rule and match
    order. A call no rule takes is skipper's 404, which gRPC clients read
    as UNIMPLEMENTED.
  - Header matches Exact and RegularExpression (first of a name), as
    HTTPRoute's. Filters RequestHeaderModifier, ResponseHeaderModifier and
    RequestMirror as HTTPRoute's (gRPC metadata are headers), also on a
    backendRef (header modifiers only); ExtensionRef is not supported (the
    rule is not served, PartiallyInvalid); any other type is refused
    (Accepted=False UnsupportedValue). The upstream layer mirrors only
    bodies of known length, which a gRPC client does not send: a mirror of
    a GRPCRoute copies nothing in practice.
  - Backends are gRPC: a GRPCRoute's bulkheadBackend always has
    "protocol=h2c" (HTTP/2 with prior knowledge, as the spec says to
    assume for GRPCRoute backends) unless the Service port's appProtocol
    asks for TLS ("protocol=tls": HTTP/2 through ALPN).
  - A rule or share that cannot be served (backend not found or not
    permitted, unsupported filter, all weights 0) answers gRPC UNAVAILABLE
    (status(200) and bulkheadResponseHeaders setting content-type
    application/grpc, grpc-status 14 and grpc-message on a <shunt>: a
    trailers-only response), as the spec requires; an HTTP 500 would read
    as UNKNOWN. Messages say "answers UNAVAILABLE" where HTTPRoute's say
    "answers 500".
  - Between kinds: an HTTPRoute and a GRPCRoute attached to the same
    listener with intersecting hostnames (after intersection with the
    listener's) are not merged; exactly one is accepted there, the older
    (creationTimestamp), then the first by "namespace/name". The other is
    Accepted=False NotAllowedByListeners on that parentRef when it loses
    on every listener the parentRef attaches it to, and serves nothing on
    those it lost; a route without hostnames intersects every other.
    Routes of one kind are never in conflict with each other this way.

# Names and order

Route IDs are built from namespace, name, host, path and path type,
sanitised to skipper's identifier syntax and followed by an FNV-1a hash of
the raw values. Routes are sorted by ID,
problems by kind, namespace, name, reason and message.
*/
package routing
