package sandbox

import (
	"context"
	"slices"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// namespaceFinalizer plays the part of kube-controller-manager's namespace controller, which the sandbox does
// not run: a deleted namespace loses its pods and ServiceAccounts, then its "kubernetes" finalizer, and goes.
type namespaceFinalizer struct {
	client.Client
}

func (f *namespaceFinalizer) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ns := &corev1.Namespace{}
	if err := f.Get(ctx, req.NamespacedName, ns); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if ns.DeletionTimestamp.IsZero() || !slices.Contains(ns.Spec.Finalizers, corev1.FinalizerKubernetes) {
		return ctrl.Result{}, nil
	}
	for _, obj := range []client.Object{&corev1.Pod{}, &corev1.ServiceAccount{}} {
		if err := f.DeleteAllOf(ctx, obj, client.InNamespace(ns.Name), client.GracePeriodSeconds(0)); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, err
		}
	}
	ns.Spec.Finalizers = slices.DeleteFunc(ns.Spec.Finalizers, func(f corev1.FinalizerName) bool {
		return f == corev1.FinalizerKubernetes
	})
	return ctrl.Result{}, client.IgnoreNotFound(f.SubResource("finalize").Update(ctx, ns))
}
