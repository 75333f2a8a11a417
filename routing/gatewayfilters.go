package routing

import (
	"net/http"

	"github.com/zalando/skipper/filters"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// The header filters of Gateway API routes. Skipper's own setRequestHeader
// and friends expand "${...}" templates in their values, and a user's
// header value must reach the pod as written: these filters take values
// literally. Arguments are triples (operation, name, value), operation
// "set" (replace), "add" (another value) or "remove" (value "").
const (
	RequestHeadersName  = "bulkheadRequestHeaders"
	ResponseHeadersName = "bulkheadResponseHeaders"
)

// NewRequestHeadersSpec and NewResponseHeadersSpec return the filter specs
// for skipper's filter registry.
func NewRequestHeadersSpec() filters.Spec { return headersSpec{name: RequestHeadersName} }
func NewResponseHeadersSpec() filters.Spec {
	return headersSpec{name: ResponseHeadersName, response: true}
}

type headersSpec struct {
	name     string
	response bool
}

func (s headersSpec) Name() string { return s.name }

type headerOp struct {
	op, name, value string
}

func (s headersSpec) CreateFilter(args []any) (filters.Filter, error) {
	if len(args) == 0 || len(args)%3 != 0 {
		return nil, filters.ErrInvalidFilterParameters
	}
	f := headersFilter{response: s.response}
	for i := 0; i < len(args); i += 3 {
		op, ok1 := args[i].(string)
		name, ok2 := args[i+1].(string)
		value, ok3 := args[i+2].(string)
		if !ok1 || !ok2 || !ok3 || name == "" || op != "set" && op != "add" && op != "remove" {
			return nil, filters.ErrInvalidFilterParameters
		}
		f.ops = append(f.ops, headerOp{op, http.CanonicalHeaderKey(name), value})
	}
	return f, nil
}

type headersFilter struct {
	response bool
	ops      []headerOp
}

func (f headersFilter) apply(h http.Header) {
	for _, o := range f.ops {
		switch o.op {
		case "set":
			h[o.name] = []string{o.value}
		case "add":
			h[o.name] = append(h[o.name], o.value)
		case "remove":
			delete(h, o.name)
		}
	}
}

func (f headersFilter) Request(ctx filters.FilterContext) {
	if !f.response {
		f.apply(ctx.Request().Header)
	}
}

func (f headersFilter) Response(ctx filters.FilterContext) {
	if f.response {
		f.apply(ctx.Response().Header)
	}
}

// headerFilterArgs turns an HTTPHeaderFilter into the arguments of a
// headers filter, in the spec's order (set, add, remove); nil when empty.
func headerFilterArgs(m *gatewayv1.HTTPHeaderFilter) []any {
	if m == nil {
		return nil
	}
	var args []any
	for _, h := range m.Set {
		args = append(args, "set", string(h.Name), h.Value)
	}
	for _, h := range m.Add {
		args = append(args, "add", string(h.Name), h.Value)
	}
	for _, n := range m.Remove {
		args = append(args, "remove", n, "")
	}
	return args
}
