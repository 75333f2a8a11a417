package admin

import (
	"fmt"
	"net/http"
	"strings"
)

// Backend is one Service port the table routes to, with its endpoints.
type Backend struct {
	// Name is "namespace/service:port".
	Name      string     `json:"backend"`
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is one pod address of a backend: how Kubernetes describes it
// and how the router currently sees it.
type Endpoint struct {
	Address     string `json:"address"`
	Ready       bool   `json:"ready"`
	Serving     bool   `json:"serving"`
	Terminating bool   `json:"terminating"`
	// Breaker is closed, half-open or open; the counts are since its last
	// state change.
	Breaker             string `json:"breaker"`
	Requests            uint32 `json:"requests"`
	Failures            uint32 `json:"failures"`
	ConsecutiveFailures uint32 `json:"consecutiveFailures"`
	InFlight            int64  `json:"inFlight"`
}

// EndpointSource lists the backends for /endpoints.
type EndpointSource func() []Backend

func serveEndpoints(w http.ResponseWriter, r *http.Request, source EndpointSource) {
	backends := source()
	if wantsJSON(r) {
		if backends == nil {
			backends = []Backend{}
		}
		writeJSON(w, backends)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	var b strings.Builder
	for _, be := range backends {
		fmt.Fprintf(&b, "%s\n", be.Name)
		if len(be.Endpoints) == 0 {
			b.WriteString("  (no usable endpoints: answering 503)\n")
		}
		for _, ep := range be.Endpoints {
			fmt.Fprintf(&b, "  %-22s ready=%-5v serving=%-5v terminating=%-5v breaker=%-9s in-flight=%d failures=%d/%d (consecutive %d)\n",
				ep.Address, ep.Ready, ep.Serving, ep.Terminating, ep.Breaker, ep.InFlight, ep.Failures, ep.Requests, ep.ConsecutiveFailures)
		}
	}
	fmt.Fprint(w, b.String())
}
