package routing

import (
	"bytes"
	"strings"

	"sigs.k8s.io/yaml"
)

// renderGatewayStatus adds the Gateway API status of a table to its golden
// form, as a YAML comment block; nothing when there is none, so the golden
// files of Ingress-only fixtures are unchanged.
func renderGatewayStatus(b *bytes.Buffer, t Table) {
	if len(t.GatewayClasses) == 0 && len(t.Gateways) == 0 && len(t.HTTPRoutes) == 0 {
		return
	}
	doc := struct {
		GatewayClasses []GatewayClassStatus `json:"gatewayClasses,omitempty"`
		Gateways       []GatewayStatus      `json:"gateways,omitempty"`
		HTTPRoutes     []HTTPRouteStatus    `json:"httpRoutes,omitempty"`
	}{t.GatewayClasses, t.Gateways, t.HTTPRoutes}
	out, err := yaml.Marshal(doc)
	if err != nil {
		out = []byte("error: " + err.Error())
	}
	b.WriteString("// Gateway API status:\n")
	for line := range strings.SplitSeq(strings.TrimSuffix(string(out), "\n"), "\n") {
		b.WriteString("//   " + line + "\n")
	}
}
