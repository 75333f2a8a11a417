package routing

import (
	"fmt"
	"net/http"
	"regexp"

	skrouting "github.com/zalando/skipper/routing"
)

// PathRegexpName is the predicate of a Gateway API RegularExpression path
// match: BulkheadPathRegexp("/users/[0-9]+") matches when the whole
// request path, cleaned as the other path matches see it and without the
// host key PrepareRequest put in front of it, matches the expression (Go
// RE2 syntax, anchored at both ends, case-sensitive). Skipper's PathRegexp
// would see the host key as well, and an expression's own "^" could not
// be anchored after it; this one strips the key first.
//
// A request PrepareRequest left alone matches no such route (there is no
// key to strip, and a Gateway route needs one anyway).
const PathRegexpName = "BulkheadPathRegexp"

// NewPathRegexpSpec returns the spec of the BulkheadPathRegexp predicate,
// for skipper's predicate registry.
func NewPathRegexpSpec() skrouting.PredicateSpec { return pathRegexpSpec{} }

type pathRegexpSpec struct{}

func (pathRegexpSpec) Name() string { return PathRegexpName }

func (pathRegexpSpec) Create(args []any) (skrouting.Predicate, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("%s: want one regular expression, got %d arguments", PathRegexpName, len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("%s: %v is not a string", PathRegexpName, args[0])
	}
	rx, err := compilePathRegexp(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", PathRegexpName, err)
	}
	return pathRegexpPredicate{rx}, nil
}

// compilePathRegexp anchors a path expression at both ends: the group
// keeps an alternation's branches inside the anchors. The expression must
// compile alone, so that it cannot close the group ("a)|(.*").
func compilePathRegexp(s string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(s); err != nil {
		return nil, err
	}
	return regexp.Compile(`^(?:` + s + `)$`)
}

type pathRegexpPredicate struct{ rx *regexp.Regexp }

func (p pathRegexpPredicate) Match(r *http.Request) bool {
	if r.Pattern == "" || r.URL == nil {
		return false
	}
	path := r.URL.Path
	i := nthSlash(path, 3)
	if i < 0 {
		return false
	}
	return p.rx.MatchString(path[i:])
}
