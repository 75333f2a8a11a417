package ingressconformance

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestReadReports: two feature files become one report array, and a
// scenario with a failed or skipped step is a failure naming the first.
func TestReadReports(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("host_rules.feature-report.json", `[{"uri":"features/host_rules.feature","name":"Host rules","elements":[
	 {"id":"a;tls","name":"TLS","type":"scenario","steps":[{"keyword":"Given ","name":"x","result":{"status":"passed"}},{"keyword":"Then ","name":"y","result":{"status":"passed"}}]},
	 {"id":"a;404","name":"no match","type":"scenario","steps":[{"keyword":"When ","name":"send","result":{"status":"passed"}},{"keyword":"Then ","name":"the response status-code must be 404","result":{"status":"failed","error_message":"expected status code 404 but 200 was returned"}},{"keyword":"And ","name":"z","result":{"status":"skipped"}}]}]}]`)
	write("path_rules.feature-report.json", `[{"uri":"features/path_rules.feature","name":"Path rules","elements":[
	 {"id":"b;1","name":"exact","type":"scenario","steps":[{"keyword":"Then ","name":"x","result":{"status":"skipped"}}]},
	 {"id":"b;2","name":"empty","type":"scenario"}]}]`)
	merged, results, err := readReports(dir)
	if err != nil {
		t.Fatal(err)
	}
	var features []cucumberFeature
	if err := json.Unmarshal(merged, &features); err != nil || len(features) != 2 || features[0].Name != "Host rules" {
		t.Fatalf("merged report: %v %s", err, merged)
	}
	want := []struct {
		name    string
		passed  bool
		failure string
	}{
		{"TLS", true, ""},
		{"no match", false, "Then the response status-code must be 404: failed expected status code 404 but 200 was returned"},
		{"exact", false, "Then x: skipped"},
		{"empty", false, "no steps ran"},
	}
	if len(results) != len(want) {
		t.Fatalf("%d results: %+v", len(results), results)
	}
	for i, w := range want {
		if r := results[i]; r.Name != w.name || r.Passed != w.passed || r.Failure != w.failure {
			t.Errorf("result %d: %+v, want %+v", i, r, w)
		}
	}
	if _, _, err := readReports(t.TempDir()); err == nil {
		t.Error("no report files: no error")
	}
}
