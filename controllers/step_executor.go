package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
	"github.com/ambientlab/labrun-operator/internal/labs"
)

// The step loop's end of the step executors (controllers/steps): runStep hands a step to its kind's executor,
// through the controller's services (stepEnv, step_env.go), and writes what it concluded. It is the only place
// that writes a verdict, emits the step's Event and counts its metric.

// runStep starts the step (its start time), has its executor carry it out, and writes what it concluded.
func (r *LabRunReconciler) runStep(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step, plan []labs.Step) error {
	if st.StartTime == nil {
		r.markStarted(st)
		st.Verdict = labsv1.VerdictRunning
	}
	x, ok := steps.For(step.Kind, stepEnv{r})
	if !ok {
		r.finishStep(run, st, labsv1.VerdictError, "", fmt.Sprintf("unknown step kind %q", step.Kind))
		return nil
	}
	out, err := x.Execute(ctx, &steps.Input{Run: run, Step: step, Plan: plan, Result: st})
	r.conclude(run, st, out)
	return err
}

// conclude writes an executor's outcome, when it has a verdict: the verdict, and the completion time at the
// change it wrote (Outcome.ChangedAt), and the steps it skips.
func (r *LabRunReconciler) conclude(run *labsv1.LabRun, st *labsv1.StepResult, out steps.Outcome) {
	if out.Verdict == "" {
		return
	}
	r.finishStep(run, st, out.Verdict, out.Observed, out.Message)
	if !out.ChangedAt.IsZero() && out.ChangedAt.Before(st.CompletionTime.Time) {
		at := metav1.NewMicroTime(out.ChangedAt)
		st.CompletionTime = &at
	}
	if out.SkipRest != "" {
		skipRemaining(run, out.SkipRest)
	}
}

// markStarted gives a step its start time, once.
func (r *LabRunReconciler) markStarted(st *labsv1.StepResult) {
	if st.StartTime == nil {
		now := metav1.NewMicroTime(r.now())
		st.StartTime = &now
	}
}

// finishStep records a verdict, with one Event for it, and counts it: the step loop's, and runStep's for what
// an executor concluded.
func (r *LabRunReconciler) finishStep(run *labsv1.LabRun, st *labsv1.StepResult, v labsv1.Verdict, observed, msg string) {
	now := metav1.NewMicroTime(r.now())
	st.CompletionTime = &now
	st.Verdict = v
	if observed != "" {
		st.Observed = steps.EvidenceLine(observed) // bounded like an evidence line: the CRD refuses longer
	}
	st.Message = steps.EvidenceLine(msg)
	countVerdict(run, st)
	typ, reason := corev1.EventTypeNormal, "StepPassed"
	switch v {
	case labsv1.VerdictFail:
		typ, reason = corev1.EventTypeWarning, "StepFailed"
	case labsv1.VerdictError:
		typ, reason = corev1.EventTypeWarning, "StepErrored"
	}
	// The action names the step: events.k8s.io folds events with the same regarding, reason and action into
	// one series, and each verdict should stay its own Event.
	r.event(run, typ, reason, string(st.Lab)+"/"+st.Name, "%s/%s: %s", st.Lab, st.Name, msg)
}
