package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/filters"
	skrouting "github.com/zalando/skipper/routing"
	"github.com/zalando/skipper/routing/testdataclient"
)

// A hook that rewrites the path before the lookup, and a custom filter
// that undoes it: the routes match the rewritten path, the backend gets the
// original one.
func TestPrepareRequestHookAndCustomFilters(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	defer backend.Close()

	routes, err := eskip.Parse(`hooked: Path("/hooked/x") -> undoHook() -> "` + backend.URL + `";`)
	if err != nil {
		t.Fatal(err)
	}
	dc := testdataclient.New(routes)
	defer dc.Close()

	var sawRequestID bool
	px := New(Options{
		DataClients: []skrouting.DataClient{dc},
		Filters:     []filters.Spec{undoHookSpec{}},
		PrepareRequest: func(r *http.Request) {
			sawRequestID = r.Header.Get(HeaderRequestID) != "" // runs after setForwardedHeaders
			r.URL.Path = "/hooked" + r.URL.Path
		},
	})
	defer px.Close()
	<-px.FirstLoad()

	w := httptest.NewRecorder()
	px.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://example.org/x", nil))
	if w.Code != http.StatusOK || w.Body.String() != "/x" {
		t.Fatalf("got %d %q, want 200 and the backend seeing /x", w.Code, w.Body.String())
	}
	if !sawRequestID {
		t.Error("PrepareRequest ran before the forwarded headers were set")
	}
}

// Without the hook the same route does not match, and without the filter
// registered skipper rejects the route: both really are in use.
func TestWithoutHookOrFilter(t *testing.T) {
	routes, _ := eskip.Parse(`hooked: Path("/hooked/x") -> undoHook() -> <shunt>;`)
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"no hook", Options{Filters: []filters.Spec{undoHookSpec{}}}},
		{"no filter", Options{PrepareRequest: func(r *http.Request) { r.URL.Path = "/hooked" + r.URL.Path }}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dc := testdataclient.New(routes)
			defer dc.Close()
			tc.o.DataClients = []skrouting.DataClient{dc}
			px := New(tc.o)
			defer px.Close()
			<-px.FirstLoad()
			w := httptest.NewRecorder()
			px.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://example.org/x", nil))
			if w.Code != http.StatusNotFound {
				t.Fatalf("got %d, want 404", w.Code)
			}
		})
	}
}

type undoHookSpec struct{}

func (undoHookSpec) Name() string { return "undoHook" }

func (undoHookSpec) CreateFilter([]any) (filters.Filter, error) { return undoHook{}, nil }

type undoHook struct{}

func (undoHook) Request(ctx filters.FilterContext) {
	u := ctx.Request().URL
	u.Path = strings.TrimPrefix(u.Path, "/hooked")
}

func (undoHook) Response(filters.FilterContext) {}
