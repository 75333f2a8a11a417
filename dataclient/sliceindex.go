package dataclient

import (
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/bulkhead-router/bulkhead/routing"
)

// sliceIndex is the names of each Service's EndpointSlices, kept by the
// EndpointSlice handler before it marks the Service dirty, so a rebuild
// of that Service finds them. It replaces a client-go indexer by Service,
// which kept a set (a map) per Service: about 315 bytes a slice, 3 MB at
// 10,000 Services with a slice each; a name here costs the map entry and
// a one-element list. The slices themselves are read from the informer's
// store: like the stable lists (stablelist.go), the names are as of the
// last event handled, which the store may be ahead of by events whose
// handler has not run yet; those mark their Services dirty in turn.
type sliceIndex struct {
	mu     sync.Mutex
	byName map[types.NamespacedName][]string // Service → its slices' names
}

// sliceService is the Service an EndpointSlice belongs to; false when it
// names none.
func sliceService(es *routing.EndpointSlice) (types.NamespacedName, bool) {
	svc := es.Service
	return types.NamespacedName{Namespace: es.Namespace, Name: svc}, svc != ""
}

// update records a handler's event: old is the slice as it was (nil for
// an addition), new as it is (nil for a removal); either may be a
// tombstone.
func (x *sliceIndex) update(old, new any) {
	o, n := sliceOf(old), sliceOf(new)
	x.mu.Lock()
	defer x.mu.Unlock()
	if o != nil {
		if svc, ok := sliceService(o); ok && (n == nil || n.Service != svc.Name) {
			x.remove(svc, o.Name)
		}
	} else if n == nil {
		// A tombstone without its object: find it by its key.
		if tomb, ok := old.(cache.DeletedFinalStateUnknown); ok {
			if namespace, name, err := cache.SplitMetaNamespaceKey(tomb.Key); err == nil {
				for svc, names := range x.byName {
					if svc.Namespace == namespace && slices.Contains(names, name) {
						x.remove(svc, name)
					}
				}
			}
		}
	}
	if n == nil {
		return
	}
	if svc, ok := sliceService(n); ok {
		if x.byName == nil {
			x.byName = map[types.NamespacedName][]string{}
		}
		if names := x.byName[svc]; !slices.Contains(names, n.Name) {
			x.byName[svc] = append(names, n.Name)
		}
	}
}

// remove drops a slice name of svc. The list is copied, never changed in
// place: names hands it out.
func (x *sliceIndex) remove(svc types.NamespacedName, name string) {
	names := x.byName[svc]
	i := slices.Index(names, name)
	switch {
	case i < 0:
	case len(names) == 1:
		delete(x.byName, svc)
	default:
		x.byName[svc] = slices.Delete(slices.Clone(names), i, i+1)
	}
}

// names are the names of the slices of svc; not to be modified.
func (x *sliceIndex) names(svc types.NamespacedName) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clip(x.byName[svc])
}

func sliceOf(obj any) *routing.EndpointSlice {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	es, _ := obj.(*routing.EndpointSlice)
	return es
}
