package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zalando/skipper/eskip"

	"github.com/bulkhead-router/bulkhead/dataclient"
	"github.com/bulkhead-router/bulkhead/routing"
)

// TableSource gives the current route table and whether one exists yet.
type TableSource func() (routing.Table, bool)

// Options are the things the admin endpoint shows.
type Options struct {
	// Gatherer is the registry whose metrics /metrics exposes.
	Gatherer prometheus.Gatherer
	// Table is the route table /routes and /problems show.
	Table TableSource
	// Endpoints lists backends and their endpoints for /endpoints.
	Endpoints EndpointSource
	// Source is the route source's state (/status) and its deletion guard
	// (POST /guard/confirm).
	Source RouteSource
	// Explain, when set, serves GET /explain (with Table and Endpoints):
	// which route a described request takes, from which object, why the
	// other candidates lost, its backend's endpoints and policy.
	Explain *ExplainOptions
	// Token, if not empty, must come with every request as
	// "Authorization: Bearer <token>"; others are answered 401. Required
	// when the admin listener is not on loopback (-admin-token-file).
	Token []byte
}

// RouteSource is what the admin endpoint needs of the route source.
type RouteSource interface {
	Status() dataclient.Status
	ConfirmHold() bool
}

// Handler returns the admin endpoint's routes. It alone has the mutating
// POST /guard/confirm and the profiler; /metrics is here too, read-only,
// for operators and tests (Prometheus scrapes MetricsHandler instead).
func Handler(o Options) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics(o.Gatherer))
	mux.HandleFunc("GET /routes", func(w http.ResponseWriter, r *http.Request) { serveRoutes(w, r, o.Table) })
	mux.HandleFunc("GET /problems", func(w http.ResponseWriter, r *http.Request) { serveProblems(w, r, o.Table) })
	if o.Endpoints != nil {
		mux.HandleFunc("GET /endpoints", func(w http.ResponseWriter, r *http.Request) { serveEndpoints(w, r, o.Endpoints) })
	}
	if o.Explain != nil && o.Explain.Matcher != nil {
		mux.HandleFunc("GET /explain", func(w http.ResponseWriter, r *http.Request) { serveExplain(w, r, o.Table, o.Endpoints, o.Explain) })
	}
	if o.Source != nil {
		mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, o.Source.Status()) })
		mux.HandleFunc("POST /guard/confirm", func(w http.ResponseWriter, _ *http.Request) {
			if !o.Source.ConfirmHold() {
				http.Error(w, "nothing is held\n", http.StatusConflict)
				return
			}
			fmt.Fprintln(w, "applying the held update")
		})
	}
	// The profiler is for finding hot-path costs under load; it is safe here
	// because the admin listener is loopback-only, or needs a bearer token.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, "bulkhead admin\n"+
			"/routes         live route table: eskip, each route with its Ingress, HTTPRoute or GRPCRoute (JSON with Accept: application/json)\n"+
			"/problems       objects skipped or answering 503, with reasons (JSON with Accept: application/json)\n"+
			"/endpoints      per backend: each endpoint's EndpointSlice conditions, breaker state, in-flight requests, recent failures\n"+
			"/explain?url=URL[&method=M][&header=Name:value]...[&port=P][&remote=IP]\n"+
			"                which route a request takes and why, the other candidates and why they lost, its backend's endpoints and policy (JSON with Accept: application/json)\n"+
			"/status         API server connection, last sync, table source (apiserver or snapshot) and age, deletion guard hold\n"+
			"POST /guard/confirm  apply an update the deletion guard holds back\n"+
			"/metrics        Prometheus metrics\n"+
			"/debug/pprof/   Go profiler\n")
	})
	if len(o.Token) > 0 {
		return requireToken(o.Token, mux)
	}
	return mux
}

func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

func currentTable(w http.ResponseWriter, source TableSource) (routing.Table, bool) {
	if source == nil {
		http.Error(w, "no route source\n", http.StatusServiceUnavailable)
		return routing.Table{}, false
	}
	t, ok := source()
	if !ok {
		http.Error(w, "no route table yet: the route source has not synced\n", http.StatusServiceUnavailable)
	}
	return t, ok
}

// routeView is one route in the JSON listing: its origin and its eskip text.
type routeView struct {
	ID string `json:"id"`
	routing.Route
	Eskip string `json:"eskip"`
}

func serveRoutes(w http.ResponseWriter, r *http.Request, source TableSource) {
	t, ok := currentTable(w, source)
	if !ok {
		return
	}
	if wantsJSON(r) {
		views := make([]routeView, len(t.Routes))
		for i, rt := range t.Routes {
			views[i] = routeView{ID: rt.Eskip.Id, Route: *rt, Eskip: rt.Eskip.String()}
		}
		writeJSON(w, views)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	var b strings.Builder
	for _, rt := range t.Routes {
		fmt.Fprintf(&b, "// %s\n", origin(*rt))
		b.WriteString(eskip.Print(eskip.PrettyPrintInfo{Pretty: true}, rt.Eskip))
		b.WriteString("\n\n")
	}
	fmt.Fprint(w, b.String())
}

// origin is the one-line answer to "where does this route come from?".
func origin(rt routing.Route) string {
	host := rt.Host
	if host == "" {
		host = "*"
	}
	what := fmt.Sprintf("host %s path %s (%s)", host, rt.Path, rt.PathType)
	if rt.DefaultBackend {
		what = "defaultBackend"
	}
	if g := rt.Gateway; g != nil {
		rule := fmt.Sprintf("rule %d", g.Rule)
		if g.RuleName != "" {
			rule = fmt.Sprintf("rule %d (%s)", g.Rule, g.RuleName)
		}
		kind, failed := "httproute", "500"
		if g.Kind == "GRPCRoute" {
			kind, failed = "grpcroute", "gRPC UNAVAILABLE"
		}
		where := fmt.Sprintf("%s %s %s match %d, gateway %s listener %s port %d: %s",
			kind, g.HTTPRoute, rule, g.Match, g.Gateway, g.Listener, g.Port, what)
		switch {
		case g.BackendRef < 0:
			return where + " -> answered by the router (no backend, all weights 0, or a filter it cannot apply)"
		case rt.Backend.IsZero():
			return fmt.Sprintf("%s -> backendRef %d service %s port %s, unusable (%s; see /problems)", where, g.BackendRef, rt.Service, rt.Port, failed)
		}
		return fmt.Sprintf("%s -> backendRef %d service %s port %s, backend %s (endpoints: /endpoints)", where, g.BackendRef, rt.Service, rt.Port, rt.Backend)
	}
	if rt.Backend.IsZero() {
		return fmt.Sprintf("ingress %s: %s -> service %s port %s, unusable (503; see /problems)",
			rt.Ingress, what, rt.Service, rt.Port)
	}
	return fmt.Sprintf("ingress %s: %s -> service %s port %s, backend %s (endpoints: /endpoints)",
		rt.Ingress, what, rt.Service, rt.Port, rt.Backend)
}

func serveProblems(w http.ResponseWriter, r *http.Request, source TableSource) {
	t, ok := currentTable(w, source)
	if !ok {
		return
	}
	if wantsJSON(r) {
		problems := t.Problems
		if problems == nil {
			problems = []routing.Problem{}
		}
		writeJSON(w, problems)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(t.Problems) == 0 {
		fmt.Fprintln(w, "no problems")
		return
	}
	for _, p := range t.Problems {
		fmt.Fprintf(w, "%s %s/%s: %s: %s\n", p.Kind, p.Namespace, p.Name, p.Reason, p.Message)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
