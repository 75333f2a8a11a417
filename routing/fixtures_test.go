package routing

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/zalando/skipper/eskip"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// A fixture is a multi-document YAML file of Kubernetes objects
// (IngressClass, Ingress, Service, EndpointSlice, HeldIngress for
// Snapshot.HeldIngresses, and the Gateway API's GatewayClass, Gateway,
// HTTPRoute, ReferenceGrant, with Namespace and Secret; a Secret's
// stringData is merged into its data, as the API server does) plus,
// optionally, one
// document of kind TranslateOptions carrying Options.
type translateOptionsDoc struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind"`
	Options
}

type typeMeta struct {
	Kind string `json:"kind"`
}

var documentSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// parseFixture reads a fixture. strict rejects unknown fields, so that a
// typo in a golden fixture fails loudly instead of testing nothing.
func parseFixture(data []byte, strict bool) (*Snapshot, Options, error) {
	unmarshal := yaml.Unmarshal
	if strict {
		unmarshal = yaml.UnmarshalStrict
	}
	s := &Snapshot{}
	var o Options
	for i, doc := range documentSeparator.Split(string(data), -1) {
		if isBlankYAML(doc) {
			continue
		}
		var meta typeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			return nil, o, fmt.Errorf("document %d: %w", i, err)
		}
		var err error
		switch meta.Kind {
		case "IngressClass":
			s.IngressClasses, err = appendDecoded(s.IngressClasses, doc, unmarshal)
		case "Ingress":
			s.Ingresses, err = appendDecoded(s.Ingresses, doc, unmarshal)
		case "HeldIngress": // an Ingress the deletion guard holds (Snapshot.HeldIngresses)
			s.HeldIngresses, err = appendDecoded(s.HeldIngresses, doc, unmarshal)
		case "Service":
			var svc []*corev1.Service
			if svc, err = appendDecoded(svc, doc, unmarshal); err == nil {
				s.Services = append(s.Services, NewService(svc[0]))
			}
		case "EndpointSlice":
			var es []*discoveryv1.EndpointSlice
			if es, err = appendDecoded(es, doc, unmarshal); err == nil {
				s.EndpointSlices = append(s.EndpointSlices, NewEndpointSlice(es[0]))
			}
		case "GatewayClass":
			s.GatewayClasses, err = appendDecoded(s.GatewayClasses, doc, unmarshal)
		case "Gateway":
			s.Gateways, err = appendDecoded(s.Gateways, doc, unmarshal)
		case "HTTPRoute":
			s.HTTPRoutes, err = appendDecoded(s.HTTPRoutes, doc, unmarshal)
		case "GRPCRoute":
			s.GRPCRoutes, err = appendDecoded(s.GRPCRoutes, doc, unmarshal)
		case "ReferenceGrant":
			s.ReferenceGrants, err = appendDecoded(s.ReferenceGrants, doc, unmarshal)
		case "Namespace":
			s.Namespaces, err = appendDecoded(s.Namespaces, doc, unmarshal)
		case "Secret":
			s.Secrets, err = appendDecoded(s.Secrets, doc, unmarshal)
			if sec := s.Secrets[len(s.Secrets)-1]; err == nil && len(sec.StringData) > 0 {
				if sec.Data == nil {
					sec.Data = map[string][]byte{}
				}
				for k, v := range sec.StringData {
					sec.Data[k] = []byte(v)
				}
				sec.StringData = nil
			}
		case "TranslateOptions":
			var d translateOptionsDoc
			err = unmarshal([]byte(doc), &d)
			o = d.Options
		default:
			err = fmt.Errorf("unknown kind %q", meta.Kind)
		}
		if err != nil {
			return nil, o, fmt.Errorf("document %d (%s): %w", i, meta.Kind, err)
		}
	}
	return s, o, nil
}

func appendDecoded[T any](list []*T, doc string, unmarshal func([]byte, any, ...yaml.JSONOpt) error) ([]*T, error) {
	obj := new(T)
	if err := unmarshal([]byte(doc), obj); err != nil {
		return list, err
	}
	return append(list, obj), nil
}

func isBlankYAML(doc string) bool {
	for line := range strings.SplitSeq(doc, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			return false
		}
	}
	return true
}

func loadFixture(t testing.TB, path string) (*Snapshot, Options) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, o, err := parseFixture(data, true)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return s, o
}

func fixturePaths(t testing.TB) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	return paths
}

func fixtureName(path string) string {
	return strings.TrimSuffix(filepath.Base(path), ".yaml")
}

// renderTable is the golden form of a table: the problems as a comment
// block, then the routes in skipper's pretty eskip, in table order.
func renderTable(t Table) string {
	var b bytes.Buffer
	b.WriteString("// Problems:\n")
	if len(t.Problems) == 0 {
		b.WriteString("//   (none)\n")
	}
	for _, p := range t.Problems {
		fmt.Fprintf(&b, "//   %s %s/%s %s: %s\n", p.Kind, p.Namespace, p.Name, p.Reason, p.Message)
	}
	if len(t.Backends) > 0 {
		b.WriteString("// Backends:\n")
	}
	for _, be := range t.Backends {
		fmt.Fprintf(&b, "//   %s:", be.Key)
		if len(be.Endpoints) == 0 {
			b.WriteString(" (none)")
		}
		for i, ep := range be.Endpoints {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, " %s", ep.Address)
			switch {
			case !ep.Ready && ep.Serving && ep.Terminating:
				b.WriteString(" (serving, terminating)")
			case !ep.Ready:
				b.WriteString(" (not ready)")
			case ep.Terminating:
				b.WriteString(" (terminating)")
			}
		}
		b.WriteString("\n")
	}
	renderCertificates(&b, t)
	renderGatewayStatus(&b, t)
	if len(t.Routes) > 0 {
		b.WriteString("\n")
		eskip.Fprint(&b, eskip.PrettyPrintInfo{Pretty: true, IndentStr: "  "}, t.EskipRoutes()...)
		b.WriteString("\n")
	}
	return b.String()
}

// Helpers to build objects in Go tests, where YAML would be longer.

func ingressClass(name string, isDefault bool) *networkingv1.IngressClass {
	c := &networkingv1.IngressClass{Spec: networkingv1.IngressClassSpec{Controller: DefaultControllerName}}
	c.Name = name
	if isDefault {
		c.Annotations = map[string]string{defaultClassAnnotation: "true"}
	}
	return c
}

func service(namespace, name string, ports ...corev1.ServicePort) *Service {
	return &Service{Namespace: namespace, Name: name, Ports: ports}
}

func endpointSlice(namespace, service, name string, port int32, addresses ...string) *EndpointSlice {
	s := &EndpointSlice{Namespace: namespace, Name: name, Service: service,
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(port)}},
	}
	for _, a := range addresses {
		s.Endpoints = append(s.Endpoints, SliceEndpoint{Address: a, Ready: true, Serving: true})
	}
	return s
}

func ptr[T any](v T) *T { return &v }

func servicePort(name string, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port}
}

// endpointsOf returns the endpoints of the route's backend in t.
func endpointsOf(t Table, r *Route) []Endpoint {
	if r == nil || r.Backend.IsZero() {
		return nil
	}
	b, _ := t.Backend(r.Backend)
	return b.Endpoints
}
