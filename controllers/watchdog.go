package controllers

import (
	"context"
	"strings"
	"time"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// Watchdog restores mesh objects a run changed when that run can no longer do it: its LabRun is gone (for
// instance force-deleted with its finalizer removed by hand) or the object's restore deadline passed. The
// object itself carries its original, so the LabRun's status is not needed.
type Watchdog struct {
	client.Client
	APIReader client.Reader
	Kind      string
	// Grace is how long past the restore-by deadline the owning run gets before the watchdog steps in.
	Grace time.Duration
	Now   func() time.Time
}

// Reconcile restores one changed object if its owner cannot.
func (w *Watchdog) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(mesh.GVK(w.Kind))
	if err := w.APIReader.Get(ctx, req.NamespacedName, u); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	uid, changed := u.GetLabels()[mesh.LabelChangedBy]
	if !changed {
		return ctrl.Result{}, nil
	}
	ownerGone, err := w.ownerGone(ctx, u.GetAnnotations()[labsv1.AnnotationOwner], uid)
	if err != nil {
		return ctrl.Result{}, err
	}
	overdue := time.Duration(0)
	if by, err := time.Parse(time.RFC3339, u.GetAnnotations()[labsv1.AnnotationRestoreBy]); err == nil {
		overdue = w.now().Sub(by.Add(w.Grace))
	}
	if !ownerGone && overdue < 0 {
		return ctrl.Result{RequeueAfter: -overdue}, nil
	}
	log := ctrl.LoggerFrom(ctx)
	log.Info("Restoring mesh object left changed", "kind", w.Kind, "object", req.NamespacedName.String(),
		"ownerGone", ownerGone, "overdue", overdue)
	if _, err := mesh.RestoreOrphan(ctx, w.Client, u); err != nil {
		return ctrl.Result{}, err
	}
	if ownerGone {
		return ctrl.Result{}, w.sweep(ctx, uid)
	}
	return ctrl.Result{}, nil
}

// sweep deletes what a vanished run left behind: probe pods, its non-mesh namespace, its attacker
// ServiceAccount.
func (w *Watchdog) sweep(ctx context.Context, uid string) error {
	for _, list := range []client.ObjectList{&corev1.PodList{}, &corev1.ServiceAccountList{}, &corev1.NamespaceList{}} {
		if err := w.APIReader.List(ctx, list, client.MatchingLabels{labsv1.LabelLabRun: uid}); err != nil {
			return err
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return err
		}
		for _, item := range items {
			if err := w.Delete(ctx, item.(client.Object)); client.IgnoreNotFound(err) != nil {
				return err
			}
		}
	}
	return nil
}

func (w *Watchdog) ownerGone(ctx context.Context, owner, uid string) (bool, error) {
	ns, name, ok := strings.Cut(owner, "/")
	if !ok {
		return true, nil
	}
	run := &labsv1.LabRun{}
	if err := w.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, run); err != nil {
		return client.IgnoreNotFound(err) == nil, client.IgnoreNotFound(err)
	}
	return string(run.UID) != uid, nil
}

func (w *Watchdog) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

// SetupWithManager watches the changed objects of the watchdog's kind, and LabRun deletions, which is when an
// owner disappears.
func (w *Watchdog) SetupWithManager(mgr ctrl.Manager) error {
	var obj client.Object = &securityv1.PeerAuthentication{}
	if w.Kind == mesh.KindAuthorizationPolicy {
		obj = &securityv1.AuthorizationPolicy{}
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("watchdog-"+strings.ToLower(w.Kind)).
		For(obj).
		Watches(&labsv1.LabRun{}, w.onRunDeleted()).
		Complete(w)
}

// onRunDeleted maps a deleted LabRun to the objects of the watchdog's kind it still marks.
func (w *Watchdog) onRunDeleted() handler.Funcs {
	return handler.Funcs{DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		list := &unstructured.UnstructuredList{}
		gvk := mesh.GVK(w.Kind)
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := w.List(ctx, list, client.MatchingLabels{mesh.LabelChangedBy: string(e.Object.GetUID())}); err != nil {
			return
		}
		for _, item := range list.Items {
			q.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&item)})
		}
	}}
}
