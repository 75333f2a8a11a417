package dataclient

import (
	"maps"

	"k8s.io/apimachinery/pkg/types"

	"github.com/bulkhead-router/bulkhead/routing"
)

// maxSliceOverrides is how many Services' slices an endpoint-only rebuild
// keeps beside the base snapshot before it folds them into a new one.
// Folding walks every slice of the cluster; keeping the Services apart
// lets an endpoint change cost what it changed, and this bound keeps the
// copy of the overrides each change makes small.
const maxSliceOverrides = 256

// servedObjects is what the deletion guard needs of a published table:
// the objects it was built from. An endpoint-only rebuild changes only the
// EndpointSlices of a few Services, so instead of a new snapshot of every
// object (at 10,000 Services, filtering the cluster's slices was a quarter
// of an endpoint change's CPU) it records those Services' slices beside
// the snapshot it started from; the whole snapshot is made only when the
// guard asks for it, on the next full rebuild.
//
// Immutable once made, except for the cached snapshot, which only the
// rebuild goroutine (the only user of published tables' objects) fills.
type servedObjects struct {
	base *routing.Snapshot
	// slices are the current slices of Services whose slices changed
	// since base (possibly none: the Service lost them all).
	slices map[types.NamespacedName][]*routing.EndpointSlice
	full   *routing.Snapshot
}

func servedFrom(s *routing.Snapshot) *servedObjects {
	if s == nil {
		return nil
	}
	return &servedObjects{base: s, full: s}
}

// snapshot is the objects, with the overridden Services' slices in place
// of the base's.
func (o *servedObjects) snapshot() *routing.Snapshot {
	if o == nil {
		return nil
	}
	if o.full != nil {
		return o.full
	}
	s := *o.base
	s.EndpointSlices = make([]*routing.EndpointSlice, 0, len(o.base.EndpointSlices)+len(o.slices))
	for _, es := range o.base.EndpointSlices {
		if es != nil && o.overridden(es) {
			continue
		}
		s.EndpointSlices = append(s.EndpointSlices, es)
	}
	for _, list := range o.slices {
		s.EndpointSlices = append(s.EndpointSlices, list...)
	}
	o.full = &s
	return o.full
}

func (o *servedObjects) overridden(es *routing.EndpointSlice) bool {
	_, ok := o.slices[types.NamespacedName{Namespace: es.Namespace, Name: es.Service}]
	return ok
}

// withSlices is o with the slices of services as slicesOf gives them now.
func (o *servedObjects) withSlices(services map[types.NamespacedName]bool, slicesOf func(namespace, name string) []*routing.EndpointSlice) *servedObjects {
	next := &servedObjects{base: o.base}
	if len(o.slices)+len(services) > maxSliceOverrides {
		next.base = o.snapshot()
		next.slices = make(map[types.NamespacedName][]*routing.EndpointSlice, len(services))
	} else {
		next.slices = make(map[types.NamespacedName][]*routing.EndpointSlice, len(o.slices)+len(services))
		maps.Copy(next.slices, o.slices)
	}
	for name := range services {
		next.slices[name] = slicesOf(name.Namespace, name.Name)
	}
	return next
}
