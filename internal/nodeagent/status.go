package nodeagent

import (
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// statusPatch is a JSON merge patch of an object's status carrying the
// object's UID: the API server refuses it if the object was replaced by
// another of the same name, so a stale writer never touches a new object.
func statusPatch(uid types.UID, status any) ([]byte, error) {
	return json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": uid},
		"status":   status,
	})
}

// condition tracks one pod condition's status and when it last changed.
type condition struct {
	status corev1.ConditionStatus
	reason string
	since  metav1.Time
}

func boolStatus(b bool) corev1.ConditionStatus {
	if b {
		return corev1.ConditionTrue
	}
	return corev1.ConditionFalse
}
