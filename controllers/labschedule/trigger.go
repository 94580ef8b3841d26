package labschedule

import (
	"context"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/cachefilter"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// The trigger watches every PeerAuthentication and AuthorizationPolicy, and every DaemonSet, through a cache of
// its own. The manager's cache holds only the policies a run marked (internal/operator), and widening it would
// make every LabRun pass read from a cache of every policy; this one is started with the manager, only on the
// leader, and holds policies as metadata only: a spec change shows as a new metadata.generation (Istio's CRDs
// have a status subresource, so status and metadata writes leave it alone). DaemonSets are held whole, to
// compare the pod template.
//
// A pending trigger lives in memory only: changes still pending when the manager stops are lost (the next
// scheduled run checks them). Whoever may change a policy a schedule depends on can cause its triggered runs, so
// they are rate-limited: status.lastTriggerTime (the manager's own record) plus trigger.minInterval is the
// earliest next one (status.nextTriggerAllowedTime), and a triggered run never replaces an active one.

// Defaults of trigger.debounce and trigger.minInterval when unset (the API server defaults them too).
const (
	defaultDebounce    = 10 * time.Second
	defaultMinInterval = 5 * time.Minute
)

// pendingTrigger is the span of a schedule's changes not run yet: the first and the last.
type pendingTrigger struct{ first, last time.Time }

// pendingTriggers holds, per schedule, the changes its next triggered run is for.
type pendingTriggers struct {
	mu sync.Mutex
	at map[types.NamespacedName]pendingTrigger
}

func newPendingTriggers() *pendingTriggers {
	return &pendingTriggers{at: map[types.NamespacedName]pendingTrigger{}}
}

// note records a change made at `at`: a burst of changes is one pending trigger.
func (p *pendingTriggers) note(key types.NamespacedName, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur, ok := p.at[key]
	if !ok {
		p.at[key] = pendingTrigger{first: at, last: at}
		return
	}
	if at.After(cur.last) {
		cur.last = at
	}
	p.at[key] = cur
}

func (p *pendingTriggers) pending(key types.NamespacedName) (pendingTrigger, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.at[key]
	return at, ok
}

// done clears the changes a run was started for; a change noted since stays pending, from its own time.
func (p *pendingTriggers) done(key types.NamespacedName, ran pendingTrigger) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur, ok := p.at[key]
	switch {
	case !ok:
	case cur.last.Equal(ran.last):
		delete(p.at, key)
	default:
		p.at[key] = pendingTrigger{first: cur.last, last: cur.last}
	}
}

// triggerDue is when the run of pending changes may start: debounce after the last change, but no later than
// max(debounce, minInterval) after the first (changes that keep coming cannot put it off for ever), and never
// before the schedule's next allowed trigger time. Whole seconds, rounded up: a run's name carries its time.
func triggerDue(p pendingTrigger, debounce, minInterval time.Duration, allowed *metav1.Time) time.Time {
	due := p.last.Add(debounce)
	if bound := p.first.Add(max(debounce, minInterval)); bound.Before(due) {
		due = bound
	}
	if allowed != nil && due.Before(allowed.Time) {
		due = allowed.Time
	}
	return ceilSecond(due)
}

func ceilSecond(t time.Time) time.Time {
	if s := t.Truncate(time.Second); !s.Equal(t) {
		return s.Add(time.Second)
	}
	return t
}

// nextTriggerAllowed is lastTriggerTime plus the schedule's minimum interval, or nil before the first
// triggered run.
func nextTriggerAllowed(ls *labsv1.LabSchedule) *metav1.Time {
	last := ls.Status.LastTriggerTime
	if ls.Spec.Trigger == nil || last == nil {
		return nil
	}
	return &metav1.Time{Time: last.Add(triggerSettings(ls.Spec.Trigger).minInterval)}
}

type triggerDurations struct{ debounce, minInterval time.Duration }

func triggerSettings(t *labsv1.TriggerSpec) triggerDurations {
	d := triggerDurations{debounce: defaultDebounce, minInterval: defaultMinInterval}
	if t.Debounce != nil {
		d.debounce = t.Debounce.Duration
	}
	if t.MinInterval != nil {
		d.minInterval = t.MinInterval.Duration
	}
	return d
}

func (p *pendingTriggers) forget(key types.NamespacedName) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.at, key)
}

// watchTriggers adds the trigger cache to the manager and its watches to the controller.
func (r *Reconciler) watchTriggers(mgr ctrl.Manager, b *builder.Builder) error {
	// Every policy's metadata in the cluster, without what a tenant may make large (StripUnread), and the
	// DaemonSets of ztunnel's namespace only: noteZtunnelChange looks at no other.
	c, err := cache.New(mgr.GetConfig(), cache.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		HTTPClient: mgr.GetHTTPClient(), DefaultTransform: cachefilter.StripUnread, ByObject: map[client.Object]cache.ByObject{
			&appsv1.DaemonSet{}: {Namespaces: map[string]cache.Config{r.Mesh.WithDefaults().ZtunnelNamespace: {}}},
		}})
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
// depend on it — never the operator's own change or restore, nor the initial list.
func (r *Reconciler) policyChanges() handler.TypedEventHandler[*metav1.PartialObjectMetadata, reconcile.Request] {
	return handler.TypedFuncs[*metav1.PartialObjectMetadata, reconcile.Request]{
		CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[*metav1.PartialObjectMetadata], q queue) {
			if !e.IsInInitialList && !r.operatorsOwn(ctx, e.Object) {
				r.notePolicyChange(ctx, e.Object, q)
			}
		},
		UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[*metav1.PartialObjectMetadata], q queue) {
			if e.ObjectOld.Generation != e.ObjectNew.Generation && !r.operatorsOwn(ctx, e.ObjectOld) &&
				!r.operatorsOwn(ctx, e.ObjectNew) {
				r.notePolicyChange(ctx, e.ObjectNew, q)
			}
		},
		DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[*metav1.PartialObjectMetadata], q queue) {
			if !r.operatorsOwn(ctx, e.Object) {
				r.notePolicyChange(ctx, e.Object, q)
			}
		},
	}
}

// operatorsOwn tells whether a policy is the operator's own change: it carries the changed-by mark (only the
// manager may write labs.ambientlab.io/ marks on policies: config/admission/marks_policy.yaml), and the mark names
// a run the operator recorded (its trusted record exists, or existed when the object was last seen marked). Its
// name proves nothing: a tenant may call a policy anything. When in doubt the change triggers a run.
func (r *Reconciler) operatorsOwn(ctx context.Context, obj *metav1.PartialObjectMetadata) bool {
	uid := obj.Labels[mesh.LabelChangedBy]
	if uid == "" {
		return false
	}
	if r.recordedRuns.has(uid) {
		return true
	}
	rec, err := r.Records.Get(ctx, uid)
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Reading the record of the run a policy's mark names", "run", uid)
		return false
	}
	if rec == nil {
		ctrl.LoggerFrom(ctx).Info("Policy marked by a run the operator has no record of", "run", uid,
			"object", klog.KObj(obj))
		return false
	}
	r.recordedRuns.add(uid, r.now())
	return true
}

// recordedRuns remembers, for a while, the runs whose records the trigger found: a temporary policy's deletion
// may be seen after its run's record is gone.
type recordedRuns struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// recordedRunsTTL outlives any run's exposure and restore.
const recordedRunsTTL = 24 * time.Hour

func (s *recordedRuns) has(uid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.seen[uid]
	return ok
}

func (s *recordedRuns) add(uid string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]time.Time{}
	}
	for k, t := range s.seen {
		if now.Sub(t) > recordedRunsTTL {
			delete(s.seen, k)
		}
	}
	s.seen[uid] = now
}

// ztunnelChanges turns a change of a ztunnel DaemonSet's pod template into a pending trigger.
func (r *Reconciler) ztunnelChanges() handler.TypedEventHandler[*appsv1.DaemonSet, reconcile.Request] {
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

func (r *Reconciler) notePolicyChange(ctx context.Context, obj client.Object, q queue) {
	r.noteChange(ctx, q, "policy", obj, func(t *labsv1.TriggerSpec, spec *labsv1.LabRunSpec, ns string) bool {
		return t.OnPolicyChange && dependsOnNamespace(spec, r.Mesh.WithDefaults().RootNamespace, ns, obj.GetNamespace())
	})
}

func (r *Reconciler) noteZtunnelChange(ctx context.Context, ds *appsv1.DaemonSet, q queue) {
	r.noteChange(ctx, q, "ztunnel", ds, func(t *labsv1.TriggerSpec, spec *labsv1.LabRunSpec, _ string) bool {
		// The operator's ztunnel, which its runs read, whatever the template names.
		z := r.Mesh.WithDefaults()
		return t.OnZtunnelChange && ds.Namespace == z.ZtunnelNamespace && selects(z.ZtunnelSelector, ds.Spec.Template.Labels)
	})
}

// noteChange marks every schedule that wants this change with a pending trigger and wakes it when it is due.
func (r *Reconciler) noteChange(ctx context.Context, q queue, what string, obj client.Object,
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
		debounce := triggerSettings(ls.Spec.Trigger).debounce
		key := client.ObjectKeyFromObject(ls)
		log.V(1).Info("Noting a trigger", "labSchedule", key, "change", what, "object", client.ObjectKeyFromObject(obj))
		r.triggers.note(key, r.now())
		q.AddAfter(reconcile.Request{NamespacedName: key}, debounce)
	}
}

// dependsOnNamespace tells whether a run of spec, in namespace ns, reads the policies of namespace policyNs: the
// mesh root namespace (the operator's, rootNs, whatever the spec names), the target's and the
// AuthorizationPolicy's.
func dependsOnNamespace(spec *labsv1.LabRunSpec, rootNs, ns, policyNs string) bool {
	target := orDefaultString(spec.Target.Namespace, ns)
	deps := []string{rootNs, target}
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
