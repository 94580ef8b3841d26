package controllers

// What a run aims at: the target Service, its pods and identity, and the URL probes call.

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// targetServiceAccount is the identity of the target's pods (the Service's selector picks them).
func (r *LabRunReconciler) targetServiceAccount(ctx context.Context, run *labsv1.LabRun) (string, error) {
	_, pods, err := r.targetPods(ctx, run)
	if err != nil {
		return "", err
	}
	if pods[0].Spec.ServiceAccountName == "" {
		return "default", nil
	}
	return pods[0].Spec.ServiceAccountName, nil
}

// targetPods reads the target Service and the pods it selects (never the run's own probe pods).
func (r *LabRunReconciler) targetPods(ctx context.Context, run *labsv1.LabRun) (*corev1.Service, []corev1.Pod, error) {
	svc := &corev1.Service{}
	key := types.NamespacedName{Namespace: run.TargetNamespace(), Name: run.Spec.Target.Service}
	if err := r.APIReader.Get(ctx, key, svc); err != nil {
		return nil, nil, fmt.Errorf("reading target Service: %w", err)
	}
	if len(svc.Spec.Selector) == 0 {
		return nil, nil, fmt.Errorf("Service %s selects no pods (no selector)", key)
	}
	pods, err := r.appPods(ctx, client.InNamespace(key.Namespace), client.MatchingLabels(svc.Spec.Selector))
	if err != nil {
		return nil, nil, fmt.Errorf("listing target pods: %w", err)
	}
	if len(pods) == 0 {
		return nil, nil, fmt.Errorf("no pods back Service %s", key)
	}
	return svc, pods, nil
}

// targetURL is the in-cluster URL of the target, as the guide's curl calls it.
func targetURL(run *labsv1.LabRun) string {
	t := run.Spec.Target
	return fmt.Sprintf("http://%s.%s.svc:%d%s", t.Service, run.TargetNamespace(), t.Port, t.Path)
}
