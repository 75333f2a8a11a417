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
	on(routing.Table{})          // the first table: always
	on(routing.Table{Served: a}) // another list
	on(routing.Table{Served: a}) // the same list (an endpoint change)
	on(routing.Table{Served: b}) // an equal list, made anew
	if len(calls) != 3 || len(calls[0]) != 0 || &calls[1][0] != &a[0] || &calls[2][0] != &b[0] {
		t.Fatalf("set called with %v, want the empty list, a and b", calls)
	}
}
