package main

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
)

const defaultCertificateHelp = "namespace/name of a kubernetes.io/tls Secret served to TLS handshakes that no Gateway listener and no Ingress spec.tls host matches, and to those without SNI; watched like the others (a renewal reaches new handshakes without a restart) and kept in the stored table. Empty: such handshakes fail (counted in bulkhead_tls_handshakes_without_certificate_total)"

// parseSecretRef parses "namespace/name"; "" is none.
func parseSecretRef(v string) (types.NamespacedName, error) {
	if v == "" {
		return types.NamespacedName{}, nil
	}
	ns, name, ok := strings.Cut(v, "/")
	if !ok {
		return types.NamespacedName{}, fmt.Errorf("%q: want namespace/name", v)
	}
	if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
		return types.NamespacedName{}, fmt.Errorf("%q: namespace: %s", v, msgs[0])
	}
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return types.NamespacedName{}, fmt.Errorf("%q: name: %s", v, msgs[0])
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}
