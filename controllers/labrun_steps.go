package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
	"github.com/ambientlab/labrun-operator/internal/labs"
)

// reconcileSteps runs the steps in order, as far as it can without waiting. A step that changes the mesh or
// creates a fixture and fails stops the run (the rest is skipped and the mesh restored); a probe or evidence
// step that fails is recorded and the run goes on, so one run shows every finding.
//
// checkpoint writes the run's status so far (Reconcile's), in the middle of the pass.
func (r *LabRunReconciler) reconcileSteps(ctx context.Context, run *labsv1.LabRun, checkpoint func() error) error {
	if run.Status.Phase != labsv1.PhaseRunning {
		return nil
	}
	plan, err := planOf(run)
	if err != nil || len(plan) != len(run.Status.Steps) {
		// An operator upgraded mid-run with another catalogue: stop, but restore like any other failure.
		skipRemaining(run, "Not run: the operator's lab catalogue changed during the run")
		run.Status.Phase, run.Status.Reason = labsv1.PhaseRestoring, labsv1.ReasonRestoring
		return nil
	}
	if run.Spec.DryRun {
		r.dryRun(run)
		run.Status.Phase, run.Status.Reason = labsv1.PhaseRestoring, labsv1.ReasonRestoring
		return nil
	}
	// A run whose next step opens a window asks for the lock first: if it must wait, far back in the queue, it
	// starts nothing (openGate).
	gated := false
	if i := nextRunnable(run, plan); i >= 0 && needsLock(plan, i) && run.Status.Exposure.Since == nil {
		open, err := r.openGate(ctx, run, plan)
		if err != nil || !open {
			return orWait(err, run)
		}
		gated = true
	}
	unsaved, err := r.prepare(ctx, run, plan)
	if err != nil || run.Status.Phase != labsv1.PhaseRunning {
		return err
	}
	for i, step := range plan {
		st := &run.Status.Steps[i]
		if terminal(st.Verdict) {
			continue
		}
		if step.Mutates() && step.Kind != labs.KindRestore && unsaved {
			// A weakening waits until the verdicts before it are written: after a crash only the change itself
			// is left to redo (idempotent, from the trusted record), and no verdict is judged again in a mesh it
			// was not meant for. A restore never waits: the sooner the better.
			if err := checkpoint(); err != nil {
				return err
			}
			unsaved = false
		}
		unsaved = unsaved || !step.Mutates()
		// A restore step may find its object already back (a crash right after restoring): not interference.
		if r.exposureExceeded(run, st) {
			break
		}
		if step.Kind != labs.KindRestore {
			if msg := r.interference(ctx, run); msg != "" {
				r.markStarted(st)
				r.finishStep(run, st, labsv1.VerdictError, "", msg)
				skipRemaining(run, steps.SkipInterfered)
				break
			}
		}
		if !gated && run.Status.Exposure.Since == nil && step.Kind != labs.KindCreateFixture && needsLock(plan, i) {
			// A lab that changes the mesh looks at it under its lock from its first look to its last: its
			// baseline and its after-checks must not see another run's window.
			open, err := r.openGate(ctx, run, plan)
			if err != nil || !open {
				return orWait(err, run)
			}
			gated = true
		}
		if r.holdRunOut(run, plan, i, st) {
			continue
		}
		if budget := r.stepBudget(run); st.StartTime != nil && r.now().After(st.StartTime.Add(budget)) {
			// Transient errors retry with backoff, but never past the step's own deadline.
			r.finishStep(run, st, labsv1.VerdictError, "", fmt.Sprintf("step timed out: no outcome within %s", budget))
			if stopsRun(step) {
				skipRemaining(run, fmt.Sprintf("Not run: step %s/%s did not pass", st.Lab, st.Name))
				break
			}
			continue
		}
		if step.Weakens && run.Status.Exposure.Since == nil {
			// A window opens only with the lock on what it reaches, held from here to its verified restore.
			if !gated {
				open, err := r.openGate(ctx, run, plan)
				if err != nil || !open {
					return orWait(err, run)
				}
				gated = true
			}
			// A weakened window opens only once every observer is running and watching: no pod starts inside
			// it. The step's own budget bounds the wait.
			if st.StartTime == nil {
				now := metav1.NewMicroTime(r.now())
				st.StartTime, st.Verdict = &now, labsv1.VerdictRunning
			}
			starting, blocked, err := r.startObservers(ctx, run, plan)
			if err != nil {
				return err
			}
			if len(blocked) > 0 {
				// Weakening for nothing: a window nobody observes proves nothing and exposes the mesh.
				r.finishStep(run, st, labsv1.VerdictError, "", "The mesh was not weakened: observer "+blocked[0])
				skipRemaining(run, fmt.Sprintf("Not run: step %s/%s did not pass", st.Lab, st.Name))
				break
			}
			waiting := starting
			if len(waiting) == 0 {
				if waiting, err = r.observersWatching(ctx, run, plan); err != nil {
					return err
				}
			}
			if len(waiting) > 0 && r.now().After(st.StartTime.Add(r.PodStartGrace)) {
				// The run holds the lock from here: it may not hold it for as long as a step's budget (its settle)
				// for observers that do not come.
				r.finishStep(run, st, labsv1.VerdictError, "", fmt.Sprintf(
					"The mesh was not weakened: observers %v were not running and watching within %s (--pod-start-grace)",
					waiting, r.PodStartGrace))
				skipRemaining(run, fmt.Sprintf("Not run: step %s/%s did not pass", st.Lab, st.Name))
				break
			}
			if len(starting) > 0 {
				return steps.WaitFor(fmt.Sprintf("observers %v to start before the mesh is weakened", starting),
					r.deadlineAfter(run, r.PodStartGrace))
			}
			if len(waiting) > 0 {
				return steps.WaitFor(fmt.Sprintf("observers %v to watch before the mesh is weakened", waiting), observerPoll)
			}
		}
		if err := r.runStep(ctx, run, st, step, plan); err != nil {
			return err
		}
		if terminal(st.Verdict) && endsMutatingLab(plan, i) {
			// The window is closed, read back and its aftermath checked (the lab's probes that see the restore
			// take effect): the lock goes to whoever waits, until the next window.
			if err := r.releaseAfterWindow(ctx, run); err != nil {
				return err
			}
			gated = false
		}
		if step.Kind == labs.KindProbe && terminal(st.Verdict) {
			if err := r.retireObservers(ctx, run, plan); err != nil {
				return err
			}
		}
		if st.Verdict != labsv1.VerdictPass && stopsRun(step) {
			skipRemaining(run, fmt.Sprintf("Not run: step %s/%s did not pass", st.Lab, st.Name))
			break
		}
	}
	run.Status.Phase = labsv1.PhaseRestoring
	if run.Status.Reason != labsv1.ReasonExposureExceeded {
		run.Status.Reason = labsv1.ReasonRestoring
	}
	return nil
}

// nextRunnable is the index of the first step without a verdict that is not a fixture (fixtures are made ready
// with the observers, ahead of their place), or -1.
func nextRunnable(run *labsv1.LabRun, plan []labs.Step) int {
	for i := range run.Status.Steps {
		if !terminal(run.Status.Steps[i].Verdict) && plan[i].Kind != labs.KindCreateFixture {
			return i
		}
	}
	return -1
}

// holdRunOut bounds what a lab checks after its restore while the run still holds the lock: the restore must be
// seen to take effect within maxExposure of it, whatever a step's settle. Past that, the step errs (a restore
// that does not take effect is a finding) and the lab ends, which gives the lock back.
func (r *LabRunReconciler) holdRunOut(run *labsv1.LabRun, plan []labs.Step, i int, st *labsv1.StepResult) bool {
	restored := -1
	for j := i - 1; j >= 0 && plan[j].Lab == plan[i].Lab; j-- {
		if plan[j].Kind == labs.KindRestore {
			restored = j
			break
		}
	}
	if restored < 0 || run.Status.Exposure.Since != nil {
		return false
	}
	done := run.Status.Steps[restored].CompletionTime
	if done == nil || !r.now().After(done.Add(r.exposureBudget(run))) {
		return false
	}
	r.markStarted(st)
	r.finishStep(run, st, labsv1.VerdictError, "", fmt.Sprintf("no outcome within maxExposure (%s) of the restore: "+
		"the lock on what the window reached is given back at the end of the lab", r.exposureBudget(run)))
	return true
}

// looksAtMesh: the step changes the mesh, or judges what the mesh does now (a probe, the effective mode).
// Evidence steps read log lines already written; fixtures change no policy.
func looksAtMesh(s labs.Step) bool {
	return s.Mutates() || s.Kind == labs.KindProbe || s.Kind == labs.KindCheckMode || s.Kind == labs.KindAudit
}

// labMutates: the lab changes the mesh.
func labMutates(plan []labs.Step, lab labsv1.LabName) bool {
	for _, s := range plan {
		if s.Lab == lab && s.Mutates() {
			return true
		}
	}
	return false
}

// needsLock: step i belongs to a lab that changes the mesh, and it or a later step of that lab looks at the mesh.
// Such a lab holds its lock from its first look to its last (its baseline, its window, its after-checks).
func needsLock(plan []labs.Step, i int) bool {
	if !labMutates(plan, plan[i].Lab) {
		return false
	}
	for j := i; j < len(plan) && plan[j].Lab == plan[i].Lab; j++ {
		if looksAtMesh(plan[j]) {
			return true
		}
	}
	return false
}

// endsMutatingLab: step i is the last look at the mesh of a lab that changes it: after it, the lab changes and
// judges nothing (its evidence steps read log lines already written, its fixtures go).
func endsMutatingLab(plan []labs.Step, i int) bool {
	return labMutates(plan, plan[i].Lab) && (i+1 >= len(plan) || !needsLock(plan, i+1) || plan[i+1].Lab != plan[i].Lab)
}

// orWait is what a pass returns when the gate did not open: its error, or a wait for the lock (a Queued run
// is woken by ticket events; the poll is a backstop).
func orWait(err error, run *labsv1.LabRun) error {
	if err != nil || run.Status.Phase != labsv1.PhaseQueued {
		return err
	}
	if run.Status.Reason == labsv1.ReasonAdmissionNotEnforced {
		return steps.WaitFor("the admission policies", time.Minute)
	}
	return steps.WaitFor("the mesh lock", lockPoll)
}

// prepare runs ahead what depends on no mesh change: it creates every fixture of the plan (their steps pass
// where they stand in the plan, earlier than listed), then starts every observer the probe steps need, all at
// once. A fixture that cannot be created stops the run, as it would in its place. It reports whether it did
// anything this pass.
func (r *LabRunReconciler) prepare(ctx context.Context, run *labsv1.LabRun, plan []labs.Step) (bool, error) {
	progressed := false
	// Whose observers and fixtures the run uses is decided before the first of them (labrun_warm.go).
	if err := r.decideKeeper(ctx, run); err != nil {
		return false, err
	}
	if needs(plan, labs.KindCreateFixture) {
		// A run that changes no policy (Verify) still creates fixtures: its trusted record names them, so the
		// watchdog can remove them if the run is force-deleted.
		rec, err := r.recordOrNew(ctx, run)
		if err != nil {
			return false, err
		}
		if !rec.Stored() {
			if err := r.Records.Save(ctx, rec); err != nil && !apierrors.IsAlreadyExists(err) {
				return false, err
			}
		}
	}
	for i, step := range plan {
		st := &run.Status.Steps[i]
		if step.Kind != labs.KindCreateFixture || terminal(st.Verdict) {
			continue
		}
		progressed = true
		if err := r.runStep(ctx, run, st, step, plan); err != nil {
			return true, err
		}
		if st.Verdict != labsv1.VerdictPass {
			skipRemaining(run, fmt.Sprintf("Not run: step %s/%s did not pass", st.Lab, st.Name))
			run.Status.Phase, run.Status.Reason = labsv1.PhaseRestoring, labsv1.ReasonRestoring
			return true, nil
		}
	}
	if _, _, err := r.startObservers(ctx, run, plan); err != nil {
		return progressed, err
	}
	return progressed, nil
}

// stepBudget bounds any step: a probe's own budget plus the evidence wait (a probe step times out first).
func (r *LabRunReconciler) stepBudget(run *labsv1.LabRun) time.Duration {
	return r.probeBudget(run) + r.EvidenceWait + 10*time.Second
}

func stopsRun(s labs.Step) bool {
	return s.Mutates() || s.Kind == labs.KindCreateFixture
}

// dryRun lists the steps with the changes they would make, and runs none.
func (r *LabRunReconciler) dryRun(run *labsv1.LabRun) {
	for i := range run.Status.Steps {
		st := &run.Status.Steps[i]
		st.Verdict = labsv1.VerdictSkipped
		st.Message = "Dry run: not run"
	}
	setMeshRestored(run, metav1.ConditionTrue, labsv1.ReasonDryRun, "Dry run: nothing in the mesh was changed", r.now())
}

// deadlineAfter is the earliest of the exposure deadline and d from now; waits never outlive maxExposure.
func (r *LabRunReconciler) deadlineAfter(run *labsv1.LabRun, d time.Duration) time.Duration {
	if left, open := r.exposureLeft(run); open && left < d {
		return left
	}
	return d
}

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

// finishStep records a verdict, with one Event for it (not for a pass in a schedule's Verify run), and counts it: the step loop's, and runStep's for what
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
	if v == labsv1.VerdictPass && scheduleOf(run) != nil {
		// A schedule's Verify run, every few minutes for good: a step that passed is in its status and reports;
		// an Event for each would be most of what the run writes to the API server. What did not pass gets one.
		return
	}
	// The action names the step: events.k8s.io folds events with the same regarding, reason and action into
	// one series, and each verdict should stay its own Event.
	r.event(run, typ, reason, string(st.Lab)+"/"+st.Name, "%s/%s: %s", st.Lab, st.Name, msg)
}
