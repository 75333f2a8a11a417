package routing

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// renderGatewayStatus adds the Gateway API status of a table to its golden
// form, as a YAML comment block; nothing when there is none, so the golden
// files of Ingress-only fixtures are unchanged.
func renderGatewayStatus(b *bytes.Buffer, t Table) {
	if len(t.GatewayClasses) == 0 && len(t.Gateways) == 0 && len(t.HTTPRoutes) == 0 && len(t.GRPCRoutes) == 0 {
		return
	}
	doc := struct {
		GatewayClasses []GatewayClassStatus `json:"gatewayClasses,omitempty"`
		Gateways       []GatewayStatus      `json:"gateways,omitempty"`
		HTTPRoutes     []HTTPRouteStatus    `json:"httpRoutes,omitempty"`
		GRPCRoutes     []GRPCRouteStatus    `json:"grpcRoutes,omitempty"`
	}{t.GatewayClasses, t.Gateways, t.HTTPRoutes, t.GRPCRoutes}
	out, err := yaml.Marshal(doc)
	if err != nil {
		out = []byte("error: " + err.Error())
	}
	b.WriteString("// Gateway API status:\n")
	for line := range strings.SplitSeq(strings.TrimSuffix(string(out), "\n"), "\n") {
		b.WriteString("//   " + line + "\n")
	}
}

// renderCertificates adds the certificates of a table to its golden form:
// port, hostname, listener, Secret, and the leaf certificate's subject
// and SHA-256 (of its DER), so a golden file shows which key pair each
// listener serves; nothing when there is none.
func renderCertificates(b *bytes.Buffer, t Table) {
	if len(t.Certificates) == 0 {
		return
	}
	b.WriteString("// Certificates:\n")
	for _, c := range t.Certificates {
		host := c.Hostname
		if host == "" {
			host = "(any)"
		}
		leaf := "(no certificate)"
		if block, _ := pem.Decode(c.Cert); block != nil {
			if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
				sum := sha256.Sum256(block.Bytes)
				leaf = fmt.Sprintf("%q sha256:%x", cert.Subject.CommonName, sum[:8])
			}
		}
		origin := fmt.Sprintf("%s listener %s", c.Gateway, c.Listener)
		switch {
		case c.Default:
			origin = "default certificate"
		case c.Ingress.Name != "":
			origin = "ingress " + c.Ingress.String()
		}
		fmt.Fprintf(b, "//   %d %s: %s, Secret %s: %s, key %d bytes\n", c.Port, host, origin, c.Secret, leaf, len(c.Key))
	}
}
