package mesh

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

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
// ServiceAccount and its non-mesh namespace. Labels alone never choose what to delete.
func Sweep(ctx context.Context, c client.Client, reader client.Reader, rec *Record) error {
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
