package routing

import (
	"fmt"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
)

// pathKind is how a rule path matches. ImplementationSpecific is parsed as
// prefixMatch (see doc.go), so it also conflicts with Prefix on the same path.
type pathKind uint8

const (
	prefixMatch pathKind = iota
	exactMatch
)

// pathMatch is the meaning of a rule path, normalised so that equal
// meanings compare equal: an exact path is kept as written, a prefix loses
// its trailing slash ("/foo/" and "/foo" are the same prefix).
type pathMatch struct {
	kind pathKind
	path string
}

// parsePathMatch validates a rule path and its type. It also returns the
// effective path type name: a missing pathType (invalid in networking/v1)
// is read as ImplementationSpecific, its old default.
func parsePathMatch(path string, pathType *networkingv1.PathType) (pathMatch, string, error) {
	typ := networkingv1.PathTypeImplementationSpecific
	if pathType != nil {
		typ = *pathType
	}
	var kind pathKind
	switch typ {
	case networkingv1.PathTypeExact:
		kind = exactMatch
	case networkingv1.PathTypePrefix, networkingv1.PathTypeImplementationSpecific:
		kind = prefixMatch
	default:
		return pathMatch{}, string(typ), fmt.Errorf("unknown pathType %q", typ)
	}
	if path == "" {
		path = "/"
	}
	if err := checkRoutablePath(path); err != nil {
		return pathMatch{}, string(typ), err
	}
	if kind == prefixMatch && path != "/" {
		path = strings.TrimSuffix(path, "/")
	}
	return pathMatch{kind: kind, path: path}, string(typ), nil
}

// checkRoutablePath rejects paths skipper would read differently from the
// Ingress: ':' and '*' start wildcards in skipper's path tree (and are
// refused inside a segment), and a path that is not clean is cleaned by
// skipper, so it would match another path than the one written, while
// requests are cleaned before matching, so as written it would never match.
func checkRoutablePath(path string) error {
	switch {
	case path[0] != '/':
		return fmt.Errorf("path is not absolute")
	case strings.ContainsAny(path, ":*"):
		return fmt.Errorf("path contains ':' or '*', which skipper reads as wildcards")
	case strings.Contains(path, "//"),
		strings.Contains(path, "/./"),
		strings.Contains(path, "/../"),
		strings.HasSuffix(path, "/."),
		strings.HasSuffix(path, "/.."):
		return fmt.Errorf("path is not clean (has an empty, '.' or '..' segment)")
	}
	return nil
}
