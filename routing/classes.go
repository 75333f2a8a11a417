package routing

import (
	"cmp"
	"fmt"
	"slices"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
)

const (
	// legacyClassAnnotation predates spec.ingressClassName; we read it only
	// when ingressClassName is unset.
	legacyClassAnnotation = "kubernetes.io/ingress.class"
	// LegacyClassAnnotation is the one Ingress annotation translation
	// reads without AnnotationPrefix.
	LegacyClassAnnotation = legacyClassAnnotation
	// defaultClassAnnotation marks the IngressClass that Ingresses without
	// any class belong to.
	defaultClassAnnotation = "ingressclass.kubernetes.io/is-default-class"
)

// classSelector decides which Ingresses are ours.
type classSelector struct {
	ours       map[string]bool // IngressClass names whose controller is ours
	hasDefault bool            // one of ours is marked as the default class
}

// newClassSelector reads the IngressClasses. Set semantics keep it
// order-independent: a name is ours if any object of that name is ours.
// Serves reports whether Translate would serve ing given these
// IngressClasses and options (see doc.go, "Which Ingresses are served"),
// duplicates aside. The data client uses it to skip the rebuild for a
// change of an Ingress that is not ours before nor after.
func Serves(classes []*networkingv1.IngressClass, o Options, ing *networkingv1.Ingress) bool {
	return ing != nil && newClassSelector(classes, o.withDefaults().ControllerName).serves(ing)
}

func newClassSelector(classes []*networkingv1.IngressClass, controller string) classSelector {
	sel := classSelector{ours: map[string]bool{}}
	for _, c := range classes {
		if c == nil || c.Spec.Controller != controller {
			continue
		}
		sel.ours[c.Name] = true
		if c.Annotations[defaultClassAnnotation] == "true" {
			sel.hasDefault = true
		}
	}
	return sel
}

// serves reports whether ing belongs to one of our classes: by
// spec.ingressClassName, else by the legacy annotation, else by our class
// being the default one.
func (sel classSelector) serves(ing *networkingv1.Ingress) bool {
	if name := ing.Spec.IngressClassName; name != nil && *name != "" {
		return sel.ours[*name]
	}
	if name := ing.Annotations[legacyClassAnnotation]; name != "" {
		return sel.ours[name]
	}
	return sel.hasDefault
}

// heldIngresses returns the held Ingresses to translate after the served
// ones, in precedence order among themselves: placed last, they lose every
// conflict to a live Ingress. A held Ingress whose namespace/name is served
// live is dropped (the live object is the truth); held copies sharing a
// namespace/name are all dropped with a problem, as live duplicates are.
func heldIngresses(held []*networkingv1.Ingress, served []types.NamespacedName, problems *[]Problem) []*networkingv1.Ingress {
	if len(held) == 0 {
		return nil
	}
	count := map[types.NamespacedName]int{}
	for _, ing := range held {
		if ing != nil {
			count[objectKey(ing.Namespace, ing.Name)]++
		}
	}
	var out []*networkingv1.Ingress
	for _, ing := range held {
		if ing == nil {
			continue
		}
		key := objectKey(ing.Namespace, ing.Name)
		if _, live := slices.BinarySearchFunc(served, key, compareNames); live || count[key] > 1 {
			continue
		}
		out = append(out, ing)
	}
	for key, n := range count {
		if _, live := slices.BinarySearchFunc(served, key, compareNames); n > 1 && !live {
			*problems = append(*problems, duplicateProblem("Ingress", key, n))
		}
	}
	slices.SortFunc(out, compareIngressPrecedence)
	return out
}

func compareNames(a, b types.NamespacedName) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

func compareIngressPrecedence(a, b *networkingv1.Ingress) int {
	return cmp.Or(
		a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time),
		cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.Name, b.Name),
	)
}

func objectKey(namespace, name string) types.NamespacedName {
	return types.NamespacedName{Namespace: namespace, Name: name}
}

func duplicateProblem(kind string, key types.NamespacedName, n int) Problem {
	return Problem{
		Kind: kind, Namespace: key.Namespace, Name: key.Name,
		Reason:  DuplicateObject,
		Message: fmt.Sprintf("%s appears %d times in the snapshot; all copies are ignored", kind, n),
	}
}
