package tablestore

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bulkhead-router/bulkhead/routing"
)

// A snapshot written by an earlier build whose schema is in earlierSchemas
// loads: testdata/schema-<fingerprint>.snapshot is fullTable as that build
// saved it. A router upgraded while the API server is unreachable starts
// from it instead of from nothing.
func TestLoadsEarlierSchemas(t *testing.T) {
	if _, ok := earlierSchemas[schema]; ok {
		t.Fatalf("this build's schema %s is listed as an earlier one", schema)
	}
	for fp := range earlierSchemas {
		t.Run(fp, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "schema-"+fp+".snapshot"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data[:200]), `"schema":"`+fp+`"`) {
				t.Fatalf("testdata file is not of schema %s", fp)
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "routes.snapshot"), data, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := s.Load()
			if err != nil {
				t.Fatalf("the snapshot of schema %s does not load: %v", fp, err)
			}
			// fullTable as that build had it: without what came later.
			want := fullTable()
			var gatewayCerts []routing.Certificate
			for _, c := range want.Certificates {
				if fp == "4237ac2e2a0612e1" && (c.Default || c.Ingress.Name != "") {
					continue
				}
				gatewayCerts = append(gatewayCerts, c)
			}
			if len(got.Routes) != len(want.Routes) || !reflect.DeepEqual(got.Served, want.Served) ||
				!reflect.DeepEqual(got.Problems, want.Problems) || !reflect.DeepEqual(got.Certificates, gatewayCerts) {
				t.Fatalf("loaded %d routes, served %v, problems %v, certificates %+v; want %d, %v, %v, %+v",
					len(got.Routes), got.Served, got.Problems, got.Certificates, len(want.Routes), want.Served, want.Problems, gatewayCerts)
			}
		})
	}
}
