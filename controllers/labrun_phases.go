package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
)

// ambientLabel enrols a namespace in ambient mode.
const (
	ambientLabel = "istio.io/dataplane-mode"
	ambientValue = "ambient"
)

// reconcilePlan writes the planned steps into status once, so a user sees the whole run from the start.
func (r *LabRunReconciler) reconcilePlan(ctx context.Context, run *labsv1.LabRun) error {
	if run.Status.Phase != "" {
		return nil
	}
	plan, err := labs.Plan(run.Spec.Labs)
	if err != nil {
		return stalled(labsv1.ReasonPreflightFailed, "planning the run: %v", err)
	}
	now := metav1.NewTime(r.now())
	run.Status.StartTime = &now
	run.Status.Steps = make([]labsv1.StepResult, 0, len(plan))
	for _, s := range plan {
		run.Status.Steps = append(run.Status.Steps, labsv1.StepResult{
			Lab: s.Lab, Name: s.Name, Description: s.Description, Expected: s.Expected(),
			Verdict: labsv1.VerdictPending,
		})
	}
	run.Status.Phase = labsv1.PhasePending
	run.Status.Reason = labsv1.ReasonPending
	run.Status.Message = fmt.Sprintf("Planned %d steps of %d labs", len(plan), len(run.Spec.Labs))
	ctrl.LoggerFrom(ctx).Info("Planned run", "steps", len(plan))
	return nil
}

// reconcilePreflight checks, read-only, that the mesh is there to be tested. A failure ends the run with
// nothing changed.
func (r *LabRunReconciler) reconcilePreflight(ctx context.Context, run *labsv1.LabRun) error {
	if run.Status.Phase != labsv1.PhasePending {
		return nil
	}
	ns := run.TargetNamespace()
	svc := &corev1.Service{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: run.Spec.Target.Service}, svc); err != nil {
		if apierrors.IsNotFound(err) {
			return stalled(labsv1.ReasonPreflightFailed, "target Service %s/%s not found", ns, run.Spec.Target.Service)
		}
		return fmt.Errorf("reading target Service: %w", err)
	}
	if !hasPort(svc, run.Spec.Target.Port) {
		return stalled(labsv1.ReasonPreflightFailed, "target Service %s/%s has no port %d", ns, svc.Name,
			run.Spec.Target.Port)
	}
	namespace := &corev1.Namespace{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Name: ns}, namespace); err != nil {
		return fmt.Errorf("reading target namespace: %w", err)
	}
	if namespace.Labels[ambientLabel] != ambientValue {
		return stalled(labsv1.ReasonPreflightFailed, "namespace %s is not enrolled in ambient mode (label %s=%s missing)",
			ns, ambientLabel, ambientValue)
	}
	run.Status.Phase = labsv1.PhaseRunning
	run.Status.Reason = labsv1.ReasonRunning
	run.Status.Message = "Preflight passed; running steps"
	r.event(run, corev1.EventTypeNormal, "PreflightPassed", "Preflight", "Target %s/%s is in the ambient mesh",
		ns, svc.Name)
	return nil
}

func hasPort(svc *corev1.Service, port int32) bool {
	for _, p := range svc.Spec.Ports {
		if p.Port == port {
			return true
		}
	}
	return false
}

// reconcileFinish ends the run once every step has its verdict: cleanup, then the final phase.
func (r *LabRunReconciler) reconcileFinish(ctx context.Context, run *labsv1.LabRun) error {
	if run.Status.Phase != labsv1.PhaseRunning {
		return nil
	}
	if err := r.cleanup(ctx, run); err != nil {
		return err
	}
	// The labs run so far change nothing in the mesh, so it is as found.
	setMeshRestored(run, metav1.ConditionTrue, labsv1.ReasonUnchanged, "The run changed nothing in the mesh", r.now())
	now := metav1.NewTime(r.now())
	run.Status.CompletionTime = &now
	s := summarize(run.Status.Steps)
	if !allPassed(run.Status.Steps) {
		r.fail(ctx, run, labsv1.ReasonStepsFailed, fmt.Sprintf("%d of %d steps passed (%d failed, %d errored)",
			s.Passed, s.Total, s.Failed, s.Errored))
		return nil
	}
	run.Status.Phase = labsv1.PhaseSucceeded
	run.Status.Reason = labsv1.ReasonSucceeded
	run.Status.Message = fmt.Sprintf("All %d steps passed", s.Total)
	r.event(run, corev1.EventTypeNormal, "RunSucceeded", "Finish", "%s", run.Status.Message)
	ctrl.LoggerFrom(ctx).Info("Run succeeded", "steps", s.Total)
	return nil
}

// fail ends the run as Failed. Steps that never ran are marked Skipped.
func (r *LabRunReconciler) fail(ctx context.Context, run *labsv1.LabRun, reason, msg string) {
	for i := range run.Status.Steps {
		if !terminal(run.Status.Steps[i].Verdict) {
			run.Status.Steps[i].Verdict = labsv1.VerdictSkipped
			run.Status.Steps[i].Message = "Not run: " + msg
		}
	}
	if run.Status.CompletionTime == nil {
		now := metav1.NewTime(r.now())
		run.Status.CompletionTime = &now
	}
	run.Status.Phase = labsv1.PhaseFailed
	run.Status.Reason = reason
	run.Status.Message = msg
	if reason == labsv1.ReasonPreflightFailed {
		setMeshRestored(run, metav1.ConditionTrue, labsv1.ReasonUnchanged, "Preflight failed; nothing in the mesh was changed", r.now())
	}
	r.event(run, corev1.EventTypeWarning, "RunFailed", "Finish", "%s", msg)
	ctrl.LoggerFrom(ctx).Info("Run failed", "reason", reason, "message", msg)
}

