package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// attackerServiceAccount is the run's attacker identity (the lab guide's "attacker"), unique per run: runs in one
// namespace may now overlap outside their windows, and one run's cleanup must never delete the identity another
// run's observer still calls as.
func attackerServiceAccount(uid string) string { return mesh.AttackerServiceAccount(uid) }

// nonMeshNamespace is the run's namespace outside the mesh (the guide's non-mesh), unique per run.
func nonMeshNamespace(run *labsv1.LabRun) string {
	return "labrun-non-mesh-" + hash(string(run.UID))
}

func (r *LabRunReconciler) fixtureName(run *labsv1.LabRun, f labs.Fixture) string {
	if f == labs.FixtureNonMeshNamespace {
		return "Namespace " + nonMeshNamespace(run) + " (not enrolled in ambient)"
	}
	return "ServiceAccount " + run.TargetNamespace() + "/" + attackerServiceAccount(string(run.UID))
}

// fixture builds the object; both carry the run's label so cleanup (and the watchdog) find them.
func fixture(run *labsv1.LabRun, f labs.Fixture) client.Object {
	meta := metav1.ObjectMeta{Labels: map[string]string{labsv1.LabelLabRun: string(run.UID)},
		Annotations: ownerAnnotation(run)}
	if f == labs.FixtureNonMeshNamespace {
		meta.Name = nonMeshNamespace(run)
		// Probe pods are the only pods meant to run there, and they meet the restricted Pod Security profile.
		for _, mode := range []string{"enforce", "audit", "warn"} {
			meta.Labels["pod-security.kubernetes.io/"+mode] = "restricted"
		}
		return &corev1.Namespace{ObjectMeta: meta}
	}
	meta.Namespace, meta.Name = run.TargetNamespace(), attackerServiceAccount(string(run.UID))
	return &corev1.ServiceAccount{ObjectMeta: meta}
}

// createFixture creates the fixture f, labelled with the run, and names it. One an earlier pass of this run
// created is kept (the names are the run's own).
func (r *LabRunReconciler) createFixture(ctx context.Context, run *labsv1.LabRun, f labs.Fixture) (string, error) {
	err := r.Create(ctx, fixture(run, f))
	if apierrors.IsAlreadyExists(err) {
		err = nil
	}
	return r.fixtureName(run, f), err
}

// removeFixture removes the fixture f, only when it carries the run's label, and names it.
func (r *LabRunReconciler) removeFixture(ctx context.Context, run *labsv1.LabRun, f labs.Fixture) (string, error) {
	return r.fixtureName(run, f), r.deleteOwned(ctx, run, fixture(run, f))
}

// deleteOwned deletes obj if it carries the run's label; NotFound counts as done.
func (r *LabRunReconciler) deleteOwned(ctx context.Context, run *labsv1.LabRun, obj client.Object) error {
	return mesh.DeleteLabelled(ctx, r.Client, r.APIReader, string(run.UID), obj)
}

// cleanup removes what the run created (probe pods, fixtures), its hold on the mesh lock and, once nothing is
// left to restore, its trusted record. Idempotent.
func (r *LabRunReconciler) cleanup(ctx context.Context, run *labsv1.LabRun) error {
	rec, err := r.recordOrNew(ctx, run)
	if err != nil {
		return err
	}
	if err := mesh.Sweep(ctx, r.Client, r.APIReader, rec); err != nil {
		return err
	}
	if err := r.lock().Release(ctx, holderOf(run)); err != nil {
		return err
	}
	if len(rec.Pending()) > 0 {
		return fmt.Errorf("the trusted record of %s still holds %d changed objects", klog.KObj(run), len(rec.Pending()))
	}
	return r.Records.Delete(ctx, rec)
}
