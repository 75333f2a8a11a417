package gatewaystatus

import (
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// The merges below turn the status an object has and the status the
// translation wants into the status to write. They never modify their
// arguments (have comes from the informer cache), and the caller writes
// only when the result differs semantically from have.

// ours reports whether a condition type is one this writer manages: the
// Gateway API's own types are unqualified (Accepted, Programmed,
// ResolvedRefs, ...); a domain-qualified type ("example.com/Audited")
// belongs to someone else, and the spec forbids removing or reordering it.
func ours(conditionType string) bool { return !strings.Contains(conditionType, "/") }

// mergeConditions returns want's conditions with lastTransitionTime set
// the way meta.SetStatusCondition sets it: kept from have when have has a
// condition of that type with the same status, now otherwise. have's order
// is kept (new types are appended in want's order); a condition of our
// types that want no longer reports is dropped, another party's is kept.
func mergeConditions(have, want []metav1.Condition, now metav1.Time) []metav1.Condition {
	out := make([]metav1.Condition, 0, len(have)+len(want))
	used := make([]bool, len(want))
	for _, h := range have {
		i := conditionIndex(want, h.Type)
		switch {
		case i < 0:
			if !ours(h.Type) {
				out = append(out, h)
			}
			continue
		case used[i]:
			continue // a repeated type: the list is a map keyed by type
		}
		used[i] = true
		c := want[i]
		if c.LastTransitionTime.IsZero() {
			c.LastTransitionTime = now
			if h.Status == c.Status && !h.LastTransitionTime.IsZero() {
				c.LastTransitionTime = h.LastTransitionTime
			}
		}
		out = append(out, c)
	}
	for i, c := range want {
		if used[i] || conditionIndex(want[:i], c.Type) >= 0 {
			continue
		}
		if c.LastTransitionTime.IsZero() {
			c.LastTransitionTime = now
		}
		out = append(out, c)
	}
	return out
}

func conditionIndex(cs []metav1.Condition, conditionType string) int {
	for i := range cs {
		if cs[i].Type == conditionType {
			return i
		}
	}
	return -1
}

// generation is the highest observedGeneration among our conditions: for
// want, the generation of the object the translation saw; for have, the
// newest generation anyone has written status for.
func generation(cs ...[]metav1.Condition) int64 {
	var g int64
	for _, list := range cs {
		for _, c := range list {
			if ours(c.Type) && c.ObservedGeneration > g {
				g = c.ObservedGeneration
			}
		}
	}
	return g
}

// mergeClass returns the GatewayClass status to write. When have already
// reports a newer generation than want (our cache lags a replica that
// wrote before us), have is kept, as the spec requires: a newer
// translation will come.
func mergeClass(have, want gatewayv1.GatewayClassStatus, now metav1.Time) gatewayv1.GatewayClassStatus {
	if generation(have.Conditions) > generation(want.Conditions) {
		return have
	}
	out := *have.DeepCopy()
	out.Conditions = mergeConditions(have.Conditions, want.Conditions, now)
	return out
}

// mergeGateway returns the Gateway status to write: want's addresses and
// listeners (attachedRoutes, supportedKinds), the conditions of the Gateway
// and of each listener (matched by name) merged with have's, and whatever
// else have carries (attachedListenerSets) as it is.
func mergeGateway(have, want gatewayv1.GatewayStatus, now metav1.Time) gatewayv1.GatewayStatus {
	haveGen, wantGen := generation(have.Conditions), generation(want.Conditions)
	for _, l := range have.Listeners {
		haveGen = max(haveGen, generation(l.Conditions))
	}
	if haveGen > wantGen {
		return have
	}
	out := *have.DeepCopy()
	want = *want.DeepCopy()
	out.Addresses = want.Addresses
	out.Conditions = mergeConditions(have.Conditions, want.Conditions, now)
	out.Listeners = want.Listeners
	for i := range out.Listeners {
		l := &out.Listeners[i]
		var old []metav1.Condition
		for _, h := range have.Listeners {
			if h.Name == l.Name {
				old = h.Conditions
				break
			}
		}
		l.Conditions = mergeConditions(old, l.Conditions, now)
	}
	return out
}

// mergeParents returns an HTTPRoute's status.parents to write. Entries of
// other controllers stay as and where they are. Each of our entries is
// replaced, in place, by want's entry for the same parentRef (conditions
// merged); want's entries for new parentRefs are appended; our entries
// want no longer has are removed. known is the route generation the
// translation saw: an entry of ours written for a newer generation (by a
// replica whose cache was ahead) is left alone. The result is never nil:
// status.parents is required, and an empty list is how "attached to
// nothing" is written.
func mergeParents(have, want []gatewayv1.RouteParentStatus, controller gatewayv1.GatewayController, known int64, now metav1.Time) []gatewayv1.RouteParentStatus {
	out := make([]gatewayv1.RouteParentStatus, 0, len(have)+len(want))
	used := make([]bool, len(want))
	for _, h := range have {
		if h.ControllerName != controller {
			out = append(out, *h.DeepCopy())
			continue
		}
		if generation(h.Conditions) > known {
			out = append(out, *h.DeepCopy())
			if i := parentIndex(want, used, h.ParentRef); i >= 0 {
				used[i] = true
			}
			continue
		}
		i := parentIndex(want, used, h.ParentRef)
		if i < 0 {
			continue // no longer ours to report on
		}
		used[i] = true
		e := *want[i].DeepCopy()
		e.Conditions = mergeConditions(h.Conditions, e.Conditions, now)
		out = append(out, e)
	}
	for i := range want {
		if used[i] {
			continue
		}
		e := *want[i].DeepCopy()
		e.Conditions = mergeConditions(nil, e.Conditions, now)
		out = append(out, e)
	}
	return out
}

// parentIndex is the first entry of want not yet used whose parentRef is
// ref.
func parentIndex(want []gatewayv1.RouteParentStatus, used []bool, ref gatewayv1.ParentReference) int {
	for i := range want {
		if !used[i] && equality.Semantic.DeepEqual(want[i].ParentRef, ref) {
			return i
		}
	}
	return -1
}
