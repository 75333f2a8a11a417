package routing

import "k8s.io/apimachinery/pkg/types"

// rule is one path of one Ingress rule that survived validation, or the
// default backend (isDefault); whether it wins its host and path is
// decided across Ingresses (Translator.Translate).
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
	// sslRedirect: the Ingress asks for AnnotationSSLRedirect and its
	// spec.tls serves vhost (ingresstls.go).
	sslRedirect bool
}

// ruleKey is what two rules must not share: the same vhost and the same
// path meaning.
type ruleKey struct {
	vhost string
	match pathMatch
}

// describeOwner names the winner of a conflict for the loser's problem.
func describeOwner(owner, self types.NamespacedName) string {
	if owner == self {
		return "an earlier rule of the same ingress"
	}
	return "ingress " + owner.String() + ", which takes precedence"
}
