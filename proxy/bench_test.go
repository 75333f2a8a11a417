package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/zalando/skipper/eskip"
	skrouting "github.com/zalando/skipper/routing"
	"github.com/zalando/skipper/routing/testdataclient"
)

// BenchmarkServeHTTP is one GET through the handler to a local backend:
// what the client-facing checks (limits, Connection-listed headers, trust,
// the client writer) cost next to skipper's proxying.
func BenchmarkServeHTTP(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "2")
		io.WriteString(w, "ok")
	}))
	defer backend.Close()
	routes, _ := eskip.Parse(`r: * -> "` + backend.URL + `";`)
	dc := testdataclient.New(routes)
	defer dc.Close()
	px := New(Options{DataClients: []skrouting.DataClient{dc}})
	defer px.Close()
	<-px.FirstLoad()
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodGet, "http://shop.example/cart", nil)
		r.RemoteAddr = "192.0.2.7:51234"
		r.Header.Set("User-Agent", "bench")
		r.Header.Set("Accept", "*/*")
		w := httptest.NewRecorder()
		px.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}
