package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/dataclient"
)

// adminStub is an admin endpoint on a real socket that records what the
// subcommands ask and answers as told.
type adminStub struct {
	srv      *httptest.Server
	requests chan *http.Request
}

func newAdminStub(t *testing.T, status int, body string) *adminStub {
	t.Helper()
	s := &adminStub{requests: make(chan *http.Request, 10)}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests <- r
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *adminStub) address() string { return strings.TrimPrefix(s.srv.URL, "http://") }

func runArgs(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestExplainSubcommandAsksTheAdminEndpoint(t *testing.T) {
	s := newAdminStub(t, http.StatusOK, "ROUTE r1\n")
	token := filepath.Join(t.TempDir(), "token")
	os.WriteFile(token, []byte("0123456789abcdef0123\n"), 0o600)
	// The URL before the flags, as an operator types it.
	code, out, errs := runArgs("explain", "https://shop.example.com/cart?x=1", "-H", "X-Canary: yes", "-H", "Cookie: a=b", "-X", "POST",
		"-port", "8080", "-remote", "10.0.0.9", "-admin-address", s.address(), "-admin-token-file", token, "-json")
	if code != 0 || out != "ROUTE r1\n" || errs != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	r := <-s.requests
	q := r.URL.Query()
	if r.URL.Path != "/explain" || q.Get("url") != "https://shop.example.com/cart?x=1" || q.Get("method") != "POST" ||
		strings.Join(q["header"], "|") != "X-Canary: yes|Cookie: a=b" || q.Get("port") != "8080" || q.Get("remote") != "10.0.0.9" {
		t.Errorf("asked %s", r.URL)
	}
	if r.Header.Get("Authorization") != "Bearer 0123456789abcdef0123" || r.Header.Get("Accept") != "application/json" {
		t.Errorf("headers %v", r.Header)
	}
	// A URL without a scheme is http, as curl takes it; text by default.
	if code, _, _ := runArgs("explain", "shop.example.com/", "-admin-address", s.address()); code != 0 {
		t.Fatalf("exit %d", code)
	}
	r = <-s.requests
	if r.URL.Query().Get("url") != "http://shop.example.com/" || r.Header.Get("Accept") != "" || r.Header.Get("Authorization") != "" {
		t.Errorf("asked %s with %v", r.URL, r.Header)
	}
}

func TestSubcommandErrors(t *testing.T) {
	bad := newAdminStub(t, http.StatusBadRequest, "bad request: method \"G T\" is not an HTTP method token\n")
	locked := newAdminStub(t, http.StatusUnauthorized, "unauthorized\n")
	// A port nothing listens on: bound, then closed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"explain", "http://x/", "-admin-address", closed}, 1, "bulkhead explain: cannot reach the router's admin endpoint at http://" + closed},
		{[]string{"routes", "-admin-address", closed}, 1, "cannot reach the router's admin endpoint"},
		{[]string{"status", "-admin-address", closed}, 1, "cannot reach the router's admin endpoint"},
		{[]string{"explain", "http://x/", "-X", "G T", "-admin-address", bad.address()}, 1, `the admin endpoint answered 400 Bad Request: bad request: method "G T" is not`},
		{[]string{"routes", "-admin-address", locked.address()}, 1, "401 Unauthorized: unauthorized (give the router's token with -admin-token-file)"},
		{[]string{"explain"}, 2, "want exactly one URL"},
		{[]string{"explain", "http://a/", "http://b/"}, 2, "want exactly one URL"},
		{[]string{"explain", "http://a/", "-H", "NoColon"}, 2, "want 'Name: value'"},
		{[]string{"routes", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"status", "-admin-address", "nowhere"}, 2, "want HOST:PORT"},
		{[]string{"status", "-admin-token-file", "/nonexistent/token"}, 2, "-admin-token-file"},
	} {
		code, _, errs := runArgs(c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, errs, c.code, c.want)
		}
	}
	if code, out, _ := runArgs("explain", "-help"); code != 0 || !strings.Contains(out, "usage: bulkhead explain URL") || !strings.Contains(out, "-admin-address") {
		t.Errorf("-help: %d %q", code, out)
	}
}

func TestRoutesAndStatusSubcommands(t *testing.T) {
	routes := newAdminStub(t, http.StatusOK, "// ingress shop/web: host shop.example path / (Prefix)\nr1: ...\n")
	if code, out, _ := runArgs("routes", "-admin-address", routes.address()); code != 0 || !strings.HasPrefix(out, "// ingress shop/web") {
		t.Fatalf("routes: %d %q", code, out)
	}
	if r := <-routes.requests; r.URL.Path != "/routes" {
		t.Errorf("routes asked %s", r.URL)
	}
	since := time.Now().Add(-time.Minute)
	st := dataclient.Status{
		APIServer: dataclient.APIServerStatus{Connected: false, Since: since, LastSync: since, LastError: "dial tcp: connection refused"},
		Table:     dataclient.TableStatus{Loaded: true, Source: dataclient.SourceSnapshot, Version: 7, Routes: 12, AppliedAt: since},
	}
	body, _ := json.Marshal(st)
	status := newAdminStub(t, http.StatusOK, string(body))
	code, out, _ := runArgs("status", "-admin-address", status.address())
	for _, want := range []string{"API server:  NOT connected since", "last error:  dial tcp: connection refused", "route table: 12 routes from snapshot, version 7", "deletion guard: nothing held"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("status: exit %d, no %q in\n%s", code, want, out)
		}
	}
	if code, out, _ := runArgs("status", "-json", "-admin-address", status.address()); code != 0 || out != string(body) {
		t.Errorf("status -json: %d %q", code, out)
	}
}

func TestAdminBase(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9911":        "http://127.0.0.1:9911",
		":9911":                 "http://127.0.0.1:9911",
		"0.0.0.0:9911":          "http://127.0.0.1:9911",
		"[::]:9911":             "http://127.0.0.1:9911",
		"10.1.2.3:9911":         "http://10.1.2.3:9911",
		"http://127.0.0.1:9911": "http://127.0.0.1:9911",
	} {
		if got, err := adminBase(in); err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", in, got, err, want)
		}
	}
}
