package controllers

import (
	"context"
	"testing"
	"time"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
)

// TestEveryCatalogueKindHasAnExecutor: a step kind the catalogue uses without an executor would end every run
// that plans it in Error ("unknown step kind").
func TestEveryCatalogueKindHasAnExecutor(t *testing.T) {
	for _, mode := range []labsv1.Mode{labsv1.ModeLab, labsv1.ModeVerify} {
		plan, err := labs.PlanMode(labsv1.AllLabs, mode)
		if err != nil {
			t.Fatal(err)
		}
		for _, step := range plan {
			newExecutor, ok := stepExecutors[step.Kind]
			if !ok {
				t.Errorf("%s mode: step %s is of kind %s, which has no executor", mode, step.ID(), step.Kind)
				continue
			}
			if newExecutor(&LabRunReconciler{}) == nil {
				t.Errorf("kind %s: its executor is nil", step.Kind)
			}
		}
	}
}

// fakeExecutor concludes with a fixed outcome.
type fakeExecutor struct{ out outcome }

func (f fakeExecutor) execute(context.Context, *stepInput) (outcome, error) { return f.out, nil }

// TestAChangeCountsFromWhenItWasWritten: a step that changed the mesh completes when it began writing the change,
// not when it finished reading it back: the next probe's window counts from there, and a data plane that took the
// change within the read-back is not "early" (TestHelmInstallRunsTheSample failed so once, 128 ms apart).
func TestAChangeCountsFromWhenItWasWritten(t *testing.T) {
	const kind labs.Kind = "TestChange"
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	written := t0.Add(100 * time.Millisecond)
	stepExecutors[kind] = func(*LabRunReconciler) stepExecutor {
		return fakeExecutor{out: outcome{verdict: labsv1.VerdictPass, message: "changed", changedAt: written}}
	}
	t.Cleanup(func() { delete(stepExecutors, kind) })
	r := &LabRunReconciler{Now: func() time.Time { return t0.Add(time.Second) }}
	run := &labsv1.LabRun{Status: labsv1.LabRunStatus{Steps: []labsv1.StepResult{{Lab: labsv1.LabMTLS, Name: "change"}}}}
	st := &run.Status.Steps[0]
	if err := r.runStep(context.Background(), run, st, labs.Step{Lab: labsv1.LabMTLS, Name: "change", Kind: kind}, nil); err != nil {
		t.Fatal(err)
	}
	if st.Verdict != labsv1.VerdictPass || st.CompletionTime == nil || !st.CompletionTime.Time.Equal(written) {
		t.Fatalf("verdict %s, completion %v; want Pass completed at %s, when the change was written", st.Verdict, st.CompletionTime, written)
	}
}
