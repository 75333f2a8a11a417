package main

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/bulkhead-router/bulkhead/routing"
)

// The status writer hears a table's Served list only when it is another
// list than the previous table's.
func TestServedChangesPassesOnlyNewLists(t *testing.T) {
	var calls [][]types.NamespacedName
	on := servedChanges(func(s []types.NamespacedName) { calls = append(calls, s) })
	a := []types.NamespacedName{{Namespace: "ns", Name: "a"}}
	b := slices.Clone(a)
	on(routing.Table{}, true)           // the first table: always
	on(routing.Table{Served: a}, true)  // another list
	on(routing.Table{Served: a}, true)  // the same list (an endpoint change)
	on(routing.Table{Served: b}, false) // an equal list, made anew
	if len(calls) != 3 || len(calls[0]) != 0 || &calls[1][0] != &a[0] || &calls[2][0] != &b[0] {
		t.Fatalf("set called with %v, want the empty list, a and b", calls)
	}
}

// The Gateway API status writer hears only live tables, and only a status
// that is not the previous table's.
func TestGatewayStatusChangesPassesOnlyLiveNewStatus(t *testing.T) {
	var calls [][]routing.GatewayStatus
	on := gatewayStatusChanges(func(_ []routing.GatewayClassStatus, g []routing.GatewayStatus, _ []routing.HTTPRouteStatus, _ []routing.GRPCRouteStatus) {
		calls = append(calls, g)
	})
	a := []routing.GatewayStatus{{Gateway: types.NamespacedName{Namespace: "infra", Name: "edge"}}}
	on(routing.Table{Gateways: a}, false) // from disk: never
	on(routing.Table{}, true)             // the first live table: always
	on(routing.Table{Gateways: a}, true)  // another status
	on(routing.Table{Gateways: a}, true)  // the same (an endpoint change)
	on(routing.Table{}, true)             // every Gateway gone: passed on, so stale status is removed
	if len(calls) != 3 || len(calls[0]) != 0 || &calls[1][0] != &a[0] || len(calls[2]) != 0 {
		t.Fatalf("set called with %v", calls)
	}
}
