package main

import (
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/bulkhead-router/bulkhead/internal/logging"
)

// localAddresses are the addresses of this process's network interfaces at
// start: in a pod its pod IPs, with hostNetwork the node's. Endpoints at
// them are refused (routing.Options.SelfAddresses), so a hand-written
// EndpointSlice cannot make the proxy send internet traffic to the
// router's own listeners (admin, metrics, health, proxy) or to anything
// else listening beside it. Interfaces added later are not seen; the
// node's addresses also come from its Node object (nodewatch).
func localAddresses(log *slog.Logger) []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		log.Error("cannot list local addresses: endpoints at the router's own address are not refused (loopback, link-local and the node's are)", logging.KeyError, err)
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		prefix, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		out = append(out, prefix.Addr().WithZone("").Unmap())
	}
	slices.SortFunc(out, netip.Addr.Compare)
	out = slices.Compact(out)
	log.Info("endpoints at the router's own addresses are refused", "addresses", out)
	return out
}

// addressRelay carries the node watch's addresses to the data client,
// which is made after the watch starts: what arrives before connect is
// kept and handed over then. The latest value always wins, because the
// handover happens under the lock (SetNodeAddresses does not block).
type addressRelay struct {
	mu    sync.Mutex
	addrs []netip.Addr
	seen  bool
	to    func([]netip.Addr)
}

func (r *addressRelay) set(addrs []netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addrs, r.seen = addrs, true
	if r.to != nil {
		r.to(addrs)
	}
}

func (r *addressRelay) connect(to func([]netip.Addr)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.to = to
	if r.seen {
		to(r.addrs)
	}
}
