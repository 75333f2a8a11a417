/*
Package routing translates a snapshot of Kubernetes objects (IngressClasses,
Ingresses, Services, EndpointSlices) into a skipper route table, and provides
the one custom predicate those routes use (VirtualHost, see HostMatcher).

# Place in the data flow

The data client builds a Snapshot from its informer caches and calls
Translate; skipper's routing loads the resulting Table. This package is
pure: Translate uses no clients, globals, clock or logging, does not modify
its input, gives byte-identical output for the same objects in any order,
and never panics; a bad object becomes a Problem and everything else is
still translated. It imports nothing of bulkhead; it imports skipper (eskip,
routing, predicates) and the Kubernetes API types only. Skipper's routing
package is imported as skrouting.

# Which Ingresses are served

An Ingress is ours when spec.ingressClassName names an IngressClass whose
spec.controller is Options.ControllerName; else, when ingressClassName is
unset, when the legacy annotation kubernetes.io/ingress.class names such a
class; else, when neither is set, when one of our classes is annotated
ingressclass.kubernetes.io/is-default-class: "true". Other Ingresses are
ignored silently. TLS sections are ignored (TLS ends at the load balancer).

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
    clean ("//", "." or ".." segments; skipper cleans request paths, so such
    a rule could never match as written) is an InvalidPath problem; that
    path is skipped.

# Hosts and precedence

Hosts are case-insensitive; the port and a trailing dot of the Host header
are ignored. "*.foo.com" matches exactly one more label: "bar.foo.com", not
"baz.bar.foo.com" nor "foo.com". A rule without host matches every host.

A request goes to the best rule that matches it, where host class comes
first (exact host, then wildcard, then host-less) and path second. So when
the rules of the request's most specific host do not match its path, it
falls through to the wildcard rules and then to the host-less ones: with
A = "foo.com" Prefix "/" and B = host-less Prefix "/api", "foo.com/api/x"
goes to A although B's path is longer, and "bar.com/api/x" to B; with
A = "foo.com" Prefix "/a" and B = host-less Prefix "/b", "foo.com/b" goes
to B.

On skipper's matcher (the longest path first, then backtracking to shorter
ones) this is built as follows. Every rule route carries
VirtualHost("<vhost>"), and each request belongs to exactly one vhost: its
host if that has routes, else the covering "*." wildcard if that has
routes, else "" (see HostMatcher). Each vhost then holds its own rules plus
copies of the less specific rules its requests may fall through to (an
exact vhost: its wildcard's and the host-less ones; a wildcard vhost: the
host-less ones), except where a more specific rule of that vhost already
matches every request the copy would (the copy's path lies under, or on, a
Prefix path of the vhost, or both are the same Exact path): there host
precedence says the copy must lose, and a longer path would make it win.
Within one vhost the longest path then gives the right answer. Exact routes
carry Weight(1), so that on a path where an Exact and a Prefix route of the
same vhost meet, the Exact one is tried first. Skipper's IgnoreTrailingSlash
option must stay off.

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
terminating. Addresses are deduplicated across slices and sorted, and the
route balances over them with roundRobin.

Objects that share a kind, namespace and name in one snapshot (which
informer caches never produce) are all ignored with a DuplicateObject
problem: keeping one would make the output depend on the input order.

# Names and order

Route IDs are built from namespace, name, host, path and path type (and
the vhost a copy serves), sanitised to skipper's identifier syntax and
followed by an FNV-1a hash of the raw values. Routes are sorted by ID,
problems by kind, namespace, name, reason and message.
*/
package routing
