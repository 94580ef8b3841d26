package labschedule

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// A schedule's Verify runs share warm observers (controllers/labrun_warm.go). Only the runs this controller
// created may use them, and it says which in the schedule's warm record, where only the manager writes: a run's
// ownerReference is the tenant's to write and proves nothing.

// warmRecheck is how soon the warm observers of a deleted schedule are looked at again while a run still holds
// them.
const warmRecheck = 5 * time.Second

func (r *Reconciler) warmStore() mesh.WarmStore {
	return mesh.WarmStore{Client: r.Client, Reader: r.Records.Reader, Namespace: r.Records.Namespace}
}

// listWarm lists a Verify run just created in the schedule's warm record.
func (r *Reconciler) listWarm(ctx context.Context, ls *labsv1.LabSchedule, run *labsv1.LabRun) error {
	if run.Spec.Mode != labsv1.ModeVerify {
		return nil
	}
	sched := mesh.RunRef{Namespace: ls.Namespace, Name: ls.Name, UID: string(ls.UID)}
	_, err := r.warmStore().Update(ctx, sched, func(w *mesh.Warm) (bool, error) {
		w.AddRun(string(run.UID))
		return true, nil
	})
	return err
}

// sweepWarm deletes what a deleted schedule kept (its warm observers, arms and fixtures), once no run of it
// holds them.
func (r *Reconciler) sweepWarm(ctx context.Context, name types.NamespacedName) (ctrl.Result, error) {
	all, err := r.warmStore().List(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	for _, w := range all {
		if w.Schedule.Namespace != name.Namespace || w.Schedule.Name != name.Name {
			continue
		}
		if held, err := r.sweepGone(ctx, w); err != nil || held {
			return ctrl.Result{RequeueAfter: warmRecheck}, err
		}
	}
	return ctrl.Result{}, nil
}

// sweepGone deletes what the warm record w names, unless a run still holds it (held).
func (r *Reconciler) sweepGone(ctx context.Context, w *mesh.Warm) (held bool, err error) {
	if w.ArmedBy != nil {
		run := &labsv1.LabRun{}
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: w.ArmedBy.Namespace, Name: w.ArmedBy.Name}, run)
		if client.IgnoreNotFound(err) != nil {
			return false, err
		}
		if err == nil && string(run.UID) == w.ArmedBy.UID && run.Status.CompletionTime == nil {
			return true, nil
		}
	}
	ctrl.LoggerFrom(ctx).Info("Removing the warm observers of a deleted schedule", "labSchedule", w.Schedule.String(),
		"pods", len(w.Pods), "arms", len(w.Arms))
	return false, r.warmStore().SweepWarm(ctx, w)
}

// sweepOrphans, when the manager starts (as leader), deletes what schedules deleted while no manager ran had kept:
// no event for them will come. A schedule of the same name created since is another schedule (another UID).
// It never fails the manager: what it cannot remove now, the next start will.
func (r *Reconciler) sweepOrphans(ctx context.Context) error {
	all, err := r.warmStore().List(ctx)
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing warm records")
		return nil
	}
	for _, w := range all {
		ls := &labsv1.LabSchedule{}
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: w.Schedule.Namespace, Name: w.Schedule.Name}, ls)
		if client.IgnoreNotFound(err) != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Reading a schedule with warm observers", "labSchedule", w.Schedule.String())
			continue
		}
		if err == nil && string(ls.UID) == w.Schedule.UID {
			continue
		}
		if _, err := r.sweepGone(ctx, w); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Removing the warm observers of a deleted schedule", "labSchedule", w.Schedule.String())
		}
	}
	return nil
}
