package upstream

import (
	"github.com/zalando/skipper/filters"
)

const (
	// OptInFilterName is the skipper filter that allows retrying
	// non-idempotent requests (POST, PATCH, ...) of its route on 502/503/504
	// and resets, e.g. `bulkheadRetryNonIdempotent()`. Use it only for
	// backends whose writes are idempotent (idempotency keys, upserts).
	OptInFilterName = "bulkheadRetryNonIdempotent"
	// OptInHeader carries the opt-in from the filter to the round tripper.
	// Its value is a per-process random secret, so a client sending the
	// header opts in nothing; the round tripper always removes it before
	// the request leaves.
	OptInHeader = "X-Bulkhead-Retry-Non-Idempotent"
)

type optInSpec struct{ value string }

type optInFilter struct{ value string }

func (s optInSpec) Name() string { return OptInFilterName }

func (s optInSpec) CreateFilter(args []interface{}) (filters.Filter, error) {
	if len(args) != 0 {
		return nil, filters.ErrInvalidFilterParameters
	}
	return optInFilter(s), nil
}

func (f optInFilter) Request(ctx filters.FilterContext) {
	ctx.Request().Header.Set(OptInHeader, f.value)
}

func (optInFilter) Response(filters.FilterContext) {}
