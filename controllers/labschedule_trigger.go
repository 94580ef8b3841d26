package controllers

import (
	"context"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// The trigger watches every PeerAuthentication and AuthorizationPolicy, and every DaemonSet, through a cache of
// its own. The manager's cache holds only the policies a run marked (internal/operator), and widening it would
// make every LabRun pass read from a cache of every policy; this one is started with the manager, only on the
// leader, and holds policies as metadata only: a spec change shows as a new metadata.generation (Istio's CRDs
// have a status subresource, so status and metadata writes leave it alone). DaemonSets are held whole, to
// compare the pod template.
//
// A pending trigger lives in memory only: a debounce still running when the manager stops is lost (the next
// scheduled run checks the change). status.lastTriggerTime reports a triggered run, for people.

// defaultDebounce is trigger.debounce when unset (the API server defaults it too).
const defaultDebounce = 10 * time.Second

// pendingTriggers holds, per schedule, when its debounced trigger run is due.
type pendingTriggers struct {
	mu sync.Mutex
	at map[types.NamespacedName]time.Time
}

func newPendingTriggers() *pendingTriggers {
	return &pendingTriggers{at: map[types.NamespacedName]time.Time{}}
}

// note records a change: the run is due at `at`, later than any earlier change's (a burst starts one run).
func (p *pendingTriggers) note(key types.NamespacedName, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if at.After(p.at[key]) {
		p.at[key] = at
	}
}

func (p *pendingTriggers) pending(key types.NamespacedName) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.at[key]
	return at, ok
}

// done clears the trigger due at `at`, unless a later change has moved it since.
func (p *pendingTriggers) done(key types.NamespacedName, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.at[key].Equal(at) {
		delete(p.at, key)
	}
}

func (p *pendingTriggers) forget(key types.NamespacedName) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.at, key)
}

// watchTriggers adds the trigger cache to the manager and its watches to the controller.
func (r *LabScheduleReconciler) watchTriggers(mgr ctrl.Manager, b *builder.Builder) error {
	c, err := cache.New(mgr.GetConfig(), cache.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		HTTPClient: mgr.GetHTTPClient()})
	if err != nil {
		return err
	}
	if err := mgr.Add(c); err != nil {
		return err
	}
	for _, kind := range []string{mesh.KindPeerAuthentication, mesh.KindAuthorizationPolicy} {
		obj := &metav1.PartialObjectMetadata{}
		obj.SetGroupVersionKind(mesh.GVK(kind))
		b.WatchesRawSource(source.Kind(c, obj, r.policyChanges()))
	}
	b.WatchesRawSource(source.Kind(c, &appsv1.DaemonSet{}, r.ztunnelChanges()))
	return nil
}

type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]

// policyChanges turns a policy's creation, spec change or deletion into a pending trigger of the schedules that
// depend on it — never an object the operator marked (its own temporary change or restore) or the initial list.
func (r *LabScheduleReconciler) policyChanges() handler.TypedEventHandler[*metav1.PartialObjectMetadata, reconcile.Request] {
	return handler.TypedFuncs[*metav1.PartialObjectMetadata, reconcile.Request]{
		CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[*metav1.PartialObjectMetadata], q queue) {
			if !e.IsInInitialList && !operatorsOwn(e.Object) {
				r.notePolicyChange(ctx, e.Object, q)
			}
		},
		UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[*metav1.PartialObjectMetadata], q queue) {
			if e.ObjectOld.Generation != e.ObjectNew.Generation && !operatorsOwn(e.ObjectOld) && !operatorsOwn(e.ObjectNew) {
				r.notePolicyChange(ctx, e.ObjectNew, q)
			}
		},
		DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[*metav1.PartialObjectMetadata], q queue) {
			if !operatorsOwn(e.Object) {
				r.notePolicyChange(ctx, e.Object, q)
			}
		},
	}
}

// operatorsOwn tells whether a policy carries the operator's marks (only the manager may write them:
// config/admission/marks_policy.yaml) or is one of its temporary PeerAuthentications.
func operatorsOwn(obj *metav1.PartialObjectMetadata) bool {
	if _, ok := obj.Labels[mesh.LabelChangedBy]; ok {
		return true
	}
	for k := range obj.Annotations {
		if strings.HasPrefix(k, "labs.ambientlab.io/") {
			return true
		}
	}
	return obj.Kind == mesh.KindPeerAuthentication && strings.HasPrefix(obj.Name, "labrun-permissive-")
}

// ztunnelChanges turns a change of a ztunnel DaemonSet's pod template into a pending trigger.
func (r *LabScheduleReconciler) ztunnelChanges() handler.TypedEventHandler[*appsv1.DaemonSet, reconcile.Request] {
	return handler.TypedFuncs[*appsv1.DaemonSet, reconcile.Request]{
		CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[*appsv1.DaemonSet], q queue) {
			if !e.IsInInitialList {
				r.noteZtunnelChange(ctx, e.Object, q)
			}
		},
		UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[*appsv1.DaemonSet], q queue) {
			if !equality.Semantic.DeepEqual(e.ObjectOld.Spec.Template, e.ObjectNew.Spec.Template) {
				r.noteZtunnelChange(ctx, e.ObjectNew, q)
			}
		},
	}
}

func (r *LabScheduleReconciler) notePolicyChange(ctx context.Context, obj client.Object, q queue) {
	r.noteChange(ctx, q, "policy", obj, func(t *labsv1.TriggerSpec, spec *labsv1.LabRunSpec, ns string) bool {
		return t.OnPolicyChange && dependsOnNamespace(spec, ns, obj.GetNamespace())
	})
}

func (r *LabScheduleReconciler) noteZtunnelChange(ctx context.Context, ds *appsv1.DaemonSet, q queue) {
	r.noteChange(ctx, q, "ztunnel", ds, func(t *labsv1.TriggerSpec, spec *labsv1.LabRunSpec, _ string) bool {
		z := spec.Mesh.Ztunnel
		return t.OnZtunnelChange && ds.Namespace == orDefaultString(z.Namespace, "istio-system") &&
			selects(z.Labels(), ds.Spec.Template.Labels)
	})
}

// noteChange marks every schedule that wants this change with a pending trigger and wakes it when it is due.
func (r *LabScheduleReconciler) noteChange(ctx context.Context, q queue, what string, obj client.Object,
	wants func(t *labsv1.TriggerSpec, spec *labsv1.LabRunSpec, ns string) bool) {
	log := ctrl.LoggerFrom(ctx)
	list := &labsv1.LabScheduleList{}
	if err := r.List(ctx, list); err != nil {
		log.Error(err, "Listing LabSchedules for a trigger")
		return
	}
	for i := range list.Items {
		ls := &list.Items[i]
		if ls.Spec.Trigger == nil || !wants(ls.Spec.Trigger, &ls.Spec.Template.Spec, ls.Namespace) {
			continue
		}
		debounce := defaultDebounce
		if d := ls.Spec.Trigger.Debounce; d != nil {
			debounce = d.Duration
		}
		key := client.ObjectKeyFromObject(ls)
		log.V(1).Info("Noting a trigger", "labSchedule", key, "change", what, "object", client.ObjectKeyFromObject(obj))
		r.triggers.note(key, r.now().Add(debounce).Truncate(time.Second))
		q.AddAfter(reconcile.Request{NamespacedName: key}, debounce)
	}
}

// dependsOnNamespace tells whether a run of spec, in namespace ns, reads the policies of namespace policyNs: the
// mesh root namespace, the target's and the AuthorizationPolicy's.
func dependsOnNamespace(spec *labsv1.LabRunSpec, ns, policyNs string) bool {
	target := orDefaultString(spec.Target.Namespace, ns)
	deps := []string{orDefaultString(spec.Mesh.RootNamespace, "istio-system"), target}
	if ap := spec.Mesh.AuthorizationPolicy; ap != nil {
		deps = append(deps, orDefaultString(ap.Namespace, target))
	}
	for _, d := range deps {
		if d == policyNs {
			return true
		}
	}
	return false
}

// selects tells whether every label of the selector is on the pod template.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return len(selector) > 0
}

func orDefaultString(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
