package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead-router/bulkhead/internal/testcerts"
)

func TestBackendTLSFlags(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := testcerts.SelfSigned(t, "router.bulkhead.svc")
	ca, cert, key, junk := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), filepath.Join(dir, "junk")
	for path, data := range map[string][]byte{ca: certPEM, cert: certPEM, key: keyPEM, junk: []byte("not pem")} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	c, err := parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.BackendTLS.TLS; got.RootCAs != nil || got.InsecureSkipVerify || got.ClientCertificate != nil {
		t.Errorf("defaults %+v: want the system's roots, verification, no client certificate", got)
	}
	c, err = parseConfig([]string{"-backend-tls-ca-file", ca, "-backend-tls-client-cert-file", cert, "-backend-tls-client-key-file", key}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.BackendTLS.TLS.RootCAs == nil || c.BackendTLS.TLS.ClientCertificate == nil {
		t.Errorf("CA and client certificate not loaded: %+v", c.BackendTLS.TLS)
	}
	c, err = parseConfig([]string{"-backend-tls-insecure-skip-verify"}, io.Discard)
	if err != nil || !c.BackendTLS.TLS.InsecureSkipVerify {
		t.Errorf("-backend-tls-insecure-skip-verify: %v, %+v", err, c.BackendTLS.TLS)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-backend-tls-ca-file", filepath.Join(dir, "missing")}, "-backend-tls-ca-file"},
		{[]string{"-backend-tls-ca-file", junk}, "no PEM certificate"},
		{[]string{"-backend-tls-client-cert-file", cert}, "go together"},
		{[]string{"-backend-tls-client-cert-file", cert, "-backend-tls-client-key-file", junk}, "-backend-tls-client-cert-file"},
	} {
		if _, err := parseConfig(tc.args, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one saying %q", tc.args, err, tc.want)
		}
	}
}
