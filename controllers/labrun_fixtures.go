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
func attackerServiceAccount(uid string) string { return "labrun-attacker-" + hash(uid) }

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

func (r *LabRunReconciler) createFixture(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step) error {
	obj := fixture(run, step.Fixture)
	err := r.Create(ctx, obj)
	if apierrors.IsAlreadyExists(err) {
		// Created by an earlier pass of this run (the names are the run's own).
		err = nil
	}
	if err != nil {
		r.finishStep(run, st, labsv1.VerdictError, "", fmt.Sprintf("creating %s: %v", r.fixtureName(run, step.Fixture), err))
		return nil
	}
	r.finishStep(run, st, labsv1.VerdictPass, r.fixtureName(run, step.Fixture)+" created", "Created")
	return nil
}

func (r *LabRunReconciler) removeFixture(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step) error {
	if err := r.deleteOwned(ctx, run, fixture(run, step.Fixture)); err != nil {
		r.finishStep(run, st, labsv1.VerdictError, "", err.Error())
		return nil
	}
	r.finishStep(run, st, labsv1.VerdictPass, r.fixtureName(run, step.Fixture)+" removed", "Removed")
	return nil
}

// deleteOwned deletes obj if it carries the run's label; NotFound counts as done.
func (r *LabRunReconciler) deleteOwned(ctx context.Context, run *labsv1.LabRun, obj client.Object) error {
	return deleteLabelled(ctx, r.Client, r.APIReader, string(run.UID), obj)
}

// deleteLabelled deletes obj, named by the operator, only if it carries the run's label: an object of the same
// name that the run did not create is left alone.
func deleteLabelled(ctx context.Context, c client.Client, reader client.Reader, uid string, obj client.Object) error {
	if err := reader.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	if obj.GetLabels()[labsv1.LabelLabRun] != uid {
		return nil
	}
	if err := c.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting %T %s: %w", obj, klog.KObj(obj), err)
	}
	return nil
}

// sweep deletes what a run created, by the names its trusted record gives: its probe pods, its attacker
// ServiceAccount and its non-mesh namespace. Labels alone never choose what to delete.
func sweep(ctx context.Context, c client.Client, reader client.Reader, rec *mesh.Record) error {
	uid := rec.Run.UID
	for _, ns := range []string{rec.TargetNamespace, rec.NonMeshNamespace} {
		if ns == "" {
			continue
		}
		pods := &corev1.PodList{}
		if err := c.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{labsv1.LabelLabRun: uid, labsv1.LabelProbe: "true"}); err != nil {
			return fmt.Errorf("listing probe pods: %w", err)
		}
		for i := range pods.Items {
			if err := c.Delete(ctx, &pods.Items[i]); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("deleting probe pod %s: %w", klog.KObj(&pods.Items[i]), err)
			}
		}
	}
	objs := []client.Object{&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: rec.TargetNamespace, Name: attackerServiceAccount(uid)}}}
	if rec.NonMeshNamespace != "" {
		objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: rec.NonMeshNamespace}})
	}
	for _, obj := range objs {
		if err := deleteLabelled(ctx, c, reader, uid, obj); err != nil {
			return err
		}
	}
	return nil
}

// cleanup removes what the run created (probe pods, fixtures), its hold on the mesh lock and, once nothing is
// left to restore, its trusted record. Idempotent.
func (r *LabRunReconciler) cleanup(ctx context.Context, run *labsv1.LabRun) error {
	rec, err := r.recordOrNew(ctx, run)
	if err != nil {
		return err
	}
	if err := sweep(ctx, r.Client, r.APIReader, rec); err != nil {
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
