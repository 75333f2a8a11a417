package main

import (
	"log/slog"
	"net/netip"
	"slices"
	"testing"
)

// The node watch may learn the Node's addresses before the data client
// exists: nothing is lost, and later changes follow.
func TestAddressRelay(t *testing.T) {
	var r addressRelay
	var got [][]netip.Addr
	a := []netip.Addr{netip.MustParseAddr("10.0.0.1")}
	b := []netip.Addr{netip.MustParseAddr("10.0.0.2")}
	r.set(a)
	r.connect(func(addrs []netip.Addr) { got = append(got, addrs) })
	r.set(b)
	if len(got) != 2 || !slices.Equal(got[0], a) || !slices.Equal(got[1], b) {
		t.Fatalf("handed over %v, want [%v %v]", got, a, b)
	}

	var none addressRelay
	none.connect(func([]netip.Addr) { t.Error("called before any address was known") })
}

func TestLocalAddressesIncludeLoopback(t *testing.T) {
	addrs := localAddresses(slog.New(slog.DiscardHandler))
	if !slices.Contains(addrs, netip.MustParseAddr("127.0.0.1")) {
		t.Fatalf("local addresses %v lack 127.0.0.1: the interfaces were not read", addrs)
	}
}
