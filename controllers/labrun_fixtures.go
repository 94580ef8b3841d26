package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// attackerServiceAccount is the attacker identity (the lab guide's "attacker") of a keeper: unique per run, or per
// schedule for its warm observers. Runs in one namespace may overlap outside their windows, and one run's cleanup
// must never delete the identity another run's observer still calls as.
func attackerServiceAccount(k keeper) string { return mesh.AttackerServiceAccount(k.uid) }

// nonMeshNamespace is the keeper's namespace outside the mesh (the guide's non-mesh): unique per run, or per
// schedule.
func nonMeshNamespace(k keeper) string { return mesh.NonMeshNamespace(k.uid) }

func (r *LabRunReconciler) fixtureName(run *labsv1.LabRun, f labs.Fixture) string {
	k := r.keeper(run)
	if f == labs.FixtureNonMeshNamespace {
		return "Namespace " + nonMeshNamespace(k) + " (not enrolled in ambient)"
	}
	return "ServiceAccount " + run.TargetNamespace() + "/" + attackerServiceAccount(k)
}

// fixture builds the object; both carry the keeper's label (the run's, or the schedule's with LabelWarm) so
// cleanup (and the watchdog) find them.
func fixture(run *labsv1.LabRun, k keeper, f labs.Fixture) client.Object {
	meta := metav1.ObjectMeta{Labels: map[string]string{labsv1.LabelLabRun: k.uid}, Annotations: ownerAnnotation(run)}
	if k.warm() {
		meta.Labels[labsv1.LabelWarm] = k.uid
		meta.Annotations = map[string]string{labsv1.AnnotationOwner: k.schedule.String()}
	}
	if f == labs.FixtureNonMeshNamespace {
		meta.Name = nonMeshNamespace(k)
		// Probe pods are the only pods meant to run there, and they meet the restricted Pod Security profile.
		for _, mode := range []string{"enforce", "audit", "warn"} {
			meta.Labels["pod-security.kubernetes.io/"+mode] = "restricted"
		}
		return &corev1.Namespace{ObjectMeta: meta}
	}
	meta.Namespace, meta.Name = run.TargetNamespace(), attackerServiceAccount(k)
	return &corev1.ServiceAccount{ObjectMeta: meta}
}

// createFixture creates the fixture f, labelled with its keeper, and names it. One an earlier pass of this run
// (or, warm, an earlier run of the schedule) created is kept (the names are the keeper's own).
func (r *LabRunReconciler) createFixture(ctx context.Context, run *labsv1.LabRun, f labs.Fixture) (string, error) {
	obj := fixture(run, r.keeper(run), f)
	if r.keeper(run).warm() {
		// A schedule's fixture is there from its earlier runs: read, not written again.
		err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(obj), obj.DeepCopyObject().(client.Object))
		if err == nil {
			return r.fixtureName(run, f), nil
		}
		if !apierrors.IsNotFound(err) {
			return r.fixtureName(run, f), err
		}
	}
	err := r.Create(ctx, obj)
	if apierrors.IsAlreadyExists(err) {
		err = nil
	}
	return r.fixtureName(run, f), err
}

// removeFixture removes the fixture f, only when it carries the run's label, and says so. A schedule's warm
// fixture stays for its next run.
func (r *LabRunReconciler) removeFixture(ctx context.Context, run *labsv1.LabRun, f labs.Fixture) (string, bool, error) {
	if k := r.keeper(run); k.warm() {
		return r.fixtureName(run, f) + " kept for LabSchedule " + k.schedule.String() + "'s next run", true, nil
	}
	return r.fixtureName(run, f) + " removed", false, r.deleteOwned(ctx, run, fixture(run, coldKeeper(run), f))
}

// deleteOwned deletes obj if it carries the run's label; NotFound counts as done.
func (r *LabRunReconciler) deleteOwned(ctx context.Context, run *labsv1.LabRun, obj client.Object) error {
	return mesh.DeleteLabelled(ctx, r.Client, r.APIReader, string(run.UID), obj)
}

// cleanup removes what the run created (probe pods, fixtures), its hold on the mesh lock and, once nothing is
// left to restore, its trusted record. Idempotent.
func (r *LabRunReconciler) cleanup(ctx context.Context, run *labsv1.LabRun) error {
	r.audits.Delete(run.UID)
	r.once.Range(func(k, _ any) bool {
		if strings.HasPrefix(k.(string), string(run.UID)+"/") {
			r.once.Delete(k)
		}
		return true
	})
	rec, err := r.recordOrNew(ctx, run)
	if err != nil {
		return err
	}
	if err := mesh.Sweep(ctx, r.Client, r.APIReader, rec, r.retiredPod(run)); err != nil {
		return err
	}
	if err := r.releaseWarm(ctx, run, rec); err != nil {
		return err
	}
	if asksForLock(run) {
		if err := r.lock().Release(ctx, holderOf(run)); err != nil {
			return err
		}
	}
	if len(rec.Pending()) > 0 {
		return fmt.Errorf("the trusted record of %s still holds %d changed objects", klog.KObj(run), len(rec.Pending()))
	}
	return r.Records.Delete(ctx, rec)
}

// asksForLock: the run's plan has a step that asks for the mesh lock (a lab that changes the mesh), so the run may
// hold a ticket. A plan that cannot be read may too. A Verify run never asks: its end deletes no ticket.
func asksForLock(run *labsv1.LabRun) bool {
	plan, err := planOf(run)
	if err != nil {
		return true
	}
	for i := range plan {
		if needsLock(plan, i) {
			return true
		}
	}
	return false
}
