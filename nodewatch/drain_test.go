package nodewatch_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bulkhead-router/bulkhead/nodewatch"
)

func TestDrainReason(t *testing.T) {
	now := metav1.NewTime(time.Unix(1700000000, 0))
	taint := func(key, value string, effect corev1.TaintEffect) corev1.Taint {
		return corev1.Taint{Key: key, Value: value, Effect: effect}
	}
	for _, tc := range []struct {
		name   string
		node   *corev1.Node
		reason string // "" means not draining
	}{
		{name: "nil node", node: nil},
		{name: "plain node", node: &corev1.Node{}},
		{name: "other labels and taints",
			node: &corev1.Node{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"node.kubernetes.io/instance-type": "m7g.large"}},
				Spec: corev1.NodeSpec{Taints: []corev1.Taint{
					taint("dedicated", "edge", corev1.TaintEffectNoSchedule),
					taint("node.kubernetes.io/not-ready", "", corev1.TaintEffectNoExecute),
				}},
			}},
		{name: "cordoned",
			node:   &corev1.Node{Spec: corev1.NodeSpec{Unschedulable: true}},
			reason: nodewatch.ReasonCordoned},
		{name: "cluster autoscaler deletion taint",
			node:   &corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{taint("ToBeDeletedByClusterAutoscaler", "1700000000", corev1.TaintEffectNoSchedule)}}},
			reason: nodewatch.ReasonClusterAutoscaler},
		{name: "cluster autoscaler soft candidate taint is not a deletion",
			node: &corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{taint("DeletionCandidateOfClusterAutoscaler", "1700000000", corev1.TaintEffectPreferNoSchedule)}}}},
		{name: "karpenter v1 disrupted taint",
			node:   &corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{taint("karpenter.sh/disrupted", "", corev1.TaintEffectNoSchedule)}}},
			reason: nodewatch.ReasonKarpenter},
		{name: "karpenter v1beta1 disruption taint",
			node:   &corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{taint("karpenter.sh/disruption", "disrupting", corev1.TaintEffectNoSchedule)}}},
			reason: nodewatch.ReasonKarpenterBeta},
		{name: "karpenter v1beta1 key with another value is not a disruption",
			node: &corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{taint("karpenter.sh/disruption", "candidate", corev1.TaintEffectPreferNoSchedule)}}}},
		{name: "karpenter unregistered taint is not a disruption",
			node: &corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{taint("karpenter.sh/unregistered", "", corev1.TaintEffectNoExecute)}}}},
		{name: "exclude-from-external-load-balancers label, empty value",
			node:   &corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"node.kubernetes.io/exclude-from-external-load-balancers": ""}}},
			reason: nodewatch.ReasonExcludeFromLBLabel},
		{name: "exclude-from-external-load-balancers label counts whatever its value",
			node:   &corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"node.kubernetes.io/exclude-from-external-load-balancers": "false"}}},
			reason: nodewatch.ReasonExcludeFromLBLabel},
		{name: "being deleted",
			node:   &corev1.Node{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now, Finalizers: []string{"karpenter.sh/termination"}}},
			reason: nodewatch.ReasonDeleting},
		{name: "deletion wins over every other signal",
			node: &corev1.Node{
				ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now, Labels: map[string]string{nodewatch.LabelExcludeFromLB: ""}},
				Spec: corev1.NodeSpec{Unschedulable: true, Taints: []corev1.Taint{
					taint("karpenter.sh/disrupted", "", corev1.TaintEffectNoSchedule),
					taint("ToBeDeletedByClusterAutoscaler", "1", corev1.TaintEffectNoSchedule),
				}},
			},
			reason: nodewatch.ReasonDeleting},
		{name: "a deletion taint wins over cordon and label, whatever the taint order",
			node: &corev1.Node{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{nodewatch.LabelExcludeFromLB: "true"}},
				Spec: corev1.NodeSpec{Unschedulable: true, Taints: []corev1.Taint{
					taint("node.kubernetes.io/unschedulable", "", corev1.TaintEffectNoSchedule),
					taint("karpenter.sh/disrupted", "", corev1.TaintEffectNoSchedule),
				}},
			},
			reason: nodewatch.ReasonKarpenter},
		{name: "the label wins over a cordon",
			node: &corev1.Node{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{nodewatch.LabelExcludeFromLB: "true"}},
				Spec:       corev1.NodeSpec{Unschedulable: true},
			},
			reason: nodewatch.ReasonExcludeFromLBLabel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, draining := nodewatch.DrainReason(tc.node)
			if draining != (tc.reason != "") || reason != tc.reason {
				t.Fatalf("DrainReason = (%q, %v), want (%q, %v)", reason, draining, tc.reason, tc.reason != "")
			}
		})
	}
}
