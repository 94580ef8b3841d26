package controllers

import (
	"testing"
	"time"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
)

// TestAChangeCountsFromWhenItWasWritten: a step that changed the mesh completes when it began writing the change,
// not when it finished reading it back: the next probe's window counts from there, and a data plane that took the
// change within the read-back is not "early" (TestHelmInstallRunsTheSample failed so once, 128 ms apart).
func TestAChangeCountsFromWhenItWasWritten(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	written := t0.Add(100 * time.Millisecond)
	r := &LabRunReconciler{Now: func() time.Time { return t0.Add(time.Second) }}
	run := &labsv1.LabRun{Status: labsv1.LabRunStatus{Steps: []labsv1.StepResult{{Lab: labsv1.LabMTLS, Name: "change"}}}}
	st := &run.Status.Steps[0]
	r.markStarted(st)
	r.conclude(run, st, steps.Outcome{Verdict: labsv1.VerdictPass, Message: "changed", ChangedAt: written})
	if st.Verdict != labsv1.VerdictPass || st.CompletionTime == nil || !st.CompletionTime.Time.Equal(written) {
		t.Fatalf("verdict %s, completion %v; want Pass completed at %s, when the change was written", st.Verdict, st.CompletionTime, written)
	}
}
