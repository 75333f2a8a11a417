package nodewatch

import corev1 "k8s.io/api/core/v1"

// The signals DrainReason reads.
const (
	// TaintClusterAutoscaler is put on a node the cluster autoscaler is about
	// to delete (effect NoSchedule, value a timestamp).
	TaintClusterAutoscaler = "ToBeDeletedByClusterAutoscaler"
	// TaintKarpenter is Karpenter v1's disruption taint (effect NoSchedule,
	// no value), put on a node it drains before terminating it.
	TaintKarpenter = "karpenter.sh/disrupted"
	// TaintKarpenterBeta is the same taint in Karpenter's v1beta1 releases,
	// which carried the value TaintKarpenterBetaValue.
	TaintKarpenterBeta      = "karpenter.sh/disruption"
	TaintKarpenterBetaValue = "disrupting"
	// LabelExcludeFromLB asks load balancers to stop using the node;
	// Kubernetes reads its presence, whatever the value.
	LabelExcludeFromLB = "node.kubernetes.io/exclude-from-external-load-balancers"
)

// Reasons for draining. They are fixed strings, so they can be shown on
// /readyz and used as a metric label without growing its cardinality.
const (
	ReasonDeleted            = "node deleted"
	ReasonDeleting           = "node being deleted"
	ReasonClusterAutoscaler  = "taint " + TaintClusterAutoscaler
	ReasonKarpenter          = "taint " + TaintKarpenter
	ReasonKarpenterBeta      = "taint " + TaintKarpenterBeta + "=" + TaintKarpenterBetaValue
	ReasonExcludeFromLBLabel = "label " + LabelExcludeFromLB
	ReasonCordoned           = "cordoned"
)

// reasons lists every reason, for the metric's label values.
var reasons = []string{ReasonDeleted, ReasonDeleting, ReasonClusterAutoscaler, ReasonKarpenter,
	ReasonKarpenterBeta, ReasonExcludeFromLBLabel, ReasonCordoned}

// DrainReason decides whether the router on this node should drain: it
// returns the reason and true when it should, "" and false when not (also
// for a nil node: no answer is not a reason to drain).
//
// When several signals are present, the one saying most clearly that the
// node is going away wins (deletion, then the autoscalers' taints, then the
// load-balancer label, then a plain cordon), so the reason shown is the
// most useful one.
func DrainReason(node *corev1.Node) (string, bool) {
	if node == nil {
		return "", false
	}
	if node.DeletionTimestamp != nil {
		return ReasonDeleting, true
	}
	var karpenter, karpenterBeta bool
	for _, t := range node.Spec.Taints {
		switch {
		case t.Key == TaintClusterAutoscaler:
			return ReasonClusterAutoscaler, true
		case t.Key == TaintKarpenter:
			karpenter = true
		case t.Key == TaintKarpenterBeta && t.Value == TaintKarpenterBetaValue:
			// Only this value: the key alone is not documented to mean
			// anything else, and a false "draining" on every node at once
			// would take the whole fleet out of the load balancer.
			karpenterBeta = true
		}
	}
	switch {
	case karpenter:
		return ReasonKarpenter, true
	case karpenterBeta:
		return ReasonKarpenterBeta, true
	}
	if _, ok := node.Labels[LabelExcludeFromLB]; ok {
		return ReasonExcludeFromLBLabel, true
	}
	if node.Spec.Unschedulable {
		return ReasonCordoned, true
	}
	return "", false
}
