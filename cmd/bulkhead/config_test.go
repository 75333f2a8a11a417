package main

import (
	"bytes"
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
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-help lacks %q", want)
		}
	}
}

func TestBadFlagValuesAreOneLineAndExit2(t *testing.T) {
	for _, args := range [][]string{
		{"-address", "nope"},
		{"-address", ":99999"},
		{"-health-address", "a b:80"},
		{"-admin-address", ":8080"}, // same as -address
		{"-controller-name", "not a path"},
		{"-publish-address", "lb.example.com,,10.0.0.1"},
		{"-publish-address", "under_score.example"},
		{"-log-level", "loud"},
		{"-log-format", "xml"},
		{"-drain-delay", "-1s"},
		{"-drain-timeout", "soon"},
		{"-backend-connect-timeout", "0s"},
		{"-backend-idle-timeout", "0s"},
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
	c, err := parseConfig([]string{"-publish-address", "192.0.2.1, lb.example.com", "-admin-address", "0.0.0.0:9911"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.PublishAddress) != 2 || c.PublishAddress[1] != "lb.example.com" {
		t.Fatalf("publish addresses %q", c.PublishAddress)
	}
}
