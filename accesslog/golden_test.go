package accesslog

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/record"
)

// TestLinesGolden pins both formats byte for byte for a full line, one
// with a single X-Forwarded-For value, and a line without a route, each
// with the default and with every field (testdata/lines.golden: one
// Go-quoted line each, JSON then text, in that order).
func TestLinesGolden(t *testing.T) {
	raw, err := os.ReadFile("testdata/lines.golden")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, q := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		s, err := strconv.Unquote(q)
		if err != nil {
			t.Fatalf("testdata/lines.golden: %v: %s", err, q)
		}
		want = append(want, s)
	}
	single := fullLine()
	single.forwardedFor = single.forwardedFor[:1]
	bare := &line{start: time.Unix(0, 0), method: "GET", host: "h", target: "/", proto: "HTTP/1.1", status: 404, rec: &record.Request{}}
	var got []string
	for _, l := range []*line{fullLine(), single, bare} {
		for _, f := range []Fields{DefaultFields, Fields(1<<fieldCount - 1)} {
			got = append(got, string(appendJSON(nil, l, f)), string(appendText(nil, l, f)))
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d lines, the golden file has %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("line %d:\n got  %q\n want %q", i, got[i], want[i])
		}
	}
}
