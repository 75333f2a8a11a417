package main

import (
	"io"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func TestDefaultCertificateFlag(t *testing.T) {
	c, err := parseConfig([]string{"-default-certificate", "infra/default-tls"}, io.Discard)
	if err != nil || c.DefaultCertificate != (types.NamespacedName{Namespace: "infra", Name: "default-tls"}) {
		t.Fatalf("%+v, %v", c.DefaultCertificate, err)
	}
	if c, err := parseConfig(nil, io.Discard); err != nil || c.DefaultCertificate != (types.NamespacedName{}) {
		t.Fatalf("unset: %+v, %v", c.DefaultCertificate, err)
	}
	for _, bad := range []string{"default-tls", "/x", "infra/", "Infra/x", "a/b/c"} {
		if _, err := parseConfig([]string{"-default-certificate", bad}, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
