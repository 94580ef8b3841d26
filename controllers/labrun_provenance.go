package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/probe"
)

// An observer's log is the record of what a caller saw, so the pod that writes it must be the one the run
// created: its UID is in the run's trusted record (written right after the API server accepted the pod), its
// spec is the one the operator wrote (probe.Digest), and its container is the one first seen running, never
// restarted. A name, or a label value, proves nothing: a tenant may delete the observer and create her own under
// its name, or swap a pod's image, wherever admission does not stop her.

// trustedRecord is the run's trusted record, saved first if it is new: observers are recorded in it as they are
// created.
func (r *LabRunReconciler) trustedRecord(ctx context.Context, run *labsv1.LabRun) (*mesh.Record, error) {
	rec, err := r.recordOrNew(ctx, run)
	if err != nil || rec.Stored() {
		return rec, err
	}
	if err := r.Records.Save(ctx, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// trustObserver returns pod when it is the run's own observer, unchanged. An observer an earlier pass created
// but could not record is not proven: it is deleted (nil, "", nil: the caller creates it again once it is gone).
// Anything else is tampering: the reason names it.
func (r *LabRunReconciler) trustObserver(ctx context.Context, rec *mesh.Record, pod *corev1.Pod) (*corev1.Pod, string, error) {
	pr := rec.Pod(pod.Namespace, pod.Name)
	if pr == nil && pod.Labels[labsv1.LabelProbe] == "true" && pod.Labels[labsv1.LabelLabRun] == rec.Run.UID {
		if !pod.DeletionTimestamp.IsZero() {
			return nil, "", nil // being replaced
		}
		ctrl.LoggerFrom(ctx).Info("Replacing an observer the run did not record", "pod", klog.KObj(pod))
		uid := pod.UID
		if err := r.Delete(ctx, pod, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
			return nil, "", fmt.Errorf("deleting unrecorded observer pod %s: %w", klog.KObj(pod), err)
		}
		return nil, "", nil
	}
	if pr == nil {
		return nil, fmt.Sprintf("%spod %s has the name of this run's observer, but the run did not create it",
			steps.TamperPrefix, klog.KObj(pod)), nil
	}
	if pr.UID != string(pod.UID) {
		return nil, fmt.Sprintf("%spod %s is not the observer the run created (uid %s): it was deleted and created "+
			"again by someone else (uid %s)", steps.TamperPrefix, klog.KObj(pod), pr.UID, pod.UID), nil
	}
	if why := probe.Tampering(pod, pr.Digest, pr.ContainerID); why != "" {
		return nil, fmt.Sprintf("%spod %s: %s", steps.TamperPrefix, klog.KObj(pod), why), nil
	}
	if id := probe.ContainerID(pod); pr.ContainerID == "" && id != "" {
		pr.ContainerID = id
		if err := r.Records.Save(ctx, rec); err != nil {
			return nil, "", err
		}
	}
	return pod, "", nil
}

// createObserver creates pod and records it, as the API server accepted it, in the run's trusted record.
func (r *LabRunReconciler) createObserver(ctx context.Context, rec *mesh.Record, pod *corev1.Pod) error {
	if err := r.Create(ctx, pod); err != nil {
		return err
	}
	rec.PutPod(mesh.PodRecord{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID), Digest: probe.Digest(pod)})
	return r.Records.Save(ctx, rec)
}

// replaceObserver deletes an observer that ended, forgetting it first: the pod that replaces it is recorded anew.
func (r *LabRunReconciler) replaceObserver(ctx context.Context, rec *mesh.Record, pod *corev1.Pod) error {
	if rec.ForgetPod(pod.Namespace, pod.Name) {
		if err := r.Records.Save(ctx, rec); err != nil {
			return err
		}
	}
	if err := r.Delete(ctx, pod); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting observer pod: %w", err)
	}
	return nil
}

// ownPods leaves out of pods those the run created (by UID in its trusted record), never a pod for a label.
func ownPods(rec *mesh.Record, pods []corev1.Pod) []corev1.Pod {
	if rec == nil {
		return pods
	}
	out := pods[:0:0]
	for _, p := range pods {
		if !rec.OwnsPod(string(p.UID)) {
			out = append(out, p)
		}
	}
	return out
}
