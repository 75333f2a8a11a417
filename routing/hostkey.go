package routing

import (
	"net/http"
	"strings"

	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/predicates"
)

// The host key: how a host becomes the first two segments of the path that
// skipper's path tree matches (see doc.go, "Hosts and precedence"). This
// file is the contract between the routes Translate emits and the requests
// PrepareRequest rewrites; both sides use only the functions below.
//
// A DNS name splits at its first dot into its first label and the rest, the
// parent: "bar.foo.com" is ("foo.com", "bar"), and its key is
// "/foo.com/bar". A single-label name has the parent "~": "localhost" is
// "/~/localhost". A request host that is not a DNS name has the key "/~/~".
// DNS names never contain '~' or '/', so these keys cannot collide with
// each other nor with another host's.

const (
	// noParent is the parent segment of single-label hosts and, with
	// noLabel, the key of request hosts that are not DNS names.
	noParent = "~"
	noLabel  = "~"

	// The wildcard segments of rule keys: "*.foo.com" is
	// "/foo.com/:label" (any one label under foo.com), a host-less rule is
	// "/:parent/:label" (any host). Skipper hands their values to filters
	// as route parameters "parent" and "label"; no filter of ours uses
	// them.
	labelParam  = ":label"
	parentParam = ":parent"
)

// ruleHostKey returns the tree prefix of a rule's vhost (see ruleVHost): a
// static "/<parent>/<label>" for an exact host, "/<parent>/:label" for a
// wildcard, "/:parent/:label" for a host-less rule. The rule path is
// appended to it.
func ruleHostKey(vhost string) string {
	if vhost == anyHostVHostKey {
		return "/" + parentParam + "/" + labelParam
	}
	if parent, ok := strings.CutPrefix(vhost, wildcardPrefix); ok {
		return "/" + parent + "/" + labelParam
	}
	parent, label := splitHost(vhost)
	return "/" + parent + "/" + label
}

// splitHost splits a valid DNS name at its first dot.
func splitHost(host string) (parent, label string) {
	dot := strings.IndexByte(host, '.')
	if dot < 0 {
		return noParent, host
	}
	return host[dot+1:], host[:dot]
}

// requestHostParts finds the parent and label of a request's Host header.
// They are returned as substrings of host, in its original case; upper
// reports whether they contain an ASCII capital, to be lowered when the key
// is written. It never allocates.
//
// The port is dropped (an IPv6 literal, bracketed or not, is not a DNS
// name anyway), then one trailing dot. What is left must be a DNS name:
// 1 to 253 characters, labels of 1 to 63 letters, digits, '-' or '_' ('_'
// is not valid in rule hosts, but occurs in real host names, and a
// wildcard or host-less rule may serve it). Anything else (empty, IPv6,
// other characters, empty labels) gets ("~", "~"), which only host-less
// rules match.
func requestHostParts(host string) (parent, label string, upper bool) {
	if host == "" || host[0] == '[' {
		return noParent, noLabel, false
	}
	if colon := strings.LastIndexByte(host, ':'); colon >= 0 {
		if strings.IndexByte(host[:colon], ':') >= 0 {
			return noParent, noLabel, false // a bare IPv6 address
		}
		host = host[:colon]
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > maxDNSNameLen {
		return noParent, noLabel, false
	}
	firstDot, labelStart := -1, 0
	for i := 0; i <= len(host); i++ {
		if i == len(host) || host[i] == '.' {
			if n := i - labelStart; n == 0 || n > maxDNSLabelLen {
				return noParent, noLabel, false
			}
			if firstDot < 0 && i < len(host) {
				firstDot = i
			}
			labelStart = i + 1
			continue
		}
		switch c := host[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		case 'A' <= c && c <= 'Z':
			upper = true
		default:
			return noParent, noLabel, false
		}
	}
	if firstDot < 0 {
		return noParent, host, upper
	}
	return host[firstDot+1:], host[:firstDot], upper
}

// writeLowerASCII writes s lowercased; lower says whether s has capitals.
func writeLowerASCII(b *strings.Builder, s string, lower bool) {
	if !lower {
		b.WriteString(s)
		return
	}
	for i := 0; i < len(s); i++ {
		b.WriteByte(toLowerASCII(s[i]))
	}
}

// needsClean reports whether httppath.Clean would change p, a path that
// starts with '/': whether it has an empty, "." or ".." segment other than
// a final empty one (a trailing slash, which Clean keeps).
func needsClean(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] != '/' {
			continue
		}
		switch rest := p[i+1:]; {
		case rest == "":
		case rest[0] == '/':
			return true
		case rest[0] != '.':
		case len(rest) == 1 || rest[1] == '/':
			return true
		case rest[1] == '.' && (len(rest) == 2 || rest[2] == '/'):
			return true
		}
	}
	return false
}

// Shards. skipper rebuilds its whole matcher, and makes every route's
// filters again, whenever one route of its table changes: at 10,000
// Ingresses that was most of what an Ingress change cost. The proxy may
// therefore split the table into shards, one skipper table each, and look
// a request up in one of them; a change then rebuilds one shard.
//
// A request's shard is a hash of its host key (the first two segments of
// the path PrepareRequest wrote). A route with a static host key belongs
// to that key's shard only: no request of another shard can match it,
// since its key's segments are static and differ from the request's. A
// route that may match any host key, or several (a wildcard host's
// "/<parent>/:label", a host-less rule's "/:parent/:label", the default
// backend, which has no path at all), is in every shard. So each shard
// holds every route that could match its requests, and a lookup in it
// finds what a lookup in the whole table would.

// RouteShard is the shard of n a route belongs to, or -1 when it belongs
// to every shard.
func RouteShard(r *eskip.Route, n int) int {
	if n <= 1 {
		return 0
	}
	path := r.Path
	for _, p := range r.Predicates {
		if (p.Name == predicates.PathSubtreeName || p.Name == predicates.PathName) && len(p.Args) == 1 {
			if s, ok := p.Args[0].(string); ok {
				path = s
			}
		}
	}
	key := hostKeyOf(path)
	if key == "" || strings.IndexByte(key, ':') >= 0 || strings.IndexByte(key, '*') >= 0 {
		return -1
	}
	return shardOfKey(key, n)
}

// RequestShard is the shard of n a request prepared by PrepareRequest is
// looked up in. A request PrepareRequest left alone can match only routes
// that are in every shard: it gets shard 0.
func RequestShard(r *http.Request, n int) int {
	if n <= 1 || r.Pattern == "" || r.URL == nil {
		return 0
	}
	key := hostKeyOf(r.URL.Path)
	if key == "" {
		return 0
	}
	return shardOfKey(key, n)
}

// hostKeyOf is the host key ("/<parent>/<label>") a path starts with, or
// "" when it has none.
func hostKeyOf(path string) string {
	if len(path) == 0 || path[0] != '/' {
		return ""
	}
	i := nthSlash(path, 3)
	if i < 0 {
		if nthSlash(path, 2) < 0 {
			return ""
		}
		return path // "/<parent>/<label>" without a path after it
	}
	return path[:i]
}

// shardOfKey hashes a host key (FNV-1a, 32 bits) onto n shards.
func shardOfKey(key string, n int) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}
