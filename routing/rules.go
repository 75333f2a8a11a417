package routing

import (
	"fmt"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
)

// rule is one path of one Ingress rule that survived validation and
// conflict resolution, or the default backend (isDefault).
type rule struct {
	ingress types.NamespacedName
	// host, path and pathType as written (pathType "ImplementationSpecific"
	// when missing).
	host, path, pathType string
	vhost                string // normalised host: "foo.com", "*.foo.com" or ""
	match                pathMatch
	isDefault            bool
	backend              *backend
	upstream             upstreamSettings
}

// ruleKey is what two rules must not share: the same vhost and the same
// path meaning.
type ruleKey struct {
	vhost string
	match pathMatch
}

// ruleCollector turns served Ingresses, in precedence order, into rules. The
// first claim of a ruleKey (or of the default backend) wins; later ones are
// problems.
type ruleCollector struct {
	backends       *backendIndex
	problems       *[]Problem
	claimed        map[ruleKey]types.NamespacedName
	rules          []*rule
	defaultBackend *rule
}

func collectRules(ingresses []*networkingv1.Ingress, backends *backendIndex, problems *[]Problem) ([]*rule, *rule) {
	c := &ruleCollector{backends: backends, problems: problems, claimed: map[ruleKey]types.NamespacedName{}}
	for _, ing := range ingresses {
		c.addIngress(ing)
	}
	return c.rules, c.defaultBackend
}

func (c *ruleCollector) addIngress(ing *networkingv1.Ingress) {
	ref := objectKey(ing.Namespace, ing.Name)
	settings := parseUpstreamSettings(ing, ref, c.problem)
	if ing.Spec.DefaultBackend != nil {
		c.addDefaultBackend(ing, ref, settings)
	}
	for _, ir := range ing.Spec.Rules {
		vhost, err := ruleVHost(ir.Host)
		if err != nil {
			c.problem(ref, InvalidHost, "rule host %q is invalid (%v); rule ignored", ir.Host, err)
			continue
		}
		if ir.HTTP == nil {
			continue
		}
		for i := range ir.HTTP.Paths {
			c.addPath(ing, ref, ir.Host, vhost, &ir.HTTP.Paths[i], settings)
		}
	}
}

func (c *ruleCollector) addDefaultBackend(ing *networkingv1.Ingress, ref types.NamespacedName, settings upstreamSettings) {
	if c.defaultBackend != nil {
		c.problem(ref, DuplicateDefaultBackend,
			"ingress %s, which takes precedence, already defines the default backend; this one is ignored",
			c.defaultBackend.ingress)
		return
	}
	c.defaultBackend = &rule{ingress: ref, isDefault: true, backend: c.resolve(ing, ref, ing.Spec.DefaultBackend), upstream: settings}
}

func (c *ruleCollector) addPath(ing *networkingv1.Ingress, ref types.NamespacedName, host, vhost string, p *networkingv1.HTTPIngressPath, settings upstreamSettings) {
	match, pathType, err := parsePathMatch(p.Path, p.PathType)
	if err != nil {
		c.problem(ref, InvalidPath, "host %q path %q (%s): %v; path ignored", host, p.Path, pathType, err)
		return
	}
	key := ruleKey{vhost: vhost, match: match}
	if owner, taken := c.claimed[key]; taken {
		c.problem(ref, Conflict, "host %q path %q (%s) is already routed by %s; path ignored",
			host, p.Path, pathType, describeOwner(owner, ref))
		return
	}
	c.claimed[key] = ref
	c.rules = append(c.rules, &rule{
		ingress: ref, host: host, path: p.Path, pathType: pathType,
		vhost: vhost, match: match,
		backend:  c.resolve(ing, ref, &p.Backend),
		upstream: settings,
	})
}

func describeOwner(owner, self types.NamespacedName) string {
	if owner == self {
		return "an earlier rule of the same ingress"
	}
	return "ingress " + owner.String() + ", which takes precedence"
}

// resolve resolves a backend and reports it when it cannot serve: the route
// stays (answering 503) and the Ingress gets a problem.
func (c *ruleCollector) resolve(ing *networkingv1.Ingress, ref types.NamespacedName, b *networkingv1.IngressBackend) *backend {
	r := c.backends.resolve(ing.Namespace, b)
	if !r.usable() {
		c.problem(ref, r.reason, "%s", r.unavailable)
	}
	return r
}

func (c *ruleCollector) problem(ref types.NamespacedName, reason Reason, format string, args ...any) {
	*c.problems = append(*c.problems, Problem{
		Kind: "Ingress", Namespace: ref.Namespace, Name: ref.Name,
		Reason: reason, Message: fmt.Sprintf(format, args...),
	})
}
