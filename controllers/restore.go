package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// Restore, in one place: what puts the mesh back.
//   - steps.restoreExecutor (controllers/steps/restore.go) is a plan's restore step: its kinds, then the window
//     closes;
//   - restoreAll puts back everything a run's record still holds changed, and makes sure the temporary objects it
//     created are gone (every path that ends a run); reconcileRestore is the phase that runs it, then cleans up;
//   - restoreEntry and markRestored restore one object and record that it is back, read back;
//   - underneath all of them is mesh.Restore (internal/mesh/restore.go), where mesh.RestorePending is the mesh
//     guard's restore (controllers/meshguard: the watchdog and the takeover), from the trusted record alone.

// restoreEntry restores one object from the trusted record, reads it back and records that it is back.
func (r *LabRunReconciler) restoreEntry(ctx context.Context, run *labsv1.LabRun, rec *mesh.Record, e *labsv1.JournalEntry) error {
	if err := mesh.Restore(ctx, r.Client, *e); err != nil {
		return err
	}
	return r.markRestored(ctx, run, rec, e)
}

// markRestored reads a restored object back and records in the trusted record that it is back.
func (r *LabRunReconciler) markRestored(ctx context.Context, run *labsv1.LabRun, rec *mesh.Record, e *labsv1.JournalEntry) error {
	if err := r.fault("after-restore:" + mesh.RefOf(*e).String()); err != nil {
		return err
	}
	if err := mesh.Verify(ctx, r.APIReader, *e); err != nil {
		return err
	}
	e.Restored, e.Change = true, ""
	if err := r.Records.Save(ctx, rec); err != nil {
		return err
	}
	r.event(run, corev1.EventTypeNormal, "MeshRestored", "Restore "+mesh.RefOf(*e).String()+" "+e.RecordedAt.UTC().Format(time.RFC3339),
		"%s restored", mesh.RefOf(*e))
	return nil
}

// restoreAll restores everything the run's trusted record still holds changed.
func (r *LabRunReconciler) restoreAll(ctx context.Context, run *labsv1.LabRun) error {
	rec, err := r.Records.Get(ctx, string(run.UID))
	if err != nil {
		return err
	}
	if rec == nil {
		r.closeExposure(run)
		return nil
	}
	defer mesh.Mirror(run, rec) // on failure too: status shows what is back
	for _, e := range rec.Pending() {
		if err := r.restoreEntry(ctx, run, rec, e); err != nil {
			setMeshRestored(run, metav1.ConditionFalse, labsv1.ReasonRestoreFailed, err.Error(), r.now())
			return fmt.Errorf("restoring %s: %w", mesh.RefOf(*e), err)
		}
	}
	// Whoever marked them restored (this run, or the watchdog), the temporary objects the run created must be
	// gone now, not merely deleted: MeshRestored never says so while one is still in force.
	for _, e := range rec.Entries {
		if !e.Created {
			continue
		}
		if err := mesh.Restore(ctx, r.Client, e); err != nil {
			return err
		}
		if err := mesh.Verify(ctx, r.APIReader, e); err != nil {
			setMeshRestored(run, metav1.ConditionFalse, labsv1.ReasonRestoreFailed, err.Error(), r.now())
			return fmt.Errorf("restoring %s: %w", mesh.RefOf(e), err)
		}
	}
	mesh.Mirror(run, rec)
	r.closeExposure(run)
	return nil
}

// reconcileRestore runs after the steps, on every path: restore, read back, clean up, release the lock.
func (r *LabRunReconciler) reconcileRestore(ctx context.Context, run *labsv1.LabRun) error {
	if run.Status.Phase != labsv1.PhaseRestoring {
		return nil
	}
	if err := r.restoreAll(ctx, run); err != nil {
		return err
	}
	if run.Spec.DryRun {
		return nil
	}
	if err := r.cleanup(ctx, run); err != nil {
		return err
	}
	r.setRestoredCondition(run)
	return nil
}
