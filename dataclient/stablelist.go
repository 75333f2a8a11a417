package dataclient

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// cachedObject is a pointer to a cached object of one kind.
type cachedObject interface {
	comparable
	GetNamespace() string
	GetName() string
}

// stableList is one kind's list as snapshots hand it out, kept in a
// stable order from one snapshot to the next: a changed object replaces
// the old one in its place, a new one goes last, and a removed one's place
// is taken by the last one. The translator finds what changed by comparing
// two lists position by position (routing/incremental.go); a list in the
// informer store's map order, different on every listing, made every
// Ingress change a full translation.
//
// Bringing the list up to date costs the objects touched since (their
// keys, recorded by the informer handlers), plus one copy of the list:
// a list handed to a snapshot is never modified afterwards (earlier
// snapshots and the tables made from them are still read).
type stableList[T cachedObject] struct {
	items []T                            // as last handed out; never modified
	at    map[types.NamespacedName]int32 // each object's place in items
	built bool
}

// update returns the list with the objects of touched as store holds them
// now. The first call lists the store, and so does a call whose touched
// holds the zero name (an object whose name could not be read).
func (l *stableList[T]) update(store cache.Store, touched map[types.NamespacedName]struct{}) []T {
	if _, unknown := touched[types.NamespacedName{}]; unknown || !l.built {
		objs := store.List()
		l.items = make([]T, 0, len(objs))
		for _, o := range objs {
			if t, ok := o.(T); ok {
				l.items = append(l.items, t)
			}
		}
		l.at = make(map[types.NamespacedName]int32, len(l.items))
		for i, o := range l.items {
			l.at[nameOf(o)] = int32(i)
		}
		l.built = true
		return l.items
	}
	items := l.items
	copied := false
	own := func() {
		if !copied {
			items, copied = slices.Clone(items), true
		}
	}
	for n := range touched {
		obj, exists, _ := store.GetByKey(storeKey(n))
		i, listed := l.at[n]
		switch {
		case exists:
			o, ok := obj.(T)
			if !ok {
				continue
			}
			if listed {
				if items[i] != o {
					own()
					items[i] = o
				}
				continue
			}
			own()
			l.at[nameOf(o)] = int32(len(items))
			items = append(items, o)
		case listed:
			own()
			last := int32(len(items) - 1)
			moved := items[last]
			items[i] = moved
			var zero T
			items[last] = zero
			items = items[:last]
			delete(l.at, n)
			if i != last {
				l.at[nameOf(moved)] = i
			}
		}
	}
	if copied {
		l.items = slices.Clip(items)
	}
	return l.items
}

func nameOf[T cachedObject](o T) types.NamespacedName {
	return types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
}

// storeKey is the informer store's key of an object of that name.
func storeKey(n types.NamespacedName) string {
	if n.Namespace == "" {
		return n.Name
	}
	return n.Namespace + "/" + n.Name
}

// objectName is the namespace and name of a handler's object (or
// tombstone).
func objectName(obj any) (types.NamespacedName, bool) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		if m, ok := tomb.Obj.(metav1.Object); ok {
			return types.NamespacedName{Namespace: m.GetNamespace(), Name: m.GetName()}, true
		}
		namespace, name, err := cache.SplitMetaNamespaceKey(tomb.Key)
		return types.NamespacedName{Namespace: namespace, Name: name}, err == nil
	}
	if m, ok := obj.(metav1.Object); ok {
		return types.NamespacedName{Namespace: m.GetNamespace(), Name: m.GetName()}, true
	}
	return types.NamespacedName{}, false
}
