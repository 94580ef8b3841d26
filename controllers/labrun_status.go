package controllers

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/conditions"
)

// finished tells whether the run reached a terminal phase.
func finished(run *labsv1.LabRun) bool {
	return run.Status.Phase == labsv1.PhaseSucceeded || run.Status.Phase == labsv1.PhaseFailed
}

// terminal tells whether a step has its verdict.
func terminal(v labsv1.Verdict) bool {
	return v == labsv1.VerdictPass || v == labsv1.VerdictFail || v == labsv1.VerdictError ||
		v == labsv1.VerdictSkipped
}

// summarize counts the verdicts.
func summarize(steps []labsv1.StepResult) labsv1.Summary {
	s := labsv1.Summary{Total: int32(len(steps))}
	for _, st := range steps {
		switch st.Verdict {
		case labsv1.VerdictPass:
			s.Passed++
		case labsv1.VerdictFail:
			s.Failed++
		case labsv1.VerdictError:
			s.Errored++
		case labsv1.VerdictSkipped:
			s.Skipped++
		}
	}
	return s
}

// allPassed tells whether every step passed (skipped steps do not count against the run).
func allPassed(steps []labsv1.StepResult) bool {
	for _, st := range steps {
		if st.Verdict != labsv1.VerdictPass && st.Verdict != labsv1.VerdictSkipped {
			return false
		}
	}
	return true
}

// setConditions derives the kstatus conditions from the phase: Reconciling while in progress, Stalled when the
// run failed, Ready when it succeeded. Reconciling and Stalled are present only while True.
func setConditions(run *labsv1.LabRun, now time.Time) {
	ready, reconciling, stalled := phaseConditions(run)
	conditions.Apply(&run.Status.Conditions, run.Generation, now, ready, reconciling, stalled)
}

// phaseConditions is the pure part of setConditions: Ready always, Reconciling and Stalled when they hold.
func phaseConditions(run *labsv1.LabRun) (ready, reconciling, stalled *metav1.Condition) {
	msg := run.Status.Message
	switch run.Status.Phase {
	case labsv1.PhaseSucceeded:
		return conditions.New(labsv1.ConditionReady, metav1.ConditionTrue, labsv1.ReasonSucceeded, msg), nil, nil
	case labsv1.PhaseFailed:
		reason := run.Status.Reason
		return conditions.New(labsv1.ConditionReady, metav1.ConditionFalse, reason, msg), nil,
			conditions.New(labsv1.ConditionStalled, metav1.ConditionTrue, reason, msg)
	default:
		reason := string(run.Status.Phase)
		if reason == "" {
			reason = string(labsv1.PhasePending)
		}
		return conditions.New(labsv1.ConditionReady, metav1.ConditionFalse, reason, msg),
			conditions.New(labsv1.ConditionReconciling, metav1.ConditionTrue, reason, msg), nil
	}
}

// setMeshRestored records whether the mesh is back as the run found it.
func setMeshRestored(run *labsv1.LabRun, status metav1.ConditionStatus, reason, msg string, now time.Time) {
	c := conditions.New(labsv1.ConditionMeshRestored, status, reason, msg)
	c.ObservedGeneration = run.Generation
	c.LastTransitionTime = metav1.NewTime(now)
	meta.SetStatusCondition(&run.Status.Conditions, *c)
}
