package mesh

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// AttackerServiceAccount is the name of a run's attacker ServiceAccount, in its target namespace: an identity no
// AuthorizationPolicy allows.
func AttackerServiceAccount(uid string) string {
	sum := sha256.Sum256([]byte(uid))
	return "labrun-attacker-" + hex.EncodeToString(sum[:])[:10]
}

// Sweep deletes what a run created, by the names its trusted record gives: its probe pods, its attacker
// ServiceAccount and its non-mesh namespace. Labels alone never choose what to delete. Deleted (may be nil) tells
// which pods the caller has deleted already, which a cache may still list.
func Sweep(ctx context.Context, c client.Client, reader client.Reader, rec *Record, deleted func(*corev1.Pod) bool) error {
	uid := rec.Run.UID
	for _, ns := range []string{rec.TargetNamespace, rec.NonMeshNamespace} {
		if ns == "" {
			continue
		}
		pods := &corev1.PodList{}
		if err := c.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{labsv1.LabelLabRun: uid, labsv1.LabelProbe: "true"}); err != nil {
			return fmt.Errorf("listing probe pods: %w", err)
		}
		if err := DeletePods(ctx, c, pods.Items, deleted); err != nil {
			return err
		}
	}
	objs := []client.Object{&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: rec.TargetNamespace, Name: AttackerServiceAccount(uid)}}}
	if rec.NonMeshNamespace != "" {
		objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: rec.NonMeshNamespace}})
	}
	for _, obj := range objs {
		if err := DeleteLabelled(ctx, c, reader, uid, obj); err != nil {
			return err
		}
	}
	return nil
}

// DeleteLabelled deletes obj, named by the operator, only if it carries the run's label: an object of the same
// name that the run did not create is left alone.
func DeleteLabelled(ctx context.Context, c client.Client, reader client.Reader, uid string, obj client.Object) error {
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

// deleters bounds how many pods DeletePods deletes at once: a Verify run on a large cluster ends with one probe pod
// per node and caller, and one after another their deletes took longer than the run's steps.
const deleters = 16

// DeletePods deletes the pods, deleters at a time; one already being deleted, or that deleted (may be nil) says
// was, is left to finish (deleting it again would change nothing), and one already gone counts as deleted.
func DeletePods(ctx context.Context, c client.Client, pods []corev1.Pod, deleted func(*corev1.Pod) bool) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(deleters)
	for i := range pods {
		pod := &pods[i]
		if !pod.DeletionTimestamp.IsZero() || deleted != nil && deleted(pod) {
			continue
		}
		g.Go(func() error {
			if err := c.Delete(gctx, pod); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("deleting probe pod %s: %w", klog.KObj(pod), err)
			}
			return nil
		})
	}
	return g.Wait()
}
