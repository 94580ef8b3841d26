// Package conditions writes the kstatus conditions (Ready, Reconciling, Stalled) the operator's kinds report, so
// that kstatus, Argo CD and `kubectl wait` read them alike.
package conditions

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// Apply writes the kstatus conditions of an object at generation, keeping Reconciling and Stalled only
// while True (nil removes them).
func Apply(conds *[]metav1.Condition, generation int64, now time.Time, ready, reconciling, stalled *metav1.Condition) {
	for _, c := range []*metav1.Condition{ready, reconciling, stalled} {
		if c == nil {
			continue
		}
		c.ObservedGeneration = generation
		c.LastTransitionTime = metav1.NewTime(now)
		meta.SetStatusCondition(conds, *c)
	}
	if reconciling == nil {
		meta.RemoveStatusCondition(conds, labsv1.ConditionReconciling)
	}
	if stalled == nil {
		meta.RemoveStatusCondition(conds, labsv1.ConditionStalled)
	}
}

// New is a condition of type t (its generation and time are Apply's to set).
func New(t string, s metav1.ConditionStatus, reason, msg string) *metav1.Condition {
	return &metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg}
}
