package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// ambientLabel enrols a namespace in ambient mode.
const (
	ambientLabel = "istio.io/dataplane-mode"
	ambientValue = "ambient"
)

// reconcilePlan writes the planned steps into status once, so a user sees the whole run from the start. A run
// not planned yet has no start time (its phase is Pending, the API server's default, or empty when stored
// before that default).
func (r *LabRunReconciler) reconcilePlan(ctx context.Context, run *labsv1.LabRun) error {
	if run.Status.StartTime != nil || (run.Status.Phase != "" && run.Status.Phase != labsv1.PhasePending) {
		return nil
	}
	plan, err := planOf(run)
	if err != nil {
		return stalled(labsv1.ReasonPreflightFailed, "planning the run: %v", err)
	}
	now := metav1.NewTime(r.now())
	run.Status.StartTime = &now
	run.Status.Steps = make([]labsv1.StepResult, 0, len(plan))
	for _, s := range plan {
		run.Status.Steps = append(run.Status.Steps, labsv1.StepResult{
			Lab: s.Lab, Name: s.Name, Description: s.Description, Expected: s.Expected(),
			Verdict: labsv1.VerdictPending, Change: r.changeOf(run, s),
		})
	}
	run.Status.Phase = labsv1.PhasePending
	run.Status.Reason = labsv1.ReasonPending
	run.Status.Message = fmt.Sprintf("Planned %d steps of %d labs", len(plan), len(run.Spec.Labs))
	ctrl.LoggerFrom(ctx).Info("Planned run", "steps", len(plan), "dryRun", run.Spec.DryRun)
	return nil
}

// reconcilePreflight checks, read-only, that the mesh is there to be tested. A failure ends the run with
// nothing changed.
func (r *LabRunReconciler) reconcilePreflight(ctx context.Context, run *labsv1.LabRun) error {
	if run.Status.Phase != labsv1.PhasePending {
		return nil
	}
	plan, _ := planOf(run)
	checks := []func(context.Context, *labsv1.LabRun) error{r.preflightMesh, r.preflightEnabled, r.preflightTarget, r.preflightZtunnel}
	if needs(plan, labs.KindCheckMode, labs.KindSetPermissive) {
		checks = append(checks, r.preflightPeerAuthentication)
	}
	if needs(plan, labs.KindSetAside) {
		checks = append(checks, r.preflightAuthorizationPolicy)
	}
	if needs(plan, labs.KindProbe) {
		checks = append(checks, r.preflightClient)
	}
	for _, check := range checks {
		if err := check(ctx, run); err != nil {
			return err
		}
	}
	if scheduleOf(run) == nil {
		// A schedule's run, every few minutes for good, writes no Event for what passed (its steps neither): its
		// schedule's RunCreated and its own RunSucceeded or RunFailed say it ran.
		r.event(run, corev1.EventTypeNormal, "PreflightPassed", "Preflight", "Target %s/%s is in the ambient mesh",
			run.TargetNamespace(), run.Spec.Target.Service)
	}
	// Next, a place among the active runs (reconcileSlot). Non-mutating labs run outside any lock: a Lab run asks
	// for one just before its first window.
	run.Status.Phase = labsv1.PhaseQueued
	run.Status.Reason = labsv1.ReasonWaitingForSlot
	run.Status.Message = "Preflight passed"
	return nil
}

// preflightEnabled refuses a run that would touch a namespace an administrator has not enabled for runs: the
// target's (probe pods, the attacker), for runs that change the mesh the root namespace (PeerAuthentication)
// and the AuthorizationPolicy's, and the namespaces a policy audit audits.
func (r *LabRunReconciler) preflightEnabled(ctx context.Context, run *labsv1.LabRun) error {
	if r.EnabledLabel == "" {
		return nil
	}
	plan, _ := planOf(run)
	touched := []string{run.TargetNamespace()}
	if labs.Mutates(plan) && !run.Spec.DryRun {
		touched = append(touched, r.meshConfig().RootNamespace)
	}
	if needs(plan, labs.KindSetAside) && !run.Spec.DryRun {
		touched = append(touched, policyRef(run).Namespace)
	}
	if needs(plan, labs.KindAudit) {
		// The audit runs probe pods as the ServiceAccounts of the namespaces it audits.
		touched = append(touched, auditNamespaces(run)...)
	}
	for _, ns := range touched {
		namespace := &corev1.Namespace{}
		err := r.APIReader.Get(ctx, types.NamespacedName{Name: ns}, namespace)
		if client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("reading namespace %s: %w", ns, err)
		}
		if err != nil || namespace.Labels[r.EnabledLabel] != "true" {
			return stalled(labsv1.ReasonPreflightFailed,
				"namespace %s is not enabled for LabRuns: an administrator must label it %s=true", ns, r.EnabledLabel)
		}
	}
	return nil
}

// preflightClient: the client's ServiceAccount must exist, or no observer of the client can start. Waiting for it
// would hold the run (and, for a Lab run, the lock) a whole step budget for an observer that can never run.
func (r *LabRunReconciler) preflightClient(ctx context.Context, run *labsv1.LabRun) error {
	ns, name := run.TargetNamespace(), run.Spec.Client.ServiceAccount
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &corev1.ServiceAccount{})
	if apierrors.IsNotFound(err) {
		return stalled(labsv1.ReasonPreflightFailed,
			"ServiceAccount %s/%s (spec.client.serviceAccount) does not exist: the client's probe pods run as it", ns, name)
	}
	if err != nil {
		return fmt.Errorf("reading ServiceAccount %s/%s: %w", ns, name, err)
	}
	return nil
}

func needs(plan []labs.Step, kinds ...labs.Kind) bool {
	for _, s := range plan {
		for _, k := range kinds {
			if s.Kind == k {
				return true
			}
		}
	}
	return false
}

func (r *LabRunReconciler) preflightTarget(ctx context.Context, run *labsv1.LabRun) error {
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

// preflightZtunnel needs at least one ready ztunnel pod: without one there is no ambient data plane to test.
func (r *LabRunReconciler) preflightZtunnel(ctx context.Context, run *labsv1.LabRun) error {
	z := r.meshConfig()
	// The manager's flags are checked at start; this keeps an empty one from ever widening into "every pod".
	if _, err := labels.ValidatedSelectorFromSet(z.ZtunnelSelector); err != nil {
		return stalled(labsv1.ReasonPreflightFailed, "the operator's ztunnel selector is not a valid label selector: %v", err)
	}
	pods := &corev1.PodList{}
	if err := r.APIReader.List(ctx, pods, client.InNamespace(z.ZtunnelNamespace), client.MatchingLabels(z.ZtunnelSelector)); err != nil {
		return fmt.Errorf("listing ztunnel pods: %w", err)
	}
	for i := range pods.Items {
		if podReady(&pods.Items[i]) {
			return nil
		}
	}
	return stalled(labsv1.ReasonPreflightFailed, "no ready ztunnel pod matches %s in namespace %s (%d found)",
		mesh.SelectorString(z.ZtunnelSelector), z.ZtunnelNamespace, len(pods.Items))
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (r *LabRunReconciler) preflightPeerAuthentication(ctx context.Context, run *labsv1.LabRun) error {
	return r.preflightExists(ctx, r.peerAuthRef(run))
}

func (r *LabRunReconciler) preflightAuthorizationPolicy(ctx context.Context, run *labsv1.LabRun) error {
	return r.preflightExists(ctx, policyRef(run))
}

func (r *LabRunReconciler) preflightExists(ctx context.Context, ref mesh.Ref) error {
	if _, err := mesh.Mode(ctx, r.APIReader, ref); err != nil {
		if apierrors.IsNotFound(err) {
			return stalled(labsv1.ReasonPreflightFailed, "%s not found", ref)
		}
		return err
	}
	return nil
}

func (r *LabRunReconciler) peerAuthRef(run *labsv1.LabRun) mesh.Ref {
	return mesh.Ref{Kind: mesh.KindPeerAuthentication, Namespace: r.meshConfig().RootNamespace,
		Name: run.Spec.Mesh.PeerAuthentication}
}

func policyRef(run *labsv1.LabRun) mesh.Ref {
	ap := run.Spec.Mesh.AuthorizationPolicy
	if ap == nil {
		return mesh.Ref{Kind: mesh.KindAuthorizationPolicy}
	}
	ns := ap.Namespace
	if ns == "" {
		ns = run.TargetNamespace()
	}
	return mesh.Ref{Kind: mesh.KindAuthorizationPolicy, Namespace: ns, Name: ap.Name}
}

// reconcileLock looks again at a Queued run's place: served, it runs on (reconcileSteps opens its window).
func (r *LabRunReconciler) reconcileLock(ctx context.Context, run *labsv1.LabRun) error {
	if run.Status.Phase != labsv1.PhaseQueued || run.Status.ActiveSince == nil {
		return nil
	}
	plan, err := planOf(run)
	if err != nil {
		return stalled(labsv1.ReasonPreflightFailed, "planning the run: %v", err)
	}
	open, err := r.openGate(ctx, run, plan)
	if err != nil || open || run.Status.Phase != labsv1.PhaseQueued {
		return err
	}
	return steps.WaitFor("the mesh lock", lockPoll)
}

// reconcileFinish ends the run once the mesh is restored and everything is cleaned up.
func (r *LabRunReconciler) reconcileFinish(ctx context.Context, run *labsv1.LabRun) error {
	if run.Status.Phase != labsv1.PhaseRestoring {
		return nil
	}
	now := metav1.NewTime(r.now())
	run.Status.CompletionTime = &now
	s := summarize(run.Status.Steps)
	if run.Status.Reason == labsv1.ReasonExposureExceeded || !allPassed(run.Status.Steps) {
		msg := fmt.Sprintf("%d of %d steps passed (%d failed, %d errored)", s.Passed, s.Total, s.Failed, s.Errored) +
			firstCause(run.Status.Steps)
		reason := labsv1.ReasonStepsFailed
		if run.Status.Reason == labsv1.ReasonExposureExceeded {
			reason, msg = labsv1.ReasonExposureExceeded, run.Status.Message+"; "+msg
		}
		r.fail(ctx, run, reason, msg)
		return nil
	}
	run.Status.Phase = labsv1.PhaseSucceeded
	run.Status.Reason = labsv1.ReasonSucceeded
	run.Status.Message = fmt.Sprintf("All %d steps passed", s.Total)
	if run.Spec.DryRun {
		run.Status.Message = fmt.Sprintf("Dry run: %d steps planned, nothing changed", s.Total)
	}
	r.event(run, corev1.EventTypeNormal, "RunSucceeded", "Finish", "%s", run.Status.Message)
	observeRun(run, meta.IsStatusConditionTrue(run.Status.Conditions, labsv1.ConditionMeshRestored))
	ctrl.LoggerFrom(ctx).Info("Run succeeded", "steps", s.Total)
	return nil
}

// fail ends the run as Failed. Steps that never ran are marked Skipped. The mesh is restored before a run can
// fail after preflight (reconcileRestore runs first); preflight failures changed nothing.
func (r *LabRunReconciler) fail(ctx context.Context, run *labsv1.LabRun, reason, msg string) {
	skipRemaining(run, "Not run: "+msg)
	if run.Status.CompletionTime == nil {
		now := metav1.NewTime(r.now())
		run.Status.CompletionTime = &now
	}
	run.Status.Phase = labsv1.PhaseFailed
	run.Status.Reason = reason
	run.Status.Message = msg
	if len(run.Status.Journal) == 0 {
		setMeshRestored(run, metav1.ConditionTrue, labsv1.ReasonUnchanged, "The run changed nothing in the mesh", r.now())
	}
	r.event(run, corev1.EventTypeWarning, "RunFailed", "Finish", "%s", msg)
	observeRun(run, meta.IsStatusConditionTrue(run.Status.Conditions, labsv1.ConditionMeshRestored))
	ctrl.LoggerFrom(ctx).Info("Run failed", "reason", reason, "message", msg)
}

// firstCause names the first step that did not pass, so the run's message says why without a reader scanning
// the steps.
func firstCause(steps []labsv1.StepResult) string {
	for _, st := range steps {
		if st.Verdict == labsv1.VerdictFail || st.Verdict == labsv1.VerdictError {
			return fmt.Sprintf("; first: %s/%s %s: %s", st.Lab, st.Name, st.Verdict, st.Message)
		}
	}
	return ""
}

func skipRemaining(run *labsv1.LabRun, msg string) {
	for i := range run.Status.Steps {
		if !terminal(run.Status.Steps[i].Verdict) {
			run.Status.Steps[i].Verdict = labsv1.VerdictSkipped
			run.Status.Steps[i].Message = steps.EvidenceLine(msg)
		}
	}
}

// msgInterrupted is the verdict of the step a run was in when its manager went away with the mesh weakened.
const msgInterrupted = "the manager was replaced while the mesh was weakened; the mesh was restored at once"

// reconcileInterrupted ends a run whose trusted record a takeover marked Interrupted: what the run believed
// weakened, and since when, no longer holds. The step it was in errors, the rest is skipped, and the run goes to
// restore (nothing left to put back, but cleanup and the lock) and ends Failed with the mesh restored.
func (r *LabRunReconciler) reconcileInterrupted(ctx context.Context, run *labsv1.LabRun) error {
	if run.Status.Phase != labsv1.PhaseQueued && run.Status.Phase != labsv1.PhaseRunning {
		return nil
	}
	rec, err := r.Records.Get(ctx, string(run.UID))
	if err != nil || rec == nil || rec.Interrupted == nil {
		return err
	}
	ctrl.LoggerFrom(ctx).Info("Ending a run whose changes were restored when this manager took over")
	r.abortRun(run, msgInterrupted)
	return nil
}
