package routing

import "strings"

// placement is a rule placed into a vhost: its own, or a more specific one
// it was copied into.
type placement struct {
	rule  *rule
	vhost string
}

// placeRules puts every rule into the vhosts whose requests it may serve.
//
// Each request belongs to exactly one vhost (see HostMatcher): its exact
// host if that has rules, else the wildcard covering it if that has rules,
// else the host-less vhost "". Inside a vhost skipper picks the longest
// path. For the host class to come before the path, as the Ingress spec
// wants, a vhost must also hold the less specific rules its requests may
// fall through to: an exact vhost gets the rules of its wildcard and the
// host-less ones, a wildcard vhost the host-less ones. A copied rule is
// dropped where a rule of the vhost already matches every request it
// matches: there it could only win by being longer, which host precedence
// forbids.
func placeRules(rules []*rule) []placement {
	own := map[string][]*rule{}
	for _, r := range rules {
		own[r.vhost] = append(own[r.vhost], r)
	}
	anyHost := own[anyHostVHostKey]
	var out []placement
	for vhost, rs := range own {
		lower := [][]*rule{}
		switch {
		case vhost == anyHostVHostKey:
		case strings.HasPrefix(vhost, wildcardPrefix):
			lower = append(lower, anyHost)
		default:
			if parent, ok := parentDomain(vhost); ok {
				lower = append(lower, own[wildcardPrefix+parent])
			}
			lower = append(lower, anyHost)
		}
		out = append(out, placeIntoVHost(vhost, rs, lower)...)
	}
	return out
}

// placeIntoVHost places the vhost's own rules and the not yet covered rules
// of each lower class, most specific class first.
func placeIntoVHost(vhost string, own []*rule, lowerClasses [][]*rule) []placement {
	out := make([]placement, 0, len(own))
	for _, r := range own {
		out = append(out, placement{rule: r, vhost: vhost})
	}
	if !anyRules(lowerClasses) {
		return out // the common case: no sets to build
	}
	covered := newPathSet()
	for _, r := range own {
		covered.add(r.match)
	}
	for _, class := range lowerClasses {
		var kept []*rule
		for _, r := range class {
			if !covered.covers(r.match) {
				kept = append(kept, r)
				out = append(out, placement{rule: r, vhost: vhost})
			}
		}
		// Added after the whole class is checked: rules of one class do not
		// shadow each other, the path tree orders them.
		for _, r := range kept {
			covered.add(r.match)
		}
	}
	return out
}

func anyRules(classes [][]*rule) bool {
	for _, c := range classes {
		if len(c) > 0 {
			return true
		}
	}
	return false
}
