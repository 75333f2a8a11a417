package health

import (
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Names of the readiness conditions bulkhead sets.
const (
	// ConditionRoutes is unmet until a route table has been loaded.
	ConditionRoutes = "routes"
	// ConditionDraining is unmet while the router shuts down, so the load
	// balancer takes it out of service first.
	ConditionDraining = "draining"
	// ConditionNode is unmet while the router's node is being drained
	// (cordoned, tainted for deletion, excluded from load balancers): the
	// load balancer should stop sending before the node goes away.
	ConditionNode = "node"
)

// MetricReady is 1 while /readyz answers 200.
const MetricReady = "bulkhead_ready"

// State holds the readiness conditions. The zero value is not usable: use New.
type State struct {
	mu      sync.Mutex
	unmet   map[string]string // condition name → reason, for every unmet condition
	readyGa prometheus.Gauge
}

// New returns a State whose conditions are all unmet with the given reasons,
// and registers its gauge on reg (nil: none).
func New(reg prometheus.Registerer, initial map[string]string) *State {
	s := &State{
		unmet:   make(map[string]string, len(initial)),
		readyGa: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricReady, Help: "1 while the readiness check (/readyz) passes."}),
	}
	for name, reason := range initial {
		s.unmet[name] = reason
	}
	if reg != nil {
		reg.MustRegister(s.readyGa)
	}
	s.updateGauge()
	return s
}

// Set marks condition name as met (ok) or unmet with a reason.
func (s *State) Set(name string, ok bool, reason string) {
	s.mu.Lock()
	if ok {
		delete(s.unmet, name)
	} else {
		s.unmet[name] = reason
	}
	s.mu.Unlock()
	s.updateGauge()
}

// Ready reports readiness and, when not ready, why: one line per unmet
// condition, sorted.
func (s *State) Ready() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.unmet) == 0 {
		return true, ""
	}
	lines := make([]string, 0, len(s.unmet))
	for name, reason := range s.unmet {
		lines = append(lines, name+": "+reason)
	}
	sort.Strings(lines)
	return false, strings.Join(lines, "\n")
}

func (s *State) updateGauge() {
	ready, _ := s.Ready()
	if ready {
		s.readyGa.Set(1)
	} else {
		s.readyGa.Set(0)
	}
}

// Handler serves /healthz and /readyz.
func Handler(s *State) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready, why := s.Ready(); !ready {
			writeText(w, http.StatusServiceUnavailable, "not ready\n"+why+"\n")
			return
		}
		writeText(w, http.StatusOK, "ready\n")
	})
	return mux
}

func writeText(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write([]byte(body))
}
