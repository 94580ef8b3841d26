package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
	"github.com/ambientlab/labrun-operator/internal/labs"
)

// The manager reads the admission policies and bindings to check they are installed as shipped
// (internal/admissioncheck); it never writes them.
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingadmissionpolicies;validatingadmissionpolicybindings,verbs=get;list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingadmissionpolicies;mutatingadmissionpolicybindings,verbs=get;list;watch

// AdmissionGate says whether the admission policies that hold the trust boundary (a run is admitted only within
// its requester's rights; only the manager writes runs' status and the operator's marks) are installed as
// shipped and enforced. internal/admissioncheck.Guard is the implementation.
type AdmissionGate interface {
	// Enforced is nil while they are, else an error naming the missing or altered policy or binding.
	Enforced() error
	// Changes delivers an event whenever the answer of Enforced changes.
	Changes() <-chan event.GenericEvent
}

// admissionWaitMessage opens the message of a Lab run that waits for the admission policies.
const admissionWaitMessage = "Waiting for the admission policies: Lab runs change the mesh only while the policies that " +
	"check requesters' rights are installed as shipped and enforced (Verify runs go on): "

// reconcileAdmission holds a Lab run that would change the mesh (Pending or Queued: before its first change)
// while the admission policies are not installed as shipped and enforced: without them the run may have been
// admitted for someone without the rights to make its changes. The run waits, saying why, and goes on when they
// are back (the gate's Changes wake it). Verify and dry runs change nothing and are not held. A Running run is
// asked again before each window (openGate), never inside one: stopping it there would only keep the mesh
// weakened longer (restore never waits).
func (r *LabRunReconciler) reconcileAdmission(ctx context.Context, run *labsv1.LabRun) error {
	if run.Status.Phase != labsv1.PhasePending && run.Status.Phase != labsv1.PhaseQueued {
		return nil
	}
	held, err := r.holdForAdmission(ctx, run)
	if err != nil || !held {
		return err
	}
	return steps.WaitFor("the admission policies", time.Minute)
}

// holdForAdmission tells whether a Lab run must wait for the admission policies before it changes the mesh,
// and if so says why in its status.
func (r *LabRunReconciler) holdForAdmission(ctx context.Context, run *labsv1.LabRun) (bool, error) {
	plan, err := planOf(run)
	if err != nil || !labs.Mutates(plan) || run.Spec.DryRun {
		return false, nil
	}
	err = fmt.Errorf("the manager was built without its admission check")
	if r.Admission != nil {
		err = r.Admission.Enforced()
	}
	if err == nil {
		return false, nil
	}
	if run.Status.Reason != labsv1.ReasonAdmissionNotEnforced {
		r.event(run, corev1.EventTypeWarning, labsv1.ReasonAdmissionNotEnforced, "Wait",
			"Lab run waits: the admission policies are not installed as shipped and enforced: %v", err)
		ctrl.LoggerFrom(ctx).Info("Holding a Lab run until the admission policies are enforced", "cause", err.Error())
	}
	run.Status.Reason = labsv1.ReasonAdmissionNotEnforced
	run.Status.Message = admissionWaitMessage + err.Error()
	return true, nil
}

// admissionSource wakes the runs waiting for the admission policies when the gate's answer changes.
func (r *LabRunReconciler) admissionSource() source.Source {
	var changes <-chan event.GenericEvent = make(chan event.GenericEvent)
	if r.Admission != nil {
		changes = r.Admission.Changes()
	}
	return source.Channel(changes, handler.EnqueueRequestsFromMapFunc(r.admissionWaiters))
}

func (r *LabRunReconciler) admissionWaiters(ctx context.Context, _ client.Object) []reconcile.Request {
	return r.runsWhere(ctx, "waiting for the admission policies", func(run *labsv1.LabRun) bool {
		return run.Status.Reason == labsv1.ReasonAdmissionNotEnforced
	})
}
