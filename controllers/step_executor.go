package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
)

// Step executors: one per kind of step (labs.Kind), one file each (step_*.go). An executor carries out its step
// and says what it concluded; the step loop (reconcileSteps, through runStep) is the only place that writes a
// verdict, emits the step's Event and counts its metric.

// stepExecutor carries out one kind of step.
//
// execute returns, as its result contract:
//   - an outcome with a verdict, and a nil error: the step is over; runStep writes the verdict, its observed
//     text and message, and, with skipRest, skips the steps after it;
//   - no verdict and a *waitingError (waitFor): the step is not over; the pass ends and comes back on a watched
//     event or at the error's deadline;
//   - no verdict and an error wrapping errAborted (fault injection): the pass ends and writes nothing, as if the
//     manager died there;
//   - no verdict and a *stalledError, or an error the API server refused for good (refusedForGood): the run
//     fails (Reconcile's outcome);
//   - no verdict and any other error: transient; the pass ends and is retried with backoff, within the step's
//     budget;
//   - no verdict and a nil error: the step has done what it can this pass and runs again in the next.
//
// What an executor may write: its own result fields (in.result: evidence, attempts, coverage, …, never its
// verdict, observed text, message or times); the mesh state (the trusted record, the run's journal copy and
// exposure) only for the kinds that change the mesh; the footprint only for the footprint kinds. in.run and
// in.plan are read only otherwise.
type stepExecutor interface {
	execute(ctx context.Context, in *stepInput) (outcome, error)
}

// stepInput is what a step executor is handed.
type stepInput struct {
	run    *labsv1.LabRun
	step   labs.Step
	plan   []labs.Step // the run's plan, worked out once per pass
	result *labsv1.StepResult
}

// outcome is what an executor concluded. The zero outcome is no verdict yet.
type outcome struct {
	verdict           labsv1.Verdict
	observed, message string
	// skipRest, when set, skips every step after this one with this message (the mesh was changed by someone
	// else: nothing after it would be judged in the mesh it was meant for).
	skipRest string
	// changedAt, for a step that changed the mesh, is when it began writing its change: the step's completion
	// time, from which the next probe counts (and before which seeing the new behaviour is "early"). The step
	// itself goes on after the write (it reads the change back, records it), and a probe that saw the change
	// take effect within that time must not be judged early.
	changedAt time.Time
}

// concluded is an outcome with a verdict.
func concluded(v labsv1.Verdict, observed, msg string) outcome {
	return outcome{verdict: v, observed: observed, message: msg}
}

// errored is an Error verdict saying why.
func errored(msg string) outcome { return outcome{verdict: labsv1.VerdictError, message: msg} }

// stepExecutors are the executors by step kind: every kind the catalogue uses has one
// (TestEveryCatalogueKindHasAnExecutor).
var stepExecutors = map[labs.Kind]func(*LabRunReconciler) stepExecutor{
	labs.KindProbe:           func(r *LabRunReconciler) stepExecutor { return probeExecutor{r} },
	labs.KindCheckMode:       func(r *LabRunReconciler) stepExecutor { return checkModeExecutor{r} },
	labs.KindSetAside:        func(r *LabRunReconciler) stepExecutor { return weakenExecutor{r} },
	labs.KindSetPermissive:   func(r *LabRunReconciler) stepExecutor { return weakenExecutor{r} },
	labs.KindRestore:         func(r *LabRunReconciler) stepExecutor { return restoreExecutor{r} },
	labs.KindCreateFixture:   func(r *LabRunReconciler) stepExecutor { return createFixtureExecutor{r} },
	labs.KindRemoveFixture:   func(r *LabRunReconciler) stepExecutor { return removeFixtureExecutor{r} },
	labs.KindEvidence:        func(r *LabRunReconciler) stepExecutor { return evidenceExecutor{r} },
	labs.KindNoSidecars:      func(r *LabRunReconciler) stepExecutor { return footprintExecutor{r} },
	labs.KindZtunnelUsage:    func(r *LabRunReconciler) stepExecutor { return footprintExecutor{r} },
	labs.KindSidecarEstimate: func(r *LabRunReconciler) stepExecutor { return footprintExecutor{r} },
}

// runStep starts the step (its start time), has its executor carry it out, and writes what it concluded.
func (r *LabRunReconciler) runStep(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step, plan []labs.Step) error {
	if st.StartTime == nil {
		r.markStarted(st)
		st.Verdict = labsv1.VerdictRunning
	}
	newExecutor, ok := stepExecutors[step.Kind]
	if !ok {
		r.finishStep(run, st, labsv1.VerdictError, "", fmt.Sprintf("unknown step kind %q", step.Kind))
		return nil
	}
	out, err := newExecutor(r).execute(ctx, &stepInput{run: run, step: step, plan: plan, result: st})
	if out.verdict != "" {
		r.finishStep(run, st, out.verdict, out.observed, out.message)
		if !out.changedAt.IsZero() && out.changedAt.Before(st.CompletionTime.Time) {
			at := metav1.NewMicroTime(out.changedAt)
			st.CompletionTime = &at
		}
		if out.skipRest != "" {
			skipRemaining(run, out.skipRest)
		}
	}
	return err
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
		st.Observed = evidenceLine(observed) // bounded like an evidence line: the CRD refuses longer
	}
	st.Message = evidenceLine(msg)
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
