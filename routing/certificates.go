package routing

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Certificate is a key pair the router serves, and where it came from
// (see doc.go, "HTTPS listeners" and "TLS for Ingresses"): the listener
// of an HTTPS Gateway (Gateway set), a host of an Ingress's spec.tls
// (Ingress set), or the default certificate (Default).
type Certificate struct {
	// Port is the Gateway listener's port; 0 for Ingress certificates
	// and the default one, which every TLS listener offers after the
	// certificates of its Gateway port.
	Port int32 `json:"port"`
	// Hostname is the listener's hostname or the Ingress's TLS host,
	// lowercased, without a trailing dot: "foo.com", "*.foo.com" (one or
	// more labels before "foo.com"), or "" for a listener without
	// hostname and for the default certificate (any name, and no SNI).
	Hostname string `json:"hostname,omitempty"`
	// Gateway and Listener name the listener.
	Gateway  types.NamespacedName `json:"gateway"`
	Listener string               `json:"listener"`
	// Ingress names the Ingress whose spec.tls lists Hostname (it won the
	// host: see doc.go); zero for the others. Default marks the default
	// certificate (Options.DefaultCertificate). A table stored before
	// these fields existed holds Gateway certificates only, which is what
	// it reads as.
	Ingress types.NamespacedName `json:"ingress,omitzero"`
	Default bool                 `json:"default,omitempty"`
	// Secret is the listener's first certificateRef, the Ingress's
	// spec.tls secretName, or the default certificate's Secret.
	Secret types.NamespacedName `json:"secret"`
	// Cert and Key are the Secret's tls.crt and tls.key as stored there
	// (PEM: the certificate chain, leaf first, and the private key); they
	// form a key pair crypto/tls accepts (tls.X509KeyPair). Copies, not
	// the Secret's own bytes; they must not be modified.
	Cert []byte `json:"cert"`
	Key  []byte `json:"key"`
}

// compareCertificates is the order of Table.Certificates: port (Ingress
// certificates and the default one, port 0, first), then the most
// specific hostname first (exact, longer wildcard suffix, none), then
// hostname, Gateway, listener and Ingress, so the first entry of a port
// that matches a server name is the one to serve.
func compareCertificates(a, b Certificate) int {
	return cmp.Or(
		cmp.Compare(a.Port, b.Port),
		-cmp.Compare(hostSpecificity(a.Hostname), hostSpecificity(b.Hostname)),
		cmp.Compare(a.Hostname, b.Hostname),
		cmp.Compare(a.Gateway.Namespace, b.Gateway.Namespace),
		cmp.Compare(a.Gateway.Name, b.Gateway.Name),
		cmp.Compare(a.Listener, b.Listener),
		compareNames(a.Ingress, b.Ingress),
		compareBool(a.Default, b.Default),
	)
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// IngressPort is the Port of Ingress certificates and the default one in
// Table.Certificates and CertificateIndex: no Gateway listener has it.
const IngressPort int32 = 0

// Matches reports whether c serves serverName (as normalised by
// CertificateFor): an exact hostname equals it, a wildcard "*.foo.com"
// matches names with one or more labels before "foo.com", no hostname
// matches any name and no name.
func (c *Certificate) Matches(serverName string) bool {
	return listenerHostMatches(c.Hostname, serverName)
}

// listenerHostMatches reports whether a listener hostname ("" any,
// "*.foo.com", "a.foo.com") matches a normalised name (lowercase, no
// trailing dot, no port): a wildcard matches one or more labels before
// its suffix.
func listenerHostMatches(listener, name string) bool {
	switch {
	case listener == "":
		return true
	case name == "":
		return false
	case strings.HasPrefix(listener, wildcardPrefix):
		suffix := listener[len(wildcardPrefix)-1:] // ".foo.com"
		return len(name) > len(suffix) && strings.HasSuffix(name, suffix) && name[0] != '.'
	}
	return listener == name
}

// CertificateFor returns the certificate to serve on port for a TLS
// ClientHello's server name (SNI; "" when the client sent none), or nil
// when none matches (the handshake must fail). An exact listener hostname
// wins over a wildcard, a longer wildcard over a shorter one, and either
// over a listener without hostname; without SNI only a listener without
// hostname matches. Among listeners of several Gateways with the same
// port and hostname the first in Table.Certificates order (Gateway
// namespace and name) wins.
//
// It scans the table; a TLS layer answering every handshake builds a
// CertificateIndex once per table instead.
func (t Table) CertificateFor(port int32, serverName string) *Certificate {
	name := normalizeServerName(serverName)
	for i := range t.Certificates {
		if c := &t.Certificates[i]; c.Port == port && c.Matches(name) {
			return c
		}
	}
	return nil
}

// normalizeServerName lowercases a server name and drops a trailing dot,
// as listener hostnames are kept.
func normalizeServerName(s string) string {
	return strings.ToLower(strings.TrimSuffix(s, "."))
}

// CertificateIndex answers CertificateFor with a few map lookups: built
// once per table (NewCertificateIndex), it is read-only and safe for
// concurrent use.
type CertificateIndex struct {
	ports map[int32]*portCertificates
}

type portCertificates struct {
	exact map[string]*Certificate
	wild  map[string]*Certificate // by suffix without "*.": "foo.com"
	any   *Certificate
}

// NewCertificateIndex indexes certs, sorted as Table.Certificates are. It
// points into certs, which must not be modified afterwards.
func NewCertificateIndex(certs []Certificate) *CertificateIndex {
	x := &CertificateIndex{ports: map[int32]*portCertificates{}}
	for i := range certs {
		c := &certs[i]
		p := x.ports[c.Port]
		if p == nil {
			p = &portCertificates{exact: map[string]*Certificate{}, wild: map[string]*Certificate{}}
			x.ports[c.Port] = p
		}
		switch {
		case c.Hostname == "":
			if p.any == nil {
				p.any = c
			}
		case strings.HasPrefix(c.Hostname, wildcardPrefix):
			if s := strings.TrimPrefix(c.Hostname, wildcardPrefix); p.wild[s] == nil {
				p.wild[s] = c
			}
		default:
			if p.exact[c.Hostname] == nil {
				p.exact[c.Hostname] = c
			}
		}
	}
	return x
}

// Ports returns the ports with at least one certificate, sorted: the
// Gateway ports that terminate TLS.
func (x *CertificateIndex) Ports() []int32 {
	out := make([]int32, 0, len(x.ports))
	for p := range x.ports {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Serve picks the certificate a listener serving Gateway port port (0:
// none) offers for a server name: the port's Gateway listeners' first
// (Lookup), then the Ingress certificates, then the default certificate;
// nil when none matches (the handshake must fail).
func (x *CertificateIndex) Serve(port int32, serverName string) *Certificate {
	if port != IngressPort {
		if c := x.Lookup(port, serverName); c != nil {
			return c
		}
	}
	return x.Lookup(IngressPort, serverName)
}

// Lookup is Table.CertificateFor on the indexed certificates.
func (x *CertificateIndex) Lookup(port int32, serverName string) *Certificate {
	p := x.ports[port]
	if p == nil {
		return nil
	}
	name := normalizeServerName(serverName)
	if name == "" {
		return p.any
	}
	if c := p.exact[name]; c != nil {
		return c
	}
	// The longest suffix first: "a.b.foo.com" tries "*.b.foo.com", then
	// "*.foo.com", then "*.com".
	for i := strings.IndexByte(name, '.'); i > 0 && i < len(name)-1; {
		if c := p.wild[name[i+1:]]; c != nil {
			return c
		}
		j := strings.IndexByte(name[i+1:], '.')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return p.any
}

// keyPair is what a Secret offers as a certificate: its tls.crt and
// tls.key (copies), or why it cannot be served.
type keyPair struct {
	cert, key []byte
	leaf      *x509.Certificate // parsed by crypto/tls, for the names it covers
	problem   string
}

// checkKeyPair reads a kubernetes.io/tls Secret and checks that its
// tls.crt and tls.key form a key pair crypto/tls accepts.
func checkKeyPair(s *corev1.Secret) keyPair {
	if s.Type != corev1.SecretTypeTLS {
		return keyPair{problem: "is of type " + cmp.Or(string(s.Type), `""`) + ", not " + string(corev1.SecretTypeTLS)}
	}
	crt, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	switch {
	case len(crt) == 0:
		return keyPair{problem: "has no " + corev1.TLSCertKey}
	case len(key) == 0:
		return keyPair{problem: "has no " + corev1.TLSPrivateKeyKey}
	}
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		return keyPair{problem: "holds no usable key pair in " + corev1.TLSCertKey + " and " + corev1.TLSPrivateKeyKey + ": " + err.Error()}
	}
	return keyPair{cert: bytes.Clone(crt), key: bytes.Clone(key), leaf: pair.Leaf}
}
