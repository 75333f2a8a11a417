package dataclient

import (
	"fmt"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/bulkhead-router/bulkhead/routing"
)

// TestServedObjectsReplaceSlicesOfChangedServices walks many endpoint-only
// changes, past the point where the overrides are folded into a new base,
// and checks after each that the snapshot holds exactly the current slices
// of every Service.
func TestServedObjectsReplaceSlicesOfChangedServices(t *testing.T) {
	const services = 600 // more than maxSliceOverrides: folds happen
	slice := func(svc, gen int) *routing.EndpointSlice {
		return &routing.EndpointSlice{Namespace: "ns", Name: fmt.Sprintf("s%d-g%d", svc, gen), Service: fmt.Sprintf("svc%d", svc)}
	}
	current := map[string][]*routing.EndpointSlice{} // by Service name
	base := &routing.Snapshot{}
	for i := range services {
		es := slice(i, 0)
		current[fmt.Sprintf("svc%d", i)] = []*routing.EndpointSlice{es}
		base.EndpointSlices = append(base.EndpointSlices, es)
	}
	slicesOf := func(_, name string) []*routing.EndpointSlice { return current[name] }
	o := servedFrom(base)
	for step := 1; step <= 3*maxSliceOverrides; step++ {
		svc := step * 7 % services
		name := fmt.Sprintf("svc%d", svc)
		switch step % 5 {
		case 0: // the Service lost its slices
			current[name] = nil
		case 1: // a second slice
			current[name] = append(slices.Clone(current[name]), slice(svc, step))
		default:
			current[name] = []*routing.EndpointSlice{slice(svc, step)}
		}
		prev := o.snapshot()
		prevNames := names(prev.EndpointSlices)
		o = o.withSlices(map[types.NamespacedName]bool{{Namespace: "ns", Name: name}: true}, slicesOf)
		var want []string
		for _, list := range current {
			want = append(want, names(list)...)
		}
		slices.Sort(want)
		if got := names(o.snapshot().EndpointSlices); !slices.Equal(got, want) {
			t.Fatalf("step %d: slices %v, want %v", step, got, want)
		}
		if !slices.Equal(names(prev.EndpointSlices), prevNames) {
			t.Fatalf("step %d: the previous table's objects changed", step)
		}
	}
	if len(o.slices) > maxSliceOverrides {
		t.Fatalf("%d overrides kept, at most %d wanted", len(o.slices), maxSliceOverrides)
	}
}

func names(list []*routing.EndpointSlice) []string {
	var out []string
	for _, es := range list {
		out = append(out, es.Name)
	}
	slices.Sort(out)
	return out
}
