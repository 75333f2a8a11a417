package routing

import (
	"net/netip"
)

// Endpoints that pods and tenants can write (a selector-less Service with a
// hand-written EndpointSlice) must not turn the router into a way from the
// internet into the router itself or into what only its node should reach:
// the class of CVE-2021-25740. The fixed ranges below are refused always;
// the router's and the node's own addresses come in as Options, so that
// translation stays a function of its inputs.

// metadataAddresses are the cloud instance metadata services. The IPv4 one
// is link-local and would be refused as such; AWS's IPv6 one is a unique
// local address, which pods may legitimately use, so it is named.
var metadataAddresses = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"),
	netip.MustParseAddr("fd00:ec2::254"),
}

// limitedBroadcast is 255.255.255.255, which Go does not count as
// multicast and which no pod can hold.
var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// refusal decides which endpoint addresses are never proxied to, and says
// why. Ports do not matter: see Options.NodeAddresses for why a node
// address is refused on every port.
type refusal struct {
	self, node map[netip.Addr]bool
}

func newRefusal(o Options) refusal {
	r := refusal{self: map[netip.Addr]bool{}, node: map[netip.Addr]bool{}}
	for _, a := range o.SelfAddresses {
		if a.IsValid() {
			r.self[a.WithZone("").Unmap()] = true
		}
	}
	for _, a := range o.NodeAddresses {
		if a.IsValid() {
			r.node[a.WithZone("").Unmap()] = true
		}
	}
	return r
}

// why returns why ip is refused, or "" when it may be used. An
// IPv4-mapped IPv6 address is judged as the IPv4 address it reaches.
func (r refusal) why(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case isMetadata(ip):
		return "it is the cloud instance metadata address"
	case ip.IsLoopback():
		return "it is a loopback address (the router's own host)"
	case ip.IsUnspecified():
		return "it is the unspecified address (the router's own host)"
	case ip.IsLinkLocalUnicast():
		return "it is a link-local address (node-private services)"
	case ip.IsMulticast() || ip == limitedBroadcast:
		return "it is a multicast or broadcast address"
	case r.self[ip]:
		return "it is an address of the router itself"
	case r.node[ip]:
		return "it is an address of the router's node"
	}
	return ""
}

func isMetadata(ip netip.Addr) bool {
	for _, m := range metadataAddresses {
		if ip == m {
			return true
		}
	}
	return false
}
