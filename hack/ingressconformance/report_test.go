package ingressconformance

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// The parts of godog's cucumber JSON report read here.
type cucumberFeature struct {
	URI      string            `json:"uri"`
	Name     string            `json:"name"`
	Elements []cucumberElement `json:"elements"`
}

type cucumberElement struct {
	ID    string         `json:"id"`
	Name  string         `json:"name"`
	Type  string         `json:"type"`
	Steps []cucumberStep `json:"steps"`
}

type cucumberStep struct {
	Keyword string `json:"keyword"`
	Name    string `json:"name"`
	Result  struct {
		Status       string `json:"status"`
		ErrorMessage string `json:"error_message"`
	} `json:"result"`
}

// scenarioResult is one scenario (one row of a scenario outline) of a run.
type scenarioResult struct {
	Feature, Name, ID string
	Passed            bool
	// Failure is the failed step and its error, or why it did not pass.
	Failure string
}

// readReports merges the per-feature report files the suite writes
// (<feature>-report.json) into one array, in feature order, and returns
// it with each scenario's result.
func readReports(dir string) ([]byte, []scenarioResult, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*-report.json"))
	if err != nil {
		return nil, nil, err
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("the suite wrote no report in %s", dir)
	}
	sort.Strings(files)
	var all []json.RawMessage
	var results []scenarioResult
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		var raw []json.RawMessage
		if err := json.Unmarshal(b, &raw); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f, err)
		}
		all = append(all, raw...)
		var features []cucumberFeature
		if err := json.Unmarshal(b, &features); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, feat := range features {
			for _, el := range feat.Elements {
				if el.Type != "" && el.Type != "scenario" {
					continue
				}
				results = append(results, result(feat.Name, el))
			}
		}
	}
	merged, err := json.MarshalIndent(all, "", "  ")
	return merged, results, err
}

func result(feature string, el cucumberElement) scenarioResult {
	r := scenarioResult{Feature: feature, Name: el.Name, ID: el.ID, Passed: len(el.Steps) > 0}
	if len(el.Steps) == 0 {
		r.Failure = "no steps ran"
	}
	for _, s := range el.Steps {
		if s.Result.Status == "passed" {
			continue
		}
		r.Passed = false
		if r.Failure == "" {
			r.Failure = strings.TrimSpace(fmt.Sprintf("%s%s: %s %s", s.Keyword, s.Name, s.Result.Status, strings.TrimSpace(s.Result.ErrorMessage)))
		}
	}
	return r
}
