package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-router/bulkhead/accesslog"
)

func TestAccessLogFlags(t *testing.T) {
	c, err := parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if a := c.AccessLog; !a.Enabled || a.Format != accesslog.JSON || a.Sample != 1 || a.Fields != accesslog.DefaultFields || a.Query || a.File != "" {
		t.Errorf("defaults: %+v", a)
	}
	c, err = parseConfig([]string{"-access-log-format", "text", "-access-log-sample", "0.1", "-access-log-fields", "status,path",
		"-access-log-query", "-access-log-file", "/tmp/x"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if a := c.AccessLog; a.Format != accesslog.Text || a.Sample != 0.1 || a.Fields != accesslog.FieldStatus|accesslog.FieldPath || !a.Query || a.File != "/tmp/x" {
		t.Errorf("set: %+v", a)
	}
	for _, args := range [][]string{
		{"-access-log-format", "xml"}, {"-access-log-sample", "2"}, {"-access-log-sample", "-0.1"}, {"-access-log-sample", "half"},
		{"-access-log-fields", "status,nonsense"}, {"-access-log-fields", ""},
	} {
		var errOut bytes.Buffer
		if code := run(args, io.Discard, &errOut); code != 2 || strings.Count(errOut.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, %q", args, code, errOut.String())
		}
	}
	var out bytes.Buffer
	run([]string{"-help"}, &out, io.Discard)
	for _, want := range []string{"-access-log\n", "(default true)", "-access-log-file", "-access-log-sample", "(default 1)", "-access-log-query", "(default json)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-help lacks %q", want)
		}
	}
}

func TestAccessLogOffAndOn(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	off, err := startAccessLog(accessLogConfig{Enabled: false}, prometheus.NewRegistry(), log)
	if err != nil || off != nil || off.tables() != nil {
		t.Fatalf("off: %v %v", off, err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	if got := off.wrap(h); got == nil {
		t.Fatal("off: no handler")
	}
	off.close()

	file := filepath.Join(t.TempDir(), "access.log")
	c, err := parseConfig([]string{"-access-log-file", file}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	on, err := startAccessLog(c.AccessLog, prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	on.wrap(h).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x?secret=1", nil))
	on.close()
	b, _ := os.ReadFile(file)
	if !strings.Contains(string(b), `"path":"/x"`) || strings.Contains(string(b), "secret") {
		t.Errorf("line: %s", b)
	}
}
