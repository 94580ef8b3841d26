// Package meshguard holds what puts the mesh back when no run can: the takeover a new leader makes before
// anything else, and the watchdog that restores the changes of a run that is gone or overdue. Both work from the
// trusted records alone (internal/mesh).
package meshguard

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// Watchdog restores what a run changed when that run can no longer do it: its LabRun is gone (for instance
// force-deleted with its finalizer removed by hand) or its restore deadline passed. It works from the trusted
// records alone (ConfigMaps in the operator's namespace that only the manager's ServiceAccount writes): labels and
// annotations on policy objects and a LabRun's status are never instructions to it.
type Watchdog struct {
	client.Client
	APIReader client.Reader
	Records   mesh.Store
	// Grace is how long past the restore-by deadline the owning run gets before the watchdog steps in.
	Grace time.Duration
	Now   func() time.Time
	// Takeover, when set, is waited for first: a new leader restores what a previous one left changed before
	// anything else.
	Takeover *Takeover
}

// Reconcile handles one trusted record.
func (w *Watchdog) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if err := w.Takeover.Wait(ctx); err != nil {
		return ctrl.Result{}, err
	}
	uid, ok := mesh.RecordUID(req.Name)
	if !ok || req.Namespace != w.Records.Namespace {
		return ctrl.Result{}, nil
	}
	rec, err := w.Records.Get(ctx, uid)
	if err != nil || rec == nil {
		return ctrl.Result{}, err
	}
	ownerGone, err := w.ownerGone(ctx, rec.Run)
	if err != nil {
		return ctrl.Result{}, err
	}
	overdue, left := rec.Overdue(w.now(), w.Grace)
	if !ownerGone && !overdue {
		if left > 0 {
			return ctrl.Result{RequeueAfter: left}, nil
		}
		return ctrl.Result{}, nil
	}
	log := ctrl.LoggerFrom(ctx).WithValues("run", rec.Run.String(), "ownerGone", ownerGone, "overdue", overdue)
	if err := mesh.RestorePending(ctrl.LoggerInto(ctx, log), w.Client, w.APIReader, w.Records, rec); err != nil {
		return ctrl.Result{}, err
	}
	if !ownerGone {
		return ctrl.Result{}, nil // the run finishes itself, and deletes its record
	}
	if err := mesh.Sweep(ctx, w.Client, w.APIReader, rec, nil); err != nil {
		return ctrl.Result{}, err
	}
	// Its mesh lock ticket goes with it: what it held is restored, and deleting the ticket wakes the runs queued
	// behind it.
	ticket := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: w.Records.Namespace, Name: mesh.TicketName(rec.Run.UID)}}
	if err := w.Client.Delete(ctx, ticket); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("giving back the mesh lock of %s: %w", rec.Run, err)
	}
	log.Info("Removing the record of a run that is gone")
	return ctrl.Result{}, w.Records.Delete(ctx, rec)
}

// ownerGone: the run named by the record no longer exists with the record's UID.
func (w *Watchdog) ownerGone(ctx context.Context, ref mesh.RunRef) (bool, error) {
	run := &labsv1.LabRun{}
	if err := w.APIReader.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, run); err != nil {
		return client.IgnoreNotFound(err) == nil, client.IgnoreNotFound(err)
	}
	return string(run.UID) != ref.UID, nil
}

func (w *Watchdog) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

// SetupWithManager watches the trusted records and LabRun deletions, which is when an owner disappears.
func (w *Watchdog) SetupWithManager(mgr ctrl.Manager) error {
	inStore := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == w.Records.Namespace && o.GetLabels()[mesh.LabelRecord] == "true"
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("watchdog").
		For(&corev1.ConfigMap{}, builder.WithPredicates(inStore)).
		Watches(&labsv1.LabRun{}, w.onRunDeleted()).
		Complete(w)
}

// onRunDeleted maps a deleted LabRun to its record's name; the record, not the event, says what to do.
func (w *Watchdog) onRunDeleted() handler.Funcs {
	return handler.Funcs{DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: w.Records.Namespace,
			Name: mesh.RecordName(string(e.Object.GetUID()))}})
	}}
}
