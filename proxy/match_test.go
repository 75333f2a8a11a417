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

// Match finds the route ServeHTTP serves, through the same preparation
// (the hook rewrites the path, the shard is chosen after it) and the same
// live table; a request ServeHTTP refuses before the lookup is refused
// with its status.
func TestMatchIsServeHTTPsLookup(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "pod")
	}))
	defer backend.Close()
	// Shard 0 holds the /hooked routes, shard 1 a route of the same path
	// that must never be found for them.
	shard0, err := eskip.Parse(`
		canary: Path("/hooked/x") && Header("X-Canary", "yes") -> undoHook() -> "` + backend.URL + `";
		main: Path("/hooked/x") -> undoHook() -> <shunt>;
		forwarded: Path("/hooked/proto") && Header("X-Forwarded-Proto", "https") -> undoHook() -> <shunt>;`)
	if err != nil {
		t.Fatal(err)
	}
	shard1, _ := eskip.Parse(`other: Path("/hooked/x") -> <shunt>;`)
	dcs := []*testdataclient.Client{testdataclient.New(shard0), testdataclient.New(shard1)}
	for _, dc := range dcs {
		defer dc.Close()
	}
	px := New(Options{
		Shards:           2,
		ShardDataClients: func(i int) []skrouting.DataClient { return []skrouting.DataClient{dcs[i]} },
		ShardOf: func(r *http.Request) int {
			if strings.HasPrefix(r.URL.Path, "/hooked/") {
				return 0
			}
			return 1
		},
		Filters:        []filters.Spec{undoHookSpec{}},
		PrepareRequest: func(r *http.Request) { r.URL.Path = "/hooked" + r.URL.Path },
		MaxHeaderCount: 5,
	})
	defer px.Close()
	<-px.FirstLoad()

	match := func(path string, headers ...string) (string, int, *http.Request) {
		r := httptest.NewRequest(http.MethodGet, "http://example.org"+path, nil)
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Add(headers[i], headers[i+1])
		}
		rt, refused := px.Match(r)
		if rt == nil {
			return "", refused, r
		}
		return rt.Id, refused, r
	}
	if id, _, r := match("/x", "X-Canary", "yes"); id != "canary" || r.URL.Path != "/hooked/x" {
		t.Errorf("with the header: %q (path %q), want canary on the prepared path", id, r.URL.Path)
	}
	if id, _, _ := match("/x"); id != "main" {
		t.Errorf("without the header: %q, want main", id)
	}
	// The forwarded headers are set as ServeHTTP sets them: the client's
	// X-Forwarded-Proto is not believed from an untrusted peer.
	if id, _, r := match("/proto", "X-Forwarded-Proto", "https"); id != "" || r.Header.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("a client's X-Forwarded-Proto: matched %q, header %q; want no match and http", id, r.Header.Get("X-Forwarded-Proto"))
	}
	if id, _, _ := match("/nothing"); id != "" {
		t.Errorf("no route: got %q", id)
	}
	if id, refused, _ := match("/x", "A", "1", "B", "2", "C", "3", "D", "4", "E", "5", "F", "6"); id != "" || refused != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("too many headers: %q %d, want no lookup and 431", id, refused)
	}

	// ServeHTTP agrees: the canary route reaches the pod.
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "http://example.org/x", nil)
	r.Header.Set("X-Canary", "yes")
	px.ServeHTTP(w, r)
	if w.Code != http.StatusOK || w.Body.String() != "pod" {
		t.Fatalf("ServeHTTP: %d %q", w.Code, w.Body.String())
	}
}
