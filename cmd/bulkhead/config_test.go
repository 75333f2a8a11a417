package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestHelpListsEveryContractFlagWithDefaults(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"-help"}, &out, &errOut); code != 0 {
		t.Fatalf("-help exit %d, stderr %q", code, errOut.String())
	}
	for _, want := range []string{
		"-kubeconfig", "-address", `(default ":8080")`, "-health-address", `(default ":8081")`,
		"-admin-address", `(default "127.0.0.1:9911")`, "-state-dir", "-controller-name",
		`(default "bulkhead.io/ingress-controller")`, "-publish-address", "-log-level", `(default "info")`,
		"-metrics-address", `(default ":9912")`, "-admin-token-file",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-help lacks %q", want)
		}
	}
}

func TestBadFlagValuesAreOneLineAndExit2(t *testing.T) {
	dir := t.TempDir()
	shortToken := filepath.Join(dir, "short")
	if err := os.WriteFile(shortToken, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-address", "nope"},
		{"-address", ":99999"},
		{"-health-address", "a b:80"},
		{"-admin-address", ":8080"},            // same as -address
		{"-metrics-address", ":8081"},          // same as -health-address
		{"-metrics-address", "127.0.0.1:9911"}, // same as -admin-address
		{"-metrics-address", "nope"},
		{"-admin-address", "0.0.0.0:9911"}, // not loopback, no token
		{"-admin-address", ":9911"},
		{"-admin-address", "10.1.2.3:9911"},
		{"-admin-address", "admin.example.com:9911"},
		{"-admin-address", "0.0.0.0:9911", "-admin-token-file", filepath.Join(dir, "missing")},
		{"-admin-address", "0.0.0.0:9911", "-admin-token-file", shortToken},
		{"-admin-token-file", filepath.Join(dir, "missing")}, // a token given is read even on loopback
		{"-controller-name", "not a path"},
		{"-publish-address", "lb.example.com,,10.0.0.1"},
		{"-publish-address", "under_score.example"},
		{"-log-level", "loud"},
		{"-route-shards", "0"},
		{"-route-shards", "257"},
		{"-log-format", "xml"},
		{"-drain-delay", "-1s"},
		{"-drain-timeout", "soon"},
		{"-backend-connect-timeout", "0s"},
		{"-backend-idle-timeout", "0s"},
		{"-backend-retry-deadline", "0s"},
		{"-deletion-guard-min-objects", "0"},
		{"-deletion-guard-window", "0s"},
		{"-deletion-guard-share", "0"},
		{"-deletion-guard-period", "-1s"},
		{"-gateway-listeners", "0"},
		{"-gateway-listeners", "70000"},
		{"-gateway-listeners", "80,80=:9080"},
		{"-gateway-listeners", "80,8080"}, // two on the proxy listener
		{"-gateway-listeners", "80=:9080,8080=:9080"},
		{"-gateway-listeners", "80=:8081"}, // the health listener
		{"-gateway-listeners", "80=nope"},
		{"-gateway-controller-name", "not a path"},
		{"-gateway-addresses", "nope"},
		{"-gateway-addresses", "127.0.0.2,127.0.0.2"},
		{"-no-such-flag"},
		{"stray-argument"},
	} {
		var out, errOut bytes.Buffer
		code := run(args, &out, &errOut)
		msg := errOut.String()
		if code != 2 || strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "bulkhead: ") {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line", args, code, msg)
		}
	}
}

func TestValidConfig(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parseConfig([]string{"-publish-address", "192.0.2.1, lb.example.com",
		"-admin-address", "0.0.0.0:9911", "-admin-token-file", tokenFile}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.PublishAddress) != 2 || c.PublishAddress[1] != "lb.example.com" {
		t.Fatalf("publish addresses %q", c.PublishAddress)
	}
	if string(c.AdminToken) != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("admin token %q: want the file's line", c.AdminToken)
	}
}

// TestAdminOffLoopbackNeedsAToken: the admin endpoint can apply a held
// mass deletion; bound beyond loopback without a token, the router does not
// start, and says what to do in one line.
func TestAdminOffLoopbackNeedsAToken(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"-admin-address", "0.0.0.0:9911"}, &out, &errOut); code != 2 ||
		strings.Count(errOut.String(), "\n") != 1 || !strings.Contains(errOut.String(), "-admin-token-file") {
		t.Fatalf("exit %d, stderr %q: want exit 2 and one line naming -admin-token-file", code, errOut.String())
	}
	for _, addr := range []string{"127.0.0.1:9911", "127.0.0.2:9911", "[::1]:9911", "localhost:9911", "LOCALHOST:0"} {
		c, err := parseConfig([]string{"-admin-address", addr}, &bytes.Buffer{})
		if err != nil || len(c.AdminToken) != 0 {
			t.Errorf("-admin-address %s without a token: %v, token %q; loopback needs none", addr, err, c.AdminToken)
		}
	}
	c, err := parseConfig(nil, &bytes.Buffer{})
	if err != nil || c.AdminAddress != "127.0.0.1:9911" || c.MetricsAddress != ":9912" {
		t.Fatalf("defaults: %v, admin %q, metrics %q", err, c.AdminAddress, c.MetricsAddress)
	}
}

func TestGatewayListeners(t *testing.T) {
	for _, tc := range []struct {
		flag string
		want []gatewayListener
		port int32 // served on the proxy listener
	}{
		{"80", []gatewayListener{{Port: 80}}, 80},
		{"", nil, 0},
		{"80=:8080", []gatewayListener{{Port: 80}}, 80}, // -address itself
		{"80, 8080=127.0.0.1:9080", []gatewayListener{{Port: 80}, {Port: 8080, Address: "127.0.0.1:9080"}}, 80},
		{"443=:9443", []gatewayListener{{Port: 443, Address: ":9443"}}, 0},
	} {
		c, err := parseConfig([]string{"-gateway-listeners", tc.flag}, io.Discard)
		if err != nil {
			t.Errorf("%q: %v", tc.flag, err)
			continue
		}
		if !slices.Equal(c.GatewayListeners, tc.want) || c.proxyGatewayPort() != tc.port {
			t.Errorf("%q: %+v (proxy listener port %d), want %+v (%d)", tc.flag, c.GatewayListeners, c.proxyGatewayPort(), tc.want, tc.port)
		}
	}
}
