// Package controllers holds the LabRun controller: its state machine (plan, admission, preflight, slots, lock,
// the step loop, restore, finish) and the services its step executors (controllers/steps) work through. The
// other kinds have their own packages: labschedule, policyreport, meshguard (the takeover and the watchdog).
package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// LogSource reads ztunnel access logs and observer pods' logs (through pods/log on a cluster). ReadScoped reads
// the ztunnel pods in scope (all, by default) and names those it read, for the reports.
type LogSource interface {
	ReadScoped(ctx context.Context, namespace string, selector map[string]string, since time.Time, scope ztunnel.Scope) ([]ztunnel.Entry, []ztunnel.Source, error)
	PodLog(ctx context.Context, namespace, name string, since time.Time) ([]byte, error)
}

// LabRunReconciler runs LabRuns: plan, preflight, mesh lock, each step, restore, cleanup.
type LabRunReconciler struct {
	client.Client
	// APIReader reads live from the API server: the LabRun itself (a stale status would repeat an action),
	// the mesh objects before a change, and objects the manager does not cache.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Logs      LogSource
	// Records is the trusted journal: what each run changed and how to put it back, kept where only the
	// manager's ServiceAccount can write. Restore acts on it alone, never on status or object marks. With a
	// Memo, a pass reads its run's record once and then as it writes it.
	Records mesh.Store
	// EnabledLabel, when set, is a namespace label (value "true") an administrator puts on each namespace runs
	// may touch; preflight refuses a run that would touch another, with nothing changed.
	EnabledLabel string
	// Mesh says where the mesh root namespace and ztunnel are (the manager's flags; empty: Istio's defaults).
	// Every read of ztunnel pods and logs and of the root namespace goes there, whatever a spec names.
	Mesh mesh.Config
	// Admission says whether the admission policies are installed as shipped and enforced; Lab runs wait until
	// they are (admission_guard.go). Nil: they are taken as not enforced.
	Admission AdmissionGate
	// ProbeImage runs `manager probe` when a LabRun names no image.
	ProbeImage string
	// MaxActiveRuns bounds the runs worked on at once (zero: no bound); the others wait Queued, holding nothing.
	MaxActiveRuns int
	// QueueLookahead is how many runs may stand ahead of a queued run for it to keep its observers running
	// (zero: 1, the next in line); runs further back hold no probe pod while they wait.
	QueueLookahead int
	// Workers is how many runs are reconciled at the same moment (zero: 4). One worker would put every run's
	// pass in one line: a run served the lock would wait behind every other run's pass before it opened its
	// window (bench-load, 30 runs at once: the lock stood idle a quarter of the time). The decisions runs share
	// are made one at a time all the same: the lock's serving (serveMu) and the active-run slots (slots.mu).
	Workers int
	// PodStartGrace is how long a probe pod may take to start before its step errors out.
	PodStartGrace time.Duration
	// EvidenceWait bounds how long an evidence step keeps re-reading logs for lines still being written.
	EvidenceWait time.Duration
	// Now is the clock; tests may replace it.
	Now func() time.Time
	// audits are the policy audits' plans, by run UID, worked out at most every auditPlanTTL while the step waits
	// (labrun_audit.go).
	audits sync.Map
	// keepers are, for the runs in a pass, whose per-node observers and fixtures they use (labrun_warm.go);
	// arms are what each run last wrote in its warm observers' arms.
	keepers, arms sync.Map
	// once holds what a run did that its later passes need not do again (run UID/what/key): the per-node
	// observers this manager deleted once no step needed them, by observer key and by pod UID (a later pass, and
	// the run's cleanup, do not delete them again while the cache still lists them; a restarted manager does,
	// finding them gone). The run's cleanup forgets them.
	once sync.Map
	// slots are the runs this reconciler let in that the cache does not show active yet (labrun_slots.go).
	slots slotBook
	// Fault, when set, is called at each mesh mutation point; an error aborts the pass there without writing
	// status, as if the manager died at that point (tests use it to prove restore after a crash).
	Fault func(point string) error
}

// The manager's rights, narrowed to what the code uses (config/rbac is generated from these markers). Where RBAC
// cannot say enough (which pods, namespaces, ServiceAccounts and Leases it may create or delete), the admission
// policy config/admission/manager_policy.yaml constrains the manager's own ServiceAccount. The mesh lock's Lease
// rights are those of its namespace's Role (config/rbac/leader_election_role.yaml).
// +kubebuilder:rbac:groups=labs.ambientlab.io,resources=labruns,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=labs.ambientlab.io,resources=labruns/status,verbs=get;patch
// +kubebuilder:rbac:groups=labs.ambientlab.io,resources=labruns/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=pods/log,verbs=get
// +kubebuilder:rbac:groups="",resources=services;nodes,verbs=get;list
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;create;delete
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;create;delete
// +kubebuilder:rbac:groups=security.istio.io,resources=authorizationpolicies,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=security.istio.io,resources=peerauthentications,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups=metrics.k8s.io,resources=pods,verbs=get;list
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",namespace=system,resources=configmaps,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=create;patch;delete

// Reconcile moves one LabRun forward: get → deferred status patch → deletion → finalizer → ordered phases.
func (r *LabRunReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	run := &labsv1.LabRun{}
	if err := r.APIReader.Get(ctx, req.NamespacedName, run); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if m := r.Records.Memo; m != nil {
		// The run's trusted record is read once a pass, then as the pass writes it (mesh.Memo).
		m.Begin(string(run.UID))
		defer m.End(string(run.UID))
	}
	done, err := r.loadKeeper(ctx, run)
	if err != nil {
		return ctrl.Result{}, err
	}
	defer done()
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
	// A checkpoint writes the status so far in the middle of a pass: what a change depends on is on record
	// before the change, without waiting for a pass of its own.
	// The patch goes through a copy: decoding the answer into run would replace the slices the pass holds
	// pointers into.
	checkpoint := func() error {
		written := run.DeepCopy()
		if err := r.patchStatus(ctx, orig, written, nil); err != nil {
			return err
		}
		run.ResourceVersion, orig = written.ResourceVersion, written
		return nil
	}
	defer func() {
		if errors.Is(retErr, steps.ErrAborted) {
			return
		}
		if err := r.patchStatus(ctx, orig, run, retErr); err != nil {
			retErr = kerrors.NewAggregate([]error{retErr, err})
		}
		if retErr != nil {
			result = ctrl.Result{}
		}
	}()
	if finished(run) {
		return ctrl.Result{}, r.reconcileFinished(ctx, run)
	}
	for _, phase := range []func(context.Context, *labsv1.LabRun) error{
		r.reconcilePlan, r.reconcileAdmission, r.reconcilePreflight, r.reconcileInterrupted, r.reconcileSlot, r.reconcileLock,
		func(ctx context.Context, run *labsv1.LabRun) error { return r.reconcileSteps(ctx, run, checkpoint) },
		r.reconcileRestore, r.reconcileFinish,
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
	var w *steps.Waiting
	if errors.As(err, &w) {
		return ctrl.Result{RequeueAfter: w.After}, nil
	}
	var s *stalledError
	if errors.As(err, &s) {
		r.fail(ctx, run, s.reason, s.Error())
		return ctrl.Result{}, nil
	}
	if refusedForGood(err) {
		return r.endForGood(ctx, run, err)
	}
	return ctrl.Result{}, err
}

// reconcileFinished checks that a finished run really is: its trusted record is gone (cleanup deletes it before
// the run ends) and every step has a verdict. Otherwise someone other than the operator wrote the status (the
// status-writes admission policy is off): what the run changed is restored at once, not after the watchdog's
// grace, and the run fails saying so.
func (r *LabRunReconciler) reconcileFinished(ctx context.Context, run *labsv1.LabRun) error {
	rec, err := r.Records.Get(ctx, string(run.UID))
	if err != nil {
		return err
	}
	pending := false
	for _, st := range run.Status.Steps {
		pending = pending || !terminal(st.Verdict)
	}
	if rec == nil && !pending {
		return nil
	}
	ctrl.LoggerFrom(ctx).Info("Status says finished but the run is not: restoring", "phase", run.Status.Phase)
	if err := r.restoreAll(ctx, run); err != nil {
		return err
	}
	if err := r.cleanup(ctx, run); err != nil {
		return err
	}
	r.setRestoredCondition(run)
	run.Status.CompletionTime = nil
	r.fail(ctx, run, labsv1.ReasonStatusTampered,
		"The run's status was changed by someone other than the operator; what the run changed is restored")
	return nil
}

// endForGood ends a run the API server refused for good. Before the lock nothing was changed: the run fails at
// once. Once steps run, the current step errors with the server's message and the run goes to restore, which
// releases the lock. Restore itself is never given up: its errors are retried.
func (r *LabRunReconciler) endForGood(ctx context.Context, run *labsv1.LabRun, err error) (ctrl.Result, error) {
	msg := "refused by the API server: " + err.Error()
	switch run.Status.Phase {
	case "", labsv1.PhasePending:
		r.fail(ctx, run, labsv1.ReasonPreflightFailed, msg)
		return ctrl.Result{}, nil
	case labsv1.PhaseQueued, labsv1.PhaseRunning:
		r.abortRun(run, msg)
		return ctrl.Result{RequeueAfter: time.Millisecond}, nil
	}
	return ctrl.Result{}, err
}

// abortRun ends a Queued or Running run: the step it was in errors with msg, the rest is skipped, and the run
// goes to restore.
func (r *LabRunReconciler) abortRun(run *labsv1.LabRun, msg string) {
	for i := range run.Status.Steps {
		if st := &run.Status.Steps[i]; !terminal(st.Verdict) {
			r.markStarted(st)
			r.finishStep(run, st, labsv1.VerdictError, "", msg)
			break
		}
	}
	skipRemaining(run, "Not run: "+msg)
	run.Status.Phase, run.Status.Reason = labsv1.PhaseRestoring, labsv1.ReasonRestoring
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

// reconcileDelete puts the mesh back and cleans up before the LabRun may go.
func (r *LabRunReconciler) reconcileDelete(ctx context.Context, run *labsv1.LabRun) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(run, labsv1.Finalizer) {
		return ctrl.Result{}, nil
	}
	if err := r.restoreAll(ctx, run); err != nil {
		return ctrl.Result{}, err
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

// fault calls the fault-injection hook at a mutation point.
func (r *LabRunReconciler) fault(point string) error {
	if r.Fault == nil {
		return nil
	}
	if err := r.Fault(point); err != nil {
		return fmt.Errorf("%w at %s: %v", steps.ErrAborted, point, err)
	}
	return nil
}

// SetupWithManager watches LabRuns, their probe pods, the mesh lock and the mesh objects runs change. Probe pods
// and changed objects may live in other namespaces than their LabRun, so they point back to it with an
// annotation rather than an owner reference.
func (r *LabRunReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.PodStartGrace == 0 {
		r.PodStartGrace = 2 * time.Minute
	}
	if r.EvidenceWait == 0 {
		r.EvidenceWait = 15 * time.Second
	}
	owned := builder.WithPredicates(predicate.NewPredicateFuncs(hasOwner))
	return ctrl.NewControllerManagedBy(mgr).
		For(&labsv1.LabRun{}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(ownerOf), owned).
		Watches(&securityv1.PeerAuthentication{}, handler.EnqueueRequestsFromMapFunc(ownerOf), owned).
		Watches(&securityv1.AuthorizationPolicy{}, handler.EnqueueRequestsFromMapFunc(ownerOf), owned).
		Watches(&coordinationv1.Lease{}, handler.EnqueueRequestsFromMapFunc(r.queuedRuns),
			builder.WithPredicates(predicate.NewPredicateFuncs(isLockTicket))).
		Watches(&labsv1.LabRun{}, handler.EnqueueRequestsFromMapFunc(r.slotWaiters), builder.WithPredicates(runEnded)).
		WatchesRawSource(r.admissionSource()).
		WithOptions(controller.Options{MaxConcurrentReconciles: cmp.Or(r.Workers, 4)}).
		Named("labrun").
		Complete(r)
}

func hasOwner(obj client.Object) bool { return obj.GetAnnotations()[labsv1.AnnotationOwner] != "" }

// runsWhere are the requests of the cached LabRuns that match: whom an event wakes.
func (r *LabRunReconciler) runsWhere(ctx context.Context, what string, match func(*labsv1.LabRun) bool) []reconcile.Request {
	runs := &labsv1.LabRunList{}
	// Read only: the cache's own objects, not a copy of every run's status per event.
	if err := r.List(ctx, runs, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing LabRuns "+what)
		return nil
	}
	var reqs []reconcile.Request
	for i := range runs.Items {
		if match(&runs.Items[i]) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&runs.Items[i])})
		}
	}
	return reqs
}
