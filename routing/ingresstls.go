package routing

import (
	"crypto/x509"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
)

// InvalidCertificate: an Ingress's spec.tls entry (or the default
// certificate) names no Secret, no hosts, a Secret that is not there (only
// kubernetes.io/tls Secrets are read), or one whose tls.crt and tls.key are
// not a key pair crypto/tls accepts. That entry is not served: its hosts
// get another certificate if one matches (another Ingress's, the default),
// the Ingress's routes are served as before (over plain HTTP, and over TLS
// with whatever certificate the handshake found), and its ssl-redirect
// does not apply to those hosts.
const InvalidCertificate Reason = "InvalidCertificate"

// CertificateHostMismatch: the certificate of an Ingress's spec.tls entry
// does not cover one of the entry's hosts (its leaf's DNS names, as a
// client checks them). It is served all the same (the Secret is what the
// Ingress asks for, and it may be what its clients pin), and reported so
// that the mistake is seen before a client refuses it.
const CertificateHostMismatch Reason = "CertificateHostMismatch"

// AnnotationSSLRedirect ("true") answers requests to the hosts of the
// Ingress's spec.tls that did not come over TLS with 308 to the same URL
// with https (see doc.go, "TLS for Ingresses").
const AnnotationSSLRedirect = annotationPrefix + "ssl-redirect"

// SSLRedirectName is the filter the translation puts, after
// bulkheadRestorePath, on routes of an Ingress with AnnotationSSLRedirect
// whose host has a served certificate of that Ingress (sslredirect.go).
const SSLRedirectName = "bulkheadSSLRedirect"

// secretDep is a Secret an entry read (nil: none of that name, or
// several), as serviceDep is for Services.
type secretDep struct {
	name   types.NamespacedName
	secret *corev1.Secret
}

// indexSecrets indexes the snapshot's Secrets by name when the list
// changed; a name held by several is nil (gateway.go reports them as
// DuplicateObject).
func (t *Translator) indexSecrets(secrets []*corev1.Secret) {
	t.sameSecrets = t.gen > 1 && slices.Equal(secrets, t.indexedSecrets)
	if t.sameSecrets {
		return
	}
	if t.secretIndex == nil {
		t.secretIndex = map[types.NamespacedName]*corev1.Secret{}
	}
	clear(t.secretIndex)
	for _, s := range secrets {
		if s == nil {
			continue
		}
		k := objectKey(s.Namespace, s.Name)
		if _, dup := t.secretIndex[k]; dup {
			t.secretIndex[k] = nil
			continue
		}
		t.secretIndex[k] = s
	}
	t.indexedSecrets = append(t.indexedSecrets[:0], secrets...)
}

// tlsEntry is one host of an Ingress's spec.tls with its Secret's key pair
// checked, or the problem that keeps it from being served.
type tlsEntry struct {
	vhost  string
	secret types.NamespacedName
	kp     keyPair
}

// ingressTLS reads an Ingress's spec.tls against the current Secrets:
// the hosts whose certificate can be served, and problems for the rest.
// It records the Secrets it read in deps when deps is not nil.
func (t *Translator) ingressTLS(ing *networkingv1.Ingress, ref types.NamespacedName, deps *[]secretDep, problem func(Reason, string, ...any)) []tlsEntry {
	var out []tlsEntry
	for i, tls := range ing.Spec.TLS {
		if tls.SecretName == "" {
			problem(InvalidCertificate, "spec.tls[%d] names no Secret; its hosts are not served over TLS by this Ingress", i)
			continue
		}
		name := objectKey(ing.Namespace, tls.SecretName)
		if len(tls.Hosts) == 0 {
			problem(InvalidCertificate, "spec.tls[%d] (Secret %s) lists no hosts; ignored (the certificate for any other name is the router's -default-certificate)", i, name)
			continue
		}
		sec := t.secretIndex[name]
		if deps != nil {
			*deps = append(*deps, secretDep{name, sec})
		}
		var kp keyPair
		if sec == nil {
			kp.problem = "not found (only Secrets of type " + string(corev1.SecretTypeTLS) + " are read)"
		} else {
			kp = t.keyPair(sec)
		}
		if kp.problem != "" {
			problem(InvalidCertificate, "spec.tls[%d]: Secret %s %s; hosts %s are not served over TLS with it", i, name, kp.problem, strings.Join(tls.Hosts, ", "))
			continue
		}
		for _, h := range tls.Hosts {
			vhost, err := ruleVHost(h)
			if err != nil || vhost == anyHostVHostKey {
				problem(InvalidHost, "spec.tls[%d] host %q is invalid (%v); ignored", i, h, err)
				continue
			}
			out = append(out, tlsEntry{vhost: vhost, secret: name, kp: kp})
		}
	}
	return out
}

// ingressCertificates are the Ingress certificates of a call: each TLS
// host goes to the first Ingress in precedence order (the live ones
// oldest first, then those the deletion guard holds) that lists it with a
// Secret that can be served; a later Ingress naming another Secret for it
// is a Conflict, one naming the same Secret is not. Then the default
// certificate.
func (t *Translator) ingressCertificates(order, held []*ingressEntry, o Options, problems *[]Problem) []Certificate {
	var certs []Certificate
	owner := map[string]int{} // vhost -> index in certs
	for _, list := range [][]*ingressEntry{order, held} {
		for _, e := range list {
			if len(e.ing.Spec.TLS) == 0 {
				continue
			}
			ref := e.ref()
			entries := t.ingressTLS(e.ing, ref, nil, func(reason Reason, format string, args ...any) {
				*problems = append(*problems, ingressProblem(ref, reason, format, args...))
			})
			for _, te := range entries {
				if i, taken := owner[te.vhost]; taken {
					if c := &certs[i]; c.Secret != te.secret {
						*problems = append(*problems, ingressProblem(ref, Conflict, "TLS host %q is already served with Secret %s by %s; Secret %s is not used for it",
							te.vhost, c.Secret, describeOwner(c.Ingress, ref), te.secret))
					}
					continue
				}
				if !covers(te.kp.leaf, te.vhost) {
					*problems = append(*problems, ingressProblem(ref, CertificateHostMismatch,
						"TLS host %q: the certificate of Secret %s does not cover it (names %s); served all the same", te.vhost, te.secret, strings.Join(te.kp.leaf.DNSNames, ", ")))
				}
				owner[te.vhost] = len(certs)
				certs = append(certs, Certificate{Port: IngressPort, Hostname: te.vhost, Ingress: ref, Secret: te.secret,
					Cert: te.kp.cert, Key: te.kp.key})
			}
		}
	}
	if d := o.DefaultCertificate; d != (types.NamespacedName{}) {
		sec := t.secretIndex[d]
		var kp keyPair
		if sec == nil {
			kp.problem = "not found (only Secrets of type " + string(corev1.SecretTypeTLS) + " are read)"
		} else {
			kp = t.keyPair(sec)
		}
		if kp.problem != "" {
			*problems = append(*problems, Problem{Kind: kindSecret, Namespace: d.Namespace, Name: d.Name, Reason: InvalidCertificate,
				Message: "the default certificate (-default-certificate) " + kp.problem + "; a handshake no other certificate matches fails"})
		} else {
			certs = append(certs, Certificate{Port: IngressPort, Default: true, Secret: d, Cert: kp.cert, Key: kp.key})
		}
	}
	return certs
}

// covers reports whether a leaf certificate is valid for a TLS host as
// a client checks it; for a wildcard host, for a name one label below it.
func covers(leaf *x509.Certificate, vhost string) bool {
	if leaf == nil {
		return true // nothing to say
	}
	name := vhost
	if rest, ok := strings.CutPrefix(vhost, wildcardPrefix); ok {
		name = "x." + rest
	}
	return leaf.VerifyHostname(name) == nil
}

// sslRedirect reads AnnotationSSLRedirect; a bad value is a problem and
// means no redirect.
func sslRedirect(ing *networkingv1.Ingress, problem func(Reason, string, ...any)) bool {
	v, ok := ing.Annotations[AnnotationSSLRedirect]
	if !ok {
		return false
	}
	switch strings.TrimSpace(v) {
	case "true":
		return true
	case "false":
	default:
		problem(InvalidAnnotation, "annotation %s %q: want true or false; no redirect", AnnotationSSLRedirect, v)
	}
	return false
}

// redirectHosts are the TLS hosts of an Ingress with AnnotationSSLRedirect
// whose own Secret can be served (nil without the annotation): a host
// whose certificate is broken keeps being served over plain HTTP rather
// than sending clients to a handshake that fails. Whether another
// Ingress's certificate won the host does not matter: it is served over
// TLS either way.
func (t *Translator) redirectHosts(ing *networkingv1.Ingress, ref types.NamespacedName, deps *[]secretDep, problem func(Reason, string, ...any)) []string {
	if !sslRedirect(ing, problem) {
		return nil
	}
	var hosts []string
	for _, te := range t.ingressTLS(ing, ref, deps, func(Reason, string, ...any) {}) {
		hosts = append(hosts, te.vhost)
	}
	if hosts == nil {
		hosts = []string{} // asked for, none served: still recorded
	}
	return hosts
}

// tlsCovers reports whether a TLS host covers a rule's vhost: the same
// name, or a wildcard and a name exactly one label below it (the Ingress
// meaning of "*."). A host-less rule is covered by none.
func tlsCovers(tlsHost, vhost string) bool {
	if tlsHost == vhost {
		return vhost != anyHostVHostKey
	}
	suffix, ok := strings.CutPrefix(tlsHost, wildcardPrefix)
	if !ok || strings.HasPrefix(vhost, wildcardPrefix) {
		return false
	}
	label, rest, found := strings.Cut(vhost, ".")
	return found && label != "" && rest == suffix
}

func redirects(hosts []string, vhost string) bool {
	for _, h := range hosts {
		if tlsCovers(h, vhost) {
			return true
		}
	}
	return false
}

// secretsSame reports whether the Secrets an entry read are those of the
// current call.
func (t *Translator) secretsSame(e *ingressEntry) bool {
	for _, d := range e.secretDeps {
		if t.secretIndex[d.name] != d.secret {
			return false
		}
	}
	return true
}
