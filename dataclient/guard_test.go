package dataclient

import (
	"fmt"
	"testing"

	"github.com/zalando/skipper/eskip"
	"k8s.io/apimachinery/pkg/types"

	"github.com/bulkhead-router/bulkhead/routing"
)

// table builds a table with one route per Ingress name, each backed by a
// Service of the same name with the given number of endpoints.
func table(endpoints map[string]int) routing.Table {
	var t routing.Table
	for name, n := range endpoints {
		rt := routing.Route{
			Eskip:   &eskip.Route{Id: "r_" + name},
			Ingress: types.NamespacedName{Namespace: "ns", Name: name},
			Service: name, Port: "80",
		}
		for i := range n {
			rt.Endpoints = append(rt.Endpoints, routing.Endpoint{Address: fmt.Sprintf("10.0.0.%d:80", i+1)})
		}
		t.Routes = append(t.Routes, rt)
	}
	return t
}

func TestMassRemoval(t *testing.T) {
	guard := GuardOptions{}.withDefaults()
	for _, tc := range []struct {
		name          string
		before, after map[string]int
		mass          bool
	}{
		{"nothing changes", map[string]int{"a": 3, "b": 3}, map[string]int{"a": 3, "b": 3}, false},
		{"the only Ingress deleted", map[string]int{"a": 3}, map[string]int{}, false},
		{"one of two Ingresses deleted (50%, not more)", map[string]int{"a": 3, "b": 3}, map[string]int{"a": 3}, false},
		{"the only Service scaled to zero", map[string]int{"a": 3}, map[string]int{"a": 0}, false},
		{"two of three Ingresses deleted", map[string]int{"a": 1, "b": 1, "c": 1}, map[string]int{"a": 1}, true},
		{"every Ingress deleted", map[string]int{"a": 1, "b": 1, "c": 1}, map[string]int{}, true},
		{"most Services scaled to zero", map[string]int{"a": 2, "b": 2, "c": 2}, map[string]int{"a": 2, "b": 0, "c": 0}, true},
		{"one Service shrinks a lot among many", map[string]int{"a": 10, "b": 1, "c": 1}, map[string]int{"a": 1, "b": 1, "c": 1}, false},
		{"from an empty table", map[string]int{}, map[string]int{"a": 1}, false},
	} {
		r := measureRemoval(table(tc.before), table(tc.after))
		if got := guard.massRemoval(r); got != tc.mass {
			t.Errorf("%s: mass removal = %v, want %v (%s)", tc.name, got, tc.mass, r)
		}
	}
}

func TestGuardDisabledAtShareOne(t *testing.T) {
	r := measureRemoval(table(map[string]int{"a": 1, "b": 1, "c": 1}), table(nil))
	if (GuardOptions{MaxRemovalShare: 1}).massRemoval(r) {
		t.Fatal("a share of 1 must disable the guard")
	}
}
