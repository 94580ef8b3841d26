// Package controllers holds the LabRun reconciler. It only orchestrates: the labs, the prober, the mesh
// changes and the log evidence live in internal/.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// LabRunReconciler runs LabRuns: preflight, then each planned step, then restore and cleanup.
type LabRunReconciler struct {
	client.Client
	// APIReader reads objects the manager does not cache (Services, Namespaces), straight from the API server.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// ProbeImage runs `manager probe` when a LabRun names no image.
	ProbeImage string
	// PodStartGrace is how long a probe pod may take to start before its step errors out.
	PodStartGrace time.Duration
	// Now is the clock; tests may replace it.
	Now func() time.Time
}

// +kubebuilder:rbac:groups=labs.ambientlab.io,resources=labruns,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=labs.ambientlab.io,resources=labruns/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=labs.ambientlab.io,resources=labruns/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;create;delete;deletecollection
// +kubebuilder:rbac:groups="",resources=services;namespaces,verbs=get;list
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile moves one LabRun forward: get → deferred status patch → deletion → finalizer → ordered phases.
func (r *LabRunReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	// Read the run live, not from the cache: a pass acts on the cluster (creates pods, changes the mesh) from
	// what status says, and a stale status would repeat an action already done.
	run := &labsv1.LabRun{}
	if err := r.APIReader.Get(ctx, req.NamespacedName, run); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !run.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, run)
	}
	if !controllerutil.ContainsFinalizer(run, labsv1.Finalizer) {
		// The finalizer goes on before anything else, so no change can outlive a deleted run.
		patch := client.MergeFromWithOptions(run.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(run, labsv1.Finalizer)
		if err := r.Patch(ctx, run, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
	}
	orig := run.DeepCopy()
	defer func() {
		if err := r.patchStatus(ctx, orig, run, retErr); err != nil {
			retErr = kerrors.NewAggregate([]error{retErr, err})
		}
		if retErr != nil {
			result = ctrl.Result{}
		}
	}()
	if finished(run) {
		return ctrl.Result{}, nil
	}
	for _, phase := range []func(context.Context, *labsv1.LabRun) error{
		r.reconcilePlan, r.reconcilePreflight, r.reconcileSteps, r.reconcileFinish,
	} {
		if err := phase(ctx, run); err != nil {
			return r.outcome(ctx, run, err)
		}
	}
	return ctrl.Result{}, nil
}

// outcome turns a phase's error into the requeue decision: waiting → requeue at its deadline (watched events
// usually come first); stalled → the run fails, no retry; anything else → retried with backoff.
func (r *LabRunReconciler) outcome(ctx context.Context, run *labsv1.LabRun, err error) (ctrl.Result, error) {
	var w *waitingError
	if errors.As(err, &w) {
		return ctrl.Result{RequeueAfter: w.after}, nil
	}
	var s *stalledError
	if errors.As(err, &s) {
		r.fail(ctx, run, s.reason, s.Error())
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, err
}

// patchStatus writes the status once per pass, only if it changed. The optimistic lock makes a pass that read a
// stale LabRun fail and retry rather than overwrite newer progress.
func (r *LabRunReconciler) patchStatus(ctx context.Context, orig, run *labsv1.LabRun, passErr error) error {
	if passErr == nil {
		run.Status.ObservedGeneration = run.Generation
	}
	setConditions(run, r.now())
	run.Status.Summary = summarize(run.Status.Steps)
	if equality.Semantic.DeepEqual(orig.Status, run.Status) {
		return nil
	}
	err := r.Status().Patch(ctx, run, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
	if err != nil {
		return fmt.Errorf("patching status: %w", err)
	}
	return nil
}

// reconcileDelete cleans up what the run created, then lets the LabRun go.
func (r *LabRunReconciler) reconcileDelete(ctx context.Context, run *labsv1.LabRun) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(run, labsv1.Finalizer) {
		return ctrl.Result{}, nil
	}
	if err := r.cleanup(ctx, run); err != nil {
		return ctrl.Result{}, err
	}
	patch := client.MergeFrom(run.DeepCopy())
	controllerutil.RemoveFinalizer(run, labsv1.Finalizer)
	return ctrl.Result{}, client.IgnoreNotFound(r.Patch(ctx, run, patch))
}

func (r *LabRunReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// SetupWithManager watches LabRuns and their probe pods. Probe pods may live in another namespace than their
// LabRun, so they point back to it with an annotation rather than an owner reference.
func (r *LabRunReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.PodStartGrace == 0 {
		r.PodStartGrace = 2 * time.Minute
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&labsv1.LabRun{}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(ownerOf),
			builder.WithPredicates(predicate.NewPredicateFuncs(isProbePod))).
		Named("labrun").
		Complete(r)
}
