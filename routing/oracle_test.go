package routing

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dimfeld/httppath"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestMatcherAgreesWithSpecOracle checks host dispatch in skipper's path
// tree (PrepareRequest and the emitted routes) against a direct reading of
// the semantics: among all rules matching a request, the
// one with the most specific host class wins, then the longest path, then
// Exact over Prefix; no rule: the default backend, else 404. Random rule
// sets over a small universe of hosts and paths make the overlaps that
// matter (exact host vs its wildcard vs host-less, prefixes under prefixes,
// Exact vs Prefix on one path, conflicts) frequent; skipper's real matcher
// must answer every request as the oracle does.
func TestMatcherAgreesWithSpecOracle(t *testing.T) {
	ruleHosts := []string{"a.com", "b.a.com", "*.a.com", "*.com", "c.b.a.com", "*.b.a.com", "B.A.com", "", "com", "Localhost", "a", "ab.com"}
	rulePaths := []string{"/", "", "/x", "/x/", "/x/y", "/x/y/", "/xy", "/x/y/z", "/y", "/com", "/com/a", "/a.com/b"}
	pathTypes := []networkingv1.PathType{networkingv1.PathTypeExact, networkingv1.PathTypePrefix, networkingv1.PathTypeImplementationSpecific}
	reqHosts := []string{
		"a.com", "A.COM:80", "a.com.", "b.a.com", "z.a.com", "c.b.a.com", "d.b.a.com", "x.c.b.a.com", "com", "q.com", "other.org", "",
		"localhost", "LOCALHOST.:8080", "a", "ab.com", "a_b.a.com", "*.a.com", "a.com..", "[fd00::1]:80", "fd00::1", "10.0.0.1", "~",
	}
	reqPaths := []string{
		"/", "", "/x", "/x/", "/x/y", "/x/y/", "/xy", "/x/y/z", "/x/y/z/", "/x/yz", "/y", "/y/x", "/z",
		// Unclean paths are cleaned before matching; ".." must not climb
		// into the host key.
		"//x", "/x/./y", "/z/../x/y", "/..", "/../x", "/../../com/a/x", "/x/../../a.com/b/x", "/./com/b/x/..",
	}

	rng := rand.New(rand.NewPCG(7, 11))
	rounds := 200
	if testing.Short() {
		rounds = 20
	}
	for round := range rounds {
		var rules []oracleRule
		s := &Snapshot{IngressClasses: []*networkingv1.IngressClass{ingressClass("bulkhead", true)}}
		s.Services = append(s.Services, service("default", "echo", servicePort("http", 80)))
		s.EndpointSlices = append(s.EndpointSlices, endpointSlice("default", "echo", "echo-1", 8080, "10.0.0.1"))
		for i := range 1 + rng.IntN(8) {
			r := oracleRule{
				name:     fmt.Sprintf("r%d", i),
				host:     ruleHosts[rng.IntN(len(ruleHosts))],
				path:     rulePaths[rng.IntN(len(rulePaths))],
				pathType: pathTypes[rng.IntN(len(pathTypes))],
			}
			rules = append(rules, r)
			s.Ingresses = append(s.Ingresses, r.ingress(i))
		}
		hasDefault := rng.IntN(3) == 0
		if hasDefault {
			s.Ingresses = append(s.Ingresses, defaultBackendIngress("def"))
		}
		shuffle(rng, s.Ingresses)

		r := newRouter(t, Translate(s, Options{}))
		for _, host := range reqHosts {
			for _, path := range reqPaths {
				want := oracle(rules, hasDefault, host, path)
				if got := describe(r.lookup(t, host, path)); got != want {
					t.Fatalf("round %d: %s%s: got %q, want %q\nrules: %+v", round, host, path, got, want, rules)
				}
			}
		}
	}
}

type oracleRule struct {
	name, host, path string
	pathType         networkingv1.PathType
}

// ingress makes the rule its own Ingress, created i minutes after a fixed
// instant, so that earlier rules win conflicts.
func (r oracleRule) ingress(i int) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{}
	ing.Namespace, ing.Name = "default", r.name
	ing.CreationTimestamp = metav1.NewTime(time.Date(2024, 1, 1, 0, i, 0, 0, time.UTC))
	ing.Spec.Rules = []networkingv1.IngressRule{{
		Host: r.host,
		IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
			Paths: []networkingv1.HTTPIngressPath{{Path: r.path, PathType: ptr(r.pathType), Backend: echoBackend()}},
		}},
	}}
	return ing
}

func defaultBackendIngress(name string) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{}
	ing.Namespace, ing.Name = "default", name
	b := echoBackend()
	ing.Spec.DefaultBackend = &b
	return ing
}

func echoBackend() networkingv1.IngressBackend {
	return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
		Name: "echo", Port: networkingv1.ServiceBackendPort{Number: 80},
	}}
}

// oracle answers a request straight from the rules, in their precedence
// order, without host keys or path trees.
func oracle(rules []oracleRule, hasDefault bool, host, path string) string {
	h := oracleHost(host)
	path = httppath.Clean(path) // as skipper cleans request paths
	seen := map[string]bool{}
	best, bestRank := -1, [3]int{}
	for i, r := range rules {
		ruleHost := strings.TrimSuffix(strings.ToLower(r.host), ".")
		exact := r.pathType == networkingv1.PathTypeExact
		p := r.path
		if p == "" {
			p = "/"
		}
		if !exact && p != "/" {
			p = strings.TrimSuffix(p, "/")
		}
		key := fmt.Sprint(ruleHost, exact, p)
		if seen[key] {
			continue // lost a conflict
		}
		seen[key] = true
		class := hostClass(ruleHost, h)
		if class < 0 || !pathMatches(exact, p, path) {
			continue
		}
		rank := [3]int{class, len(p), boolInt(exact)}
		if best < 0 || compareRanks(rank, bestRank) > 0 {
			best, bestRank = i, rank
		}
	}
	switch {
	case best >= 0:
		r := rules[best]
		return fmt.Sprintf("default/%s %s%s %s", r.name, r.host, r.path, r.pathType)
	case hasDefault:
		return "default/def default"
	default:
		return "404"
	}
}

var oracleDNSName = regexp.MustCompile(`^[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*$`)

// oracleHost reads a Host header as doc.go says: without port and one
// trailing dot, lowercase, a DNS name (letters, digits, '-' and '_' in
// labels of 1 to 63, 253 in all) or nothing ("", which only host-less
// rules match).
func oracleHost(host string) string {
	if strings.HasPrefix(host, "[") || strings.Count(host, ":") > 1 {
		return "" // IPv6
	}
	host, _, _ = strings.Cut(host, ":")
	host = strings.TrimSuffix(asciiLower(host), ".")
	if len(host) > 253 || !oracleDNSName.MatchString(host) {
		return ""
	}
	return host
}

func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// hostClass is 2 for the same host, 1 for the wildcard of its parent, 0 for
// a host-less rule, -1 for a rule that does not apply to host ("" when the
// request host is not a DNS name).
func hostClass(ruleHost, host string) int {
	switch {
	case ruleHost == "":
		return 0
	case host == "":
		return -1
	case ruleHost == host:
		return 2
	}
	if dot := strings.IndexByte(host, '.'); dot > 0 && ruleHost == "*."+host[dot+1:] {
		return 1
	}
	return -1
}

func pathMatches(exact bool, rulePath, path string) bool {
	if exact {
		return path == rulePath
	}
	return rulePath == "/" || path == rulePath || strings.HasPrefix(path, rulePath+"/")
}

func compareRanks(a, b [3]int) int {
	for i := range a {
		if a[i] != b[i] {
			return a[i] - b[i]
		}
	}
	return 0
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
