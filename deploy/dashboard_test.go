package deploy

import (
	"encoding/json"
	"testing"
)

// checkDashboard checks the monitoring component's Grafana dashboard: a
// ConfigMap the Grafana sidecar picks up, holding a dashboard whose every
// query parses (Prometheus's parser) and reads only metrics that
// bulkhead's Go source defines, and which covers what an operator looks at
// first.
func checkDashboard(t *testing.T, objs objects) {
	t.Helper()
	var cm struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Data map[string]string `json:"data"`
	}
	objs.get(t, "ConfigMap", "bulkhead-dashboard", &cm)
	if cm.Metadata.Labels["grafana_dashboard"] != "1" {
		t.Errorf("the dashboard ConfigMap lacks the label grafana_dashboard: \"1\" the Grafana sidecar looks for: %v", cm.Metadata.Labels)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(cm.Data["dashboard.json"]), &dash); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	if dash.UID == "" {
		t.Error("the dashboard has no uid: every import would make a new copy")
	}
	var exprs, where []string
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			exprs = append(exprs, q.Expr)
			where = append(where, p.Title)
		}
	}
	if len(exprs) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	source := goSource(t)
	used := map[string]bool{}
	for i, res := range checkPromQL(t, exprs) {
		if res.Error != "" {
			t.Errorf("panel %q: query does not parse: %s\n%s", where[i], res.Error, exprs[i])
			continue
		}
		if len(res.Metrics) == 0 {
			t.Errorf("panel %q: query reads no metric: %s", where[i], exprs[i])
		}
		for _, m := range res.Metrics {
			used[m] = true
			if !definedIn(source, m) {
				t.Errorf("panel %q reads %q, which no Go source file of bulkhead defines", where[i], m)
			}
		}
	}
	for _, m := range []string{"bulkhead_apiserver_connected", "bulkhead_table_source", "bulkhead_deletion_guard_holding",
		"bulkhead_upstream_requests_total", "bulkhead_upstream_failures_total", "bulkhead_upstream_breakers_open",
		"bulkhead_convergence_latency_seconds_bucket", "bulkhead_node_draining"} {
		if !used[m] {
			t.Errorf("no dashboard panel reads %s", m)
		}
	}
}
