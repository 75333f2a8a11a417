// Command promqlcheck parses PromQL expressions with Prometheus's own parser
// and names the metrics each one reads, so deploy's test can reject an alert
// rule that would not load and one that reads a metric bulkhead does not
// export. The API server cannot do either: it stores a PrometheusRule's
// expressions as plain strings.
//
// Input on stdin: a JSON array of expressions. Output on stdout: a JSON
// array, one object per expression, in order: {"error": "..."} or
// {"metrics": ["name", ...]} (sorted, without duplicates).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type result struct {
	Error   string   `json:"error,omitempty"`
	Metrics []string `json:"metrics,omitempty"`
}

func main() {
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		fmt.Fprintln(os.Stderr, "promqlcheck: reading a JSON array of expressions from stdin:", err)
		os.Exit(2)
	}
	p := parser.NewParser(parser.Options{})
	out := make([]result, 0, len(exprs))
	for _, e := range exprs {
		expr, err := p.ParseExpr(e)
		if err != nil {
			out = append(out, result{Error: err.Error()})
			continue
		}
		var names []string
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				names = append(names, metricName(vs))
			}
			return nil
		})
		slices.Sort(names)
		out = append(out, result{Metrics: slices.Compact(names)})
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "promqlcheck:", err)
		os.Exit(1)
	}
}

// metricName is the selector's metric name, also when it is written as a
// {__name__="..."} matcher; "" when the selector names no single metric.
func metricName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}
