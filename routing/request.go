package routing

import (
	"net/http"
	"strings"

	"github.com/dimfeld/httppath"
	"github.com/zalando/skipper/filters"
)

// RestorePathName is the name of the filter that undoes PrepareRequest.
// Every route Translate emits carries it as its first filter.
const RestorePathName = "bulkheadRestorePath"

// PrepareRequest turns a request into the form the emitted routes match:
// its host becomes the first two segments of its path (see doc.go, "Hosts
// and precedence"). The proxy handler calls it on every request, before
// skipper's route lookup; the bulkheadRestorePath filter, first on every
// route, undoes it before anything else sees the request.
//
// It sets r.URL.Path to "/<parent>/<label>" + path, where <parent> and
// <label> come from r.Host (lowercased, without port and trailing dot; see
// requestHostParts) and path is r.URL.Path cleaned as skipper cleans it
// (httppath.Clean) when it needs cleaning. Cleaning comes first, so that
// ".." segments cannot climb out of the path into the host key and pick
// another host's routes; skipper cleans the whole key again, which then
// changes nothing. An empty path is routed as "/". r.URL.RawPath, when
// set, gets the same prefix, uncleaned, so that Path and RawPath stay
// consistent. r.Host itself is left alone: the pod sees it as sent.
//
// The original path is kept in r.Pattern until the filter restores it.
// r.Pattern is the net/http field in which ServeMux records the pattern
// that matched; bulkhead's proxy listener does not use a ServeMux, so the
// field is free, and unlike the request context it travels with the
// shallow copies of the request that skipper makes (Request.WithContext)
// at no cost. PrepareRequest owns the field: it clears it when it leaves a
// request alone (a path that does not start with "/", like "OPTIONS *",
// which then can only match the default backend).
//
// Call it once per request: a second call would prefix the key again. In
// the common case (a clean path, with or without RawPath, any host) it
// makes one allocation, for the new path and raw path together; the host is
// lowered while it is copied into it. A path to clean costs httppath.Clean's
// two more.
func PrepareRequest(r *http.Request) {
	r.Pattern = ""
	u := r.URL
	if u == nil {
		return
	}
	path := u.Path
	if path == "" {
		path = "/"
	} else if path[0] != '/' {
		return
	}
	clean := path
	if needsClean(path) {
		clean = httppath.Clean(path)
	}
	parent, label, upper := requestHostParts(r.Host)
	raw := u.RawPath

	prefixLen := 2 + len(parent) + len(label)
	pathLen := prefixLen + len(clean)
	size := pathLen
	if raw != "" {
		size += prefixLen + len(raw)
	}
	// One buffer for Path and RawPath: the Builder's String does not copy.
	var b strings.Builder
	b.Grow(size)
	b.WriteByte('/')
	writeLowerASCII(&b, parent, upper)
	b.WriteByte('/')
	writeLowerASCII(&b, label, upper)
	b.WriteString(clean)
	if raw != "" {
		b.WriteString(b.String()[:prefixLen])
		b.WriteString(raw)
	}
	s := b.String()

	r.Pattern = path
	u.Path = s[:pathLen]
	if raw != "" {
		u.RawPath = s[pathLen:]
	}
}

// RestoreRequest undoes PrepareRequest: r.URL.Path gets back the original
// path from r.Pattern, which is cleared, and the host key prefix is
// removed from r.URL.RawPath. A request PrepareRequest left alone (or that
// was never prepared, or already restored) is not changed. The
// bulkheadRestorePath filter calls it.
func RestoreRequest(r *http.Request) {
	original := r.Pattern
	if original == "" || r.URL == nil {
		return
	}
	r.Pattern = ""
	u := r.URL
	// The prefix is everything before the third '/' of the key, the same
	// one that PrepareRequest put before RawPath.
	prefix := ""
	if i := nthSlash(u.Path, 3); i > 0 {
		prefix = u.Path[:i]
	}
	u.Path = original
	if prefix != "" && strings.HasPrefix(u.RawPath, prefix) {
		u.RawPath = u.RawPath[len(prefix):]
	}
}

// nthSlash returns the index of the nth '/' of s, or -1.
func nthSlash(s string, n int) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			if n--; n == 0 {
				return i
			}
		}
	}
	return -1
}

// NewRestorePathSpec returns the skipper filter specification of
// bulkheadRestorePath(). Register it in the filter registry of the skipper
// routing that loads Translate's routes: every emitted route uses it, and
// skipper rejects routes with unknown filters.
//
// The filter restores the request PrepareRequest rewrote, so that filters
// after it, and the pod, see exactly the original path and raw path. This
// works because, in skipper v0.27.57's proxy (proxy/proxy.go):
//
//   - ServeHTTP makes the context from the handler's request: a shallow
//     copy (r.WithContext, line 1865, then newContext, line 1867 and
//     proxy/context.go line 147) that shares r.URL and carries r.Pattern;
//   - the route lookup matches that request (do, line 1360; lookupRoute,
//     line 1042), so it sees the host key;
//   - the filters then run on ctx.Request() (applyFiltersToRequest, lines
//     985-990: each filter gets another shallow copy, and the copy after it
//     ran is kept, so its changes to fields and to the shared URL stay);
//   - the outgoing request is built after the filters, in mapRequest
//     (called at line 1080), from ctx.request (line 668) and its URL (line
//     672) via u.String() (line 697), which writes RawPath when it is a
//     valid encoding of Path, as before the rewrite.
func NewRestorePathSpec() filters.Spec { return restorePathSpec{} }

type restorePathSpec struct{}

func (restorePathSpec) Name() string { return RestorePathName }

func (restorePathSpec) CreateFilter(args []any) (filters.Filter, error) {
	if len(args) != 0 {
		return nil, filters.ErrInvalidFilterParameters
	}
	return restorePathFilter{}, nil
}

type restorePathFilter struct{}

func (restorePathFilter) Request(ctx filters.FilterContext) { RestoreRequest(ctx.Request()) }

func (restorePathFilter) Response(filters.FilterContext) {}
