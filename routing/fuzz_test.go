package routing

import (
	"crypto/tls"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/pathmux"
	skrouting "github.com/zalando/skipper/routing"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// FuzzTranslate mutates the golden fixtures: whatever objects come out of
// the YAML, Translate must not panic and must emit a valid table.
func FuzzTranslate(f *testing.F) {
	for _, path := range fixturePaths(f) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, o, err := parseFixture(data, false)
		if err != nil {
			return
		}
		checkTable(t, s, o)
	})
}

// FuzzTranslateRule mutates the fields of one Ingress path, its Service
// port and an endpoint address, on top of a working snapshot.
func FuzzTranslateRule(f *testing.F) {
	f.Add("foo.com", "/api", "Prefix", int32(80), "", "http", int32(8080), "10.0.0.1")
	f.Add("*.foo.com", "/", "Exact", int32(0), "http", "http", int32(8080), "fd00::1")
	f.Add("", "", "ImplementationSpecific", int32(80), "", "", int32(0), "")
	f.Add("FOO.com.", "/a/:b", "Regex", int32(-1), "x", "", int32(70000), "10.0.0.1/8")
	f.Add("a.b.c", "/x\"y\\z\n", "Prefix", int32(80), "", "", int32(1), "::ffff:1.2.3.4")
	f.Add("meta.foo.com", "/", "Prefix", int32(80), "", "http", int32(80), "169.254.169.254") // refused, beside 10.0.0.2
	f.Add("meta.foo.com", "/", "Prefix", int32(80), "", "http", int32(80), "::ffff:127.0.0.1")
	f.Fuzz(func(t *testing.T, host, path, pathType string, port int32, portName, slicePortName string, slicePort int32, address string) {
		s := &Snapshot{IngressClasses: []*networkingv1.IngressClass{ingressClass("bulkhead", true)}}
		s.Services = append(s.Services, service("default", "echo", servicePort("http", 80)))
		slice := endpointSlice("default", "echo", "echo-1", slicePort, address, "10.0.0.2")
		slice.Ports[0].Name = &slicePortName
		s.EndpointSlices = append(s.EndpointSlices, slice, endpointSlice("default", "echo", "echo-6", 8080, address))
		s.EndpointSlices[1].AddressType = discoveryv1.AddressTypeIPv6

		ing := &networkingv1.Ingress{}
		ing.Namespace, ing.Name = "default", "fuzz"
		pt := networkingv1.PathType(pathType)
		backend := networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
			Name: "echo", Port: networkingv1.ServiceBackendPort{Number: port, Name: portName},
		}}
		ing.Spec.DefaultBackend = &backend
		ing.Spec.Rules = []networkingv1.IngressRule{
			{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{
					{Path: path, PathType: &pt, Backend: backend},
					{Path: "/", PathType: ptr(networkingv1.PathTypePrefix), Backend: backend},
				},
			}}},
			{IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{{Path: path, PathType: &pt, Backend: backend}},
			}}},
		}
		s.Ingresses = append(s.Ingresses, ing)
		checkTable(t, s, Options{})
	})
}

var validRouteID = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// checkTable translates and asserts what must hold for any input: unique,
// valid, sorted IDs; the table prints as eskip that parses back to the same
// routes; every path is accepted by skipper's path tree and starts with the
// key of the route's host; every route restores the request path first; the
// output is deterministic.
func checkTable(t *testing.T, s *Snapshot, o Options) {
	t.Helper()
	table := Translate(s, o)
	ids := make([]string, len(table.Routes))
	for i, r := range table.Routes {
		ids[i] = r.Eskip.Id
		if !validRouteID.MatchString(r.Eskip.Id) {
			t.Fatalf("invalid route ID %q", r.Eskip.Id)
		}
		checkPredicates(t, *r)
		if f := r.Eskip.Filters; len(f) == 0 || f[0].Name != RestorePathName || len(f[0].Args) != 0 {
			t.Fatalf("%s: the first filter is not %s()", r.Eskip.Id, RestorePathName)
		}
	}
	if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Fatalf("route IDs not sorted and unique: %q", ids)
	}
	if !slices.IsSortedFunc(table.Problems, compareProblems) {
		t.Fatal("problems not sorted")
	}
	if !slices.IsSortedFunc(table.Served, compareNames) || len(slices.Compact(slices.Clone(table.Served))) != len(table.Served) {
		t.Fatalf("served ingresses not sorted and unique: %v", table.Served)
	}

	printed := eskip.Print(eskip.PrettyPrintInfo{}, table.EskipRoutes()...)
	parsed, err := eskip.Parse(printed)
	if err != nil {
		t.Fatalf("emitted routes do not parse: %v\n%s", err, printed)
	}
	if len(parsed) != len(table.Routes) {
		t.Fatalf("parsed %d routes, emitted %d", len(parsed), len(table.Routes))
	}
	for i, p := range parsed {
		if p.Id != ids[i] || p.String() != table.Routes[i].Eskip.String() {
			t.Fatalf("route %s does not survive printing:\n%s\n%s", ids[i], p, table.Routes[i].Eskip)
		}
	}
	checkCertificates(t, s, table)
	if again := renderTable(Translate(s, o)); again != renderTable(table) {
		t.Fatal("two translations of one snapshot differ")
	}
}

// checkCertificates asserts what holds for any table's certificates: sorted,
// one per HTTPS listener of a Gateway in the snapshot, each a key pair
// crypto/tls accepts, and CertificateIndex agrees with Table.CertificateFor
// on every listener hostname and a few names around them.
func checkCertificates(t *testing.T, s *Snapshot, table Table) {
	t.Helper()
	if !slices.IsSortedFunc(table.Certificates, compareCertificates) {
		t.Fatal("certificates not sorted")
	}
	type listenerKey struct {
		gw       types.NamespacedName
		listener string
	}
	seen := map[listenerKey]bool{}
	ingressHosts := map[string]bool{}
	for _, c := range table.Certificates {
		if c.Default || c.Ingress.Name != "" {
			checkIngressCertificate(t, s, c, ingressHosts)
			continue
		}
		k := listenerKey{c.Gateway, c.Listener}
		if seen[k] {
			t.Fatalf("listener %v has two certificates", k)
		}
		seen[k] = true
		found := false
		for _, gw := range s.Gateways {
			if gw == nil || gw.Namespace != c.Gateway.Namespace || gw.Name != c.Gateway.Name {
				continue
			}
			for _, l := range gw.Spec.Listeners {
				found = found || string(l.Name) == c.Listener && l.Protocol == gatewayv1.HTTPSProtocolType && l.Port == c.Port
			}
		}
		if !found {
			t.Fatalf("certificate for %v: no such HTTPS listener on port %d", k, c.Port)
		}
		if _, err := tls.X509KeyPair(c.Cert, c.Key); err != nil {
			t.Fatalf("certificate for %v: %v", k, err)
		}
	}
	index := NewCertificateIndex(table.Certificates)
	for _, c := range table.Certificates {
		h := strings.TrimPrefix(c.Hostname, "*.")
		for _, name := range []string{"", c.Hostname, h, "a." + h, "a.b." + h, strings.ToUpper(h) + ".", "other.example"} {
			if got, want := index.Lookup(c.Port, name), table.CertificateFor(c.Port, name); got != want {
				t.Fatalf("port %d name %q: the index gives %+v, CertificateFor %+v", c.Port, name, got, want)
			}
		}
	}
}

// checkIngressCertificate checks a certificate of Ingress TLS (or the
// default one): port 0, one per host, of a served Ingress listing the host,
// a key pair crypto/tls accepts.
func checkIngressCertificate(t *testing.T, s *Snapshot, c Certificate, hosts map[string]bool) {
	t.Helper()
	if c.Port != IngressPort || c.Gateway.Name != "" {
		t.Fatalf("Ingress or default certificate %v with port %d, Gateway %v", c.Secret, c.Port, c.Gateway)
	}
	if hosts[c.Hostname] {
		t.Fatalf("two Ingress certificates for host %q", c.Hostname)
	}
	hosts[c.Hostname] = true
	if _, err := tls.X509KeyPair(c.Cert, c.Key); err != nil {
		t.Fatalf("certificate %v: %v", c.Secret, err)
	}
	if c.Default {
		if c.Hostname != "" || c.Ingress.Name != "" {
			t.Fatalf("default certificate with host %q, Ingress %v", c.Hostname, c.Ingress)
		}
		return
	}
	for _, ing := range slices.Concat(s.Ingresses, s.HeldIngresses) {
		if ing == nil || ing.Namespace != c.Ingress.Namespace || ing.Name != c.Ingress.Name {
			continue
		}
		for _, tl := range ing.Spec.TLS {
			for _, h := range tl.Hosts {
				if v, err := ruleVHost(h); err == nil && v == c.Hostname && tl.SecretName == c.Secret.Name && c.Secret.Namespace == ing.Namespace {
					return
				}
			}
		}
	}
	t.Fatalf("certificate for host %q: Ingress %v lists no such TLS host with Secret %v", c.Hostname, c.Ingress, c.Secret)
}

// checkPredicates checks the one path predicate of a route: skipper's tree
// accepts it, and it is the key of the route's vhost followed by its path.
// The default backend has none.
func checkPredicates(t *testing.T, r Route) {
	t.Helper()
	e := r.Eskip
	var path string
	subtree := false
	if e.Path != "" {
		path = e.Path
		checkTreePath(t, e.Id, path, false)
	}
	for _, p := range e.Predicates {
		switch p.Name {
		case "PathSubtree":
			if path != "" {
				t.Fatalf("%s: more than one path predicate", e.Id)
			}
			path, subtree = p.Args[0].(string), true
			checkTreePath(t, e.Id, path, true)
		case "Weight":
		case GatewayPortName, PathRegexpName, ListenerIsolationName, "Host", "Method", "Header", "HeaderRegexp", "QueryParam", "TrafficSegment":
			if r.Gateway == nil {
				t.Fatalf("%s: predicate %s on an Ingress route", e.Id, p.Name)
			}
		default:
			t.Fatalf("%s: unexpected predicate %s", e.Id, p.Name)
		}
	}
	if r.DefaultBackend {
		if path != "" {
			t.Fatalf("%s: the default backend has a path", e.Id)
		}
		return
	}
	key := ruleHostKey(r.VirtualHost)
	if len(e.HostRegexps) > 0 { // a Gateway wildcard's deeper names: host-less key, Host regexp
		key = ruleHostKey(anyHostVHostKey)
	}
	rest, ok := strings.CutPrefix(path, key)
	if !ok || rest != "" && rest[0] != '/' || !subtree && rest == "" {
		t.Fatalf("%s: path %q does not start with the key %q of its host %q", e.Id, path, key, r.Host)
	}
	if strings.Count(key, "/") != 2 || strings.Contains(rest, ":") {
		t.Fatalf("%s: path %q: the key %q must be exactly two segments, and the rule path has no wildcard", e.Id, path, key)
	}
}

// checkTreePath adds a path to a skipper path tree, as skipper's matcher
// does (a subtree also as "<path>/**").
func checkTreePath(t *testing.T, id, path string, subtree bool) {
	t.Helper()
	tree := &pathmux.Tree{}
	if err := tree.Add(path, 1); err != nil {
		t.Fatalf("%s: skipper's path tree refuses %q: %v", id, path, err)
	}
	if !subtree {
		return
	}
	if err := tree.Add(strings.TrimSuffix(path, "/")+"/**", 1); err != nil {
		t.Fatalf("%s: skipper's path tree refuses the subtree of %q: %v", id, path, err)
	}
}

// FuzzGatewayRule mutates one HTTPRoute rule's path match, filter and
// timeouts on top of a working Gateway snapshot: the table must be valid
// (checkTable), and every filter and predicate of bulkhead's own that a
// route carries must be accepted by its spec, as skipper would create it
// (a route skipper refuses would answer 404 instead of what the rule says).
func FuzzGatewayRule(f *testing.F) {
	f.Add("PathPrefix", "/api", "RequestRedirect", "https", "example.org", int32(8443), 301, "ReplacePrefixMatch", "/new", "", "")
	f.Add("Exact", "/x", "RequestRedirect", "", "", int32(0), 0, "ReplaceFullPath", "/y", "", "")
	f.Add("Exact", "/x", "URLRewrite", "", "internal.example", int32(0), 0, "ReplacePrefixMatch", "/y", "", "")
	f.Add("PathPrefix", "/", "URLRewrite", "", "", int32(0), 0, "ReplacePrefixMatch", "", "1s", "500ms")
	f.Add("RegularExpression", "/users/[0-9]+", "RequestHeaderModifier", "", "", int32(0), 0, "", "", "0s", "0s")
	f.Add("RegularExpression", "a)|(.*", "URLRewrite", "", "*.wild", int32(0), 0, "ReplaceFullPath", "relative", "1d", "25h")
	f.Add("PathPrefix", "/a", "RequestRedirect", "ftp", "a_b", int32(70000), 300, "ReplaceRegex", "/x", "1s", "2s")
	f.Add("PathPrefix", "/a", "ExtensionRef", "", "", int32(0), 0, "", "", "", "")
	f.Add("PathPrefix", "/m", "RequestMirror", "", "echo", int32(50), 0, "", "", "", "")
	f.Add("Exact", "/m", "RequestMirror", "", "missing", int32(0), 3, "", "", "", "")
	f.Add("PathPrefix", "/m", "RequestMirror", "", "", int32(150), 200, "", "", "", "")
	f.Fuzz(func(t *testing.T, pathType, pathValue, filterType, scheme, hostname string, port int32, status int, modType, modValue, request, backendRequest string) {
		s, o := gatewayFuzzSnapshot()
		rule := gatewayv1.HTTPRouteRule{
			Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{
				Type: ptr(gatewayv1.PathMatchType(pathType)), Value: &pathValue,
			}}},
		}
		mod := &gatewayv1.HTTPPathModifier{Type: gatewayv1.HTTPPathModifierType(modType)}
		if modType == string(gatewayv1.FullPathHTTPPathModifier) {
			mod.ReplaceFullPath = &modValue
		} else {
			mod.ReplacePrefixMatch = &modValue
		}
		if modType == "" {
			mod = nil
		}
		filter := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterType(filterType)}
		switch filter.Type {
		case gatewayv1.HTTPRouteFilterRequestRedirect:
			filter.RequestRedirect = &gatewayv1.HTTPRequestRedirectFilter{Path: mod}
			if scheme != "" {
				filter.RequestRedirect.Scheme = &scheme
			}
			if hostname != "" {
				filter.RequestRedirect.Hostname = ptr(gatewayv1.PreciseHostname(hostname))
			}
			if port != 0 {
				filter.RequestRedirect.Port = &port
			}
			if status != 0 {
				filter.RequestRedirect.StatusCode = &status
			}
		case gatewayv1.HTTPRouteFilterURLRewrite:
			filter.URLRewrite = &gatewayv1.HTTPURLRewriteFilter{Path: mod}
			if hostname != "" {
				filter.URLRewrite.Hostname = ptr(gatewayv1.PreciseHostname(hostname))
			}
		case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
			filter.RequestHeaderModifier = &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: gatewayv1.HTTPHeaderName(hostname), Value: modValue}}}
		case gatewayv1.HTTPRouteFilterRequestMirror:
			// hostname names the mirror's Service, port is a percent and
			// status a fraction's numerator (of 100).
			filter.RequestMirror = &gatewayv1.HTTPRequestMirrorFilter{BackendRef: gatewayv1.BackendObjectReference{
				Name: gatewayv1.ObjectName(hostname), Port: ptr(gatewayv1.PortNumber(80))}}
			if port != 0 {
				filter.RequestMirror.Percent = &port
			}
			if status != 0 {
				filter.RequestMirror.Fraction = &gatewayv1.Fraction{Numerator: int32(status)}
			}
		}
		rule.Filters = []gatewayv1.HTTPRouteFilter{filter}
		if filter.Type != gatewayv1.HTTPRouteFilterRequestRedirect {
			rule.BackendRefs = []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
				Name: "echo", Port: ptr(gatewayv1.PortNumber(80)),
			}}}}
		}
		if request != "" || backendRequest != "" {
			rule.Timeouts = &gatewayv1.HTTPRouteTimeouts{}
			if request != "" {
				rule.Timeouts.Request = ptr(gatewayv1.Duration(request))
			}
			if backendRequest != "" {
				rule.Timeouts.BackendRequest = ptr(gatewayv1.Duration(backendRequest))
			}
		}
		s.HTTPRoutes[0].Spec.Rules = append(s.HTTPRoutes[0].Spec.Rules, rule)
		checkTable(t, s, o)
		checkGatewaySpecs(t, Translate(s, o))
	})
}

// gatewayFuzzSnapshot is a class, a Gateway listening on 80 and 8080, and
// an HTTPRoute with one plain rule to a Service with an endpoint.
func gatewayFuzzSnapshot() (*Snapshot, Options) {
	s := &Snapshot{}
	s.GatewayClasses = []*gatewayv1.GatewayClass{{
		ObjectMeta: metav1.ObjectMeta{Name: "bulkhead"},
		Spec:       gatewayv1.GatewayClassSpec{ControllerName: DefaultGatewayControllerName},
	}}
	s.Gateways = []*gatewayv1.Gateway{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: gatewayv1.GatewaySpec{GatewayClassName: "bulkhead", Listeners: []gatewayv1.Listener{
			{Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType},
			{Name: "alt", Port: 8080, Protocol: gatewayv1.HTTPProtocolType, Hostname: ptr(gatewayv1.Hostname("*.example.com"))},
		}},
	}}
	s.HTTPRoutes = []*gatewayv1.HTTPRoute{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "fuzz"},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "web"}}},
			Hostnames:       []gatewayv1.Hostname{"*.example.com", "exact.example.org"},
			Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
				BackendObjectReference: gatewayv1.BackendObjectReference{Name: "echo", Port: ptr(gatewayv1.PortNumber(80))},
			}}}}},
		},
	}}
	s.Services = []*Service{service("default", "echo", servicePort("http", 80))}
	s.EndpointSlices = []*EndpointSlice{endpointSlice("default", "echo", "echo-1", 8080, "10.0.0.1")}
	return s, Options{GatewayPorts: []int32{80, 8080}}
}

// checkGatewaySpecs creates every filter and predicate of bulkhead's own
// that the table's routes carry, as skipper's routing would.
func checkGatewaySpecs(t *testing.T, table Table) {
	t.Helper()
	reg := gatewayFilterRegistry()
	preds := map[string]skrouting.PredicateSpec{GatewayPortName: NewGatewayPortSpec(), PathRegexpName: NewPathRegexpSpec(), ListenerIsolationName: NewListenerIsolationSpec()}
	for _, r := range table.Routes {
		for _, f := range r.Eskip.Filters {
			spec, ok := reg[f.Name]
			if !ok {
				t.Fatalf("%s: filter %s is not registered", r.Eskip.Id, f.Name)
			}
			if _, err := spec.CreateFilter(f.Args); err != nil {
				t.Fatalf("%s: %s%v refused: %v", r.Eskip.Id, f.Name, f.Args, err)
			}
		}
		for _, p := range r.Eskip.Predicates {
			if spec, ok := preds[p.Name]; ok {
				if _, err := spec.Create(p.Args); err != nil {
					t.Fatalf("%s: %s%v refused: %v", r.Eskip.Id, p.Name, p.Args, err)
				}
			}
		}
	}
}
