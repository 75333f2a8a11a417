package routing

import (
	"fmt"
	"net/netip"
	"strings"
)

const (
	wildcardPrefix  = "*."
	maxDNSNameLen   = 253
	maxDNSLabelLen  = 63
	anyHostVHostKey = ""
)

// ruleVHost turns the host of an Ingress rule into its vhost key: a
// lowercase DNS name ("foo.com"), a wildcard of one ("*.foo.com"), or "" for
// a rule without host. Hosts are case-insensitive and a trailing dot names
// the same host, so both are normalised away here, once, instead of on every
// comparison.
func ruleVHost(host string) (string, error) {
	if host == "" {
		return anyHostVHostKey, nil
	}
	h := strings.TrimSuffix(lowerASCII(host), ".")
	name, wildcard := strings.CutPrefix(h, wildcardPrefix)
	if err := checkDNSName(name); err != nil {
		return "", err
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return "", fmt.Errorf("an IP address is not a host name")
	}
	if wildcard {
		return wildcardPrefix + name, nil
	}
	return name, nil
}

// checkDNSName accepts what Kubernetes accepts as an Ingress host (an
// RFC 1123 subdomain, here already lowercase). Anything else could never
// equal a Host header we would route, or would be ambiguous with a wildcard.
func checkDNSName(name string) error {
	if name == "" {
		return fmt.Errorf("empty DNS name")
	}
	if len(name) > maxDNSNameLen {
		return fmt.Errorf("longer than %d characters", maxDNSNameLen)
	}
	for label := range strings.SplitSeq(name, ".") {
		if err := checkDNSLabel(label); err != nil {
			return err
		}
	}
	return nil
}

func checkDNSLabel(label string) error {
	if label == "" {
		return fmt.Errorf("empty label")
	}
	if len(label) > maxDNSLabelLen {
		return fmt.Errorf("label longer than %d characters", maxDNSLabelLen)
	}
	if label[0] == '-' || label[len(label)-1] == '-' {
		return fmt.Errorf("label %q begins or ends with '-'", label)
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		if !isLowerAlnum(c) && c != '-' {
			return fmt.Errorf("label %q contains %q", label, c)
		}
	}
	return nil
}

func isLowerAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
}

func toLowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// lowerASCII lowercases the ASCII letters of s, allocating only when there
// is one to change. Other bytes are kept: Unicode folding would let, say, the
// Kelvin sign stand for "k".
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				b[j] = toLowerASCII(b[j])
			}
			return string(b)
		}
	}
	return s
}
