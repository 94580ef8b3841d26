package controllers

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

func TestPhaseConditions(t *testing.T) {
	cases := []struct {
		phase                    labsv1.Phase
		ready                    metav1.ConditionStatus
		reconciling, stalledCond bool
	}{
		{"", metav1.ConditionFalse, true, false},
		{labsv1.PhasePending, metav1.ConditionFalse, true, false},
		{labsv1.PhaseQueued, metav1.ConditionFalse, true, false},
		{labsv1.PhaseRunning, metav1.ConditionFalse, true, false},
		{labsv1.PhaseRestoring, metav1.ConditionFalse, true, false},
		{labsv1.PhaseSucceeded, metav1.ConditionTrue, false, false},
		{labsv1.PhaseFailed, metav1.ConditionFalse, false, true},
	}
	for _, tc := range cases {
		run := &labsv1.LabRun{Status: labsv1.LabRunStatus{Phase: tc.phase, Reason: "R", Message: "m"}}
		ready, reconciling, stalledC := phaseConditions(run)
		if ready == nil || ready.Status != tc.ready || ready.Message != "m" {
			t.Errorf("%q: Ready = %+v, want %s", tc.phase, ready, tc.ready)
		}
		if (reconciling != nil) != tc.reconciling || (stalledC != nil) != tc.stalledCond {
			t.Errorf("%q: Reconciling present %v (want %v), Stalled present %v (want %v)", tc.phase,
				reconciling != nil, tc.reconciling, stalledC != nil, tc.stalledCond)
		}
	}
}

func TestSummarizeAndAllPassed(t *testing.T) {
	steps := []labsv1.StepResult{
		{Verdict: labsv1.VerdictPass}, {Verdict: labsv1.VerdictFail}, {Verdict: labsv1.VerdictError},
		{Verdict: labsv1.VerdictSkipped}, {Verdict: labsv1.VerdictPass}, {Verdict: labsv1.VerdictRunning},
	}
	got := summarize(steps)
	want := labsv1.Summary{Total: 6, Passed: 2, Failed: 1, Errored: 1, Skipped: 1}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	if allPassed(steps) {
		t.Error("a run with a failed step has not passed")
	}
	if !allPassed(steps[4:5]) || !allPassed([]labsv1.StepResult{{Verdict: labsv1.VerdictSkipped}}) {
		t.Error("passed and skipped steps count as passed")
	}
}
