// Package labschedule runs LabRuns on a schedule: its times (cron), its trigger (a change to a watched policy
// or DaemonSet), its status and its metrics.
package labschedule

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// Reconciler creates LabRuns from a LabSchedule's template on its cron schedule and, when asked, after
// the mesh's policies or ztunnel changed; it keeps the runs' history to the schedule's limits.
//
// It never doubles a run: a run's name is the schedule's name and the scheduled time, so a second create of the
// same time (after a restart, from a stale cache) gets AlreadyExists. It never misses one: each pass runs the most
// recent scheduled time since status.lastScheduleTime (or the schedule's creation), within
// startingDeadlineSeconds. Status is the manager's own record (config/admission/status_policy.yaml refuses
// anyone else's write to labschedules/status), so lastScheduleTime may bound what has been run.
type Reconciler struct {
	client.Client
	// APIReader reads the schedule live: a stale lastScheduleTime from the cache could run a time twice once
	// its run has been pruned.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// Records is the operator's trusted run records: a policy marked by a recorded run is the operator's own
	// change, which triggers nothing.
	Records mesh.Store
	// Mesh says where the mesh root namespace and ztunnel are (the manager's flags; empty: Istio's defaults):
	// the policies and the ztunnel DaemonSet whose changes trigger runs.
	Mesh mesh.Config
	// Now is the clock; tests may replace it.
	Now func() time.Time

	triggers     *pendingTriggers
	recordedRuns recordedRuns
	// reviewed remembers, per schedule UID, the last review that found every right of its author there
	// (author.go): a pass that creates no run (its runs' progress wakes it) does not review again within
	// authorRecheck; a pass that creates a run always has reviewed in that pass, so each run is reviewed once.
	reviewed sync.Map
}

// The schedule controller's rights: LabSchedules, and create/delete of the LabRuns they own. The runs are
// admitted by config/admission/requester_policy.yaml against the manager's own rights, so the manager may also
// set-probe-image on labruns; the schedule's template was checked against its requester's rights when the
// schedule was written (config/admission/schedule_policy.yaml). DaemonSets are read for the ztunnel trigger.
// +kubebuilder:rbac:groups=labs.ambientlab.io,resources=labschedules,verbs=get;list;watch
// +kubebuilder:rbac:groups=labs.ambientlab.io,resources=labschedules/status,verbs=get;patch
// +kubebuilder:rbac:groups=labs.ambientlab.io,resources=labschedules/finalizers,verbs=update
// +kubebuilder:rbac:groups=labs.ambientlab.io,resources=labruns,verbs=create;delete;set-probe-image
// +kubebuilder:rbac:groups=apps,resources=daemonsets,verbs=get;list;watch

// Reconcile: get live → deferred status patch → observe runs → prune history → parse → suspend → due run and
// trigger run → requeue at the next time.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	ls := &labsv1.LabSchedule{}
	if err := r.APIReader.Get(ctx, req.NamespacedName, ls); err != nil {
		if apierrors.IsNotFound(err) {
			r.triggers.forget(req.NamespacedName)
			return r.sweepWarm(ctx, req.NamespacedName)
		}
		return ctrl.Result{}, err
	}
	if !ls.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // its runs go with it (owner references)
	}
	orig := ls.DeepCopy()
	defer func() {
		if err := r.patchStatus(ctx, orig, ls, retErr); err != nil {
			retErr, result = kerrors.NewAggregate([]error{retErr, err}), ctrl.Result{}
		}
	}()
	now := r.now()
	runs, err := r.listRuns(ctx, ls)
	if err != nil {
		return ctrl.Result{}, err
	}
	observeRuns(ls, runs)
	if err := r.prune(ctx, ls, runs); err != nil {
		return ctrl.Result{}, err
	}
	sched, err := parseSchedule(ls)
	if err != nil {
		// Bad input: nothing will change until the spec does, so no requeue.
		ctrl.LoggerFrom(ctx).Info("Schedule cannot run", "reason", err.Error())
		ls.Status.NextScheduleTime = nil
		setScheduleConditions(ls, reasonInvalidSchedule, err.Error()+"; no run is created", now)
		return ctrl.Result{}, nil
	}
	setScheduleConditions(ls, "", "", now)
	if ls.Spec.Suspend != nil && *ls.Spec.Suspend {
		ls.Status.NextScheduleTime = nil
		return ctrl.Result{}, nil // a spec change (resume) wakes it; pending triggers wait
	}
	// The schedule acts with its author's rights of today (author.go): reviewed here at most every
	// authorRecheck, and again right before each run is created (start).
	if !r.reviewedLately(ls, now) {
		if err := r.review(ctx, ls, now); err != nil {
			return r.stallOrErr(ctx, ls, err, now)
		}
	}
	res, err := r.reconcileDue(ctx, ls, sched, &runs, now)
	if err != nil {
		return r.stallOrErr(ctx, ls, err, now)
	}
	return res, nil
}

// lacking is a review's finding that the schedule's author lacks a right its runs need.
type lacking struct{ why string }

func (l lacking) Error() string { return l.why }

// review asks for every right of the schedule's author: a lacking error when one is missing, remembered when
// none is.
func (r *Reconciler) review(ctx context.Context, ls *labsv1.LabSchedule, now time.Time) error {
	r.reviewed.Delete(ls.UID)
	lacks, err := r.authorLacks(ctx, ls)
	if err != nil {
		return err
	}
	if lacks != "" {
		return lacking{lacks}
	}
	r.reviewed.Store(ls.UID, reviewOf(ls, now))
	return nil
}

// reviewKey is what a review was of: the schedule's generation and author, and when.
type reviewKey struct {
	generation    int64
	author, group string
	at            time.Time
}

func reviewOf(ls *labsv1.LabSchedule, at time.Time) reviewKey {
	return reviewKey{generation: ls.Generation, author: ls.Annotations[labsv1.AnnotationAuthor],
		group: ls.Annotations[labsv1.AnnotationAuthorGroups], at: at}
}

// reviewedLately: a review of this spec and author found every right there within authorRecheck.
func (r *Reconciler) reviewedLately(ls *labsv1.LabSchedule, now time.Time) bool {
	v, ok := r.reviewed.Load(ls.UID)
	if !ok {
		return false
	}
	rv, cur := v.(reviewKey), reviewOf(ls, now)
	return rv.generation == cur.generation && rv.author == cur.author && rv.group == cur.group &&
		now.Sub(rv.at) < authorRecheck && !now.Before(rv.at)
}

// reviewedAt: this pass (now) reviewed this spec and author and found every right there.
func (r *Reconciler) reviewedAt(ls *labsv1.LabSchedule, now time.Time) bool {
	v, ok := r.reviewed.Load(ls.UID)
	return ok && v.(reviewKey) == reviewOf(ls, now)
}

// stallOrErr: a lacking right stalls the schedule, any other error is returned.
func (r *Reconciler) stallOrErr(ctx context.Context, ls *labsv1.LabSchedule, err error, now time.Time) (ctrl.Result, error) {
	var l lacking
	if !errors.As(err, &l) {
		return ctrl.Result{}, err
	}
	ctrl.LoggerFrom(ctx).Info("Schedule may not run: its author lacks a right", "reason", l.why)
	ls.Status.NextScheduleTime = nil
	setScheduleConditions(ls, reasonAuthorLacksRight, l.why+"; no run is created", now)
	r.triggers.forget(client.ObjectKeyFromObject(ls))
	// Nothing tells the schedule when a right comes back: look again later. A run missed meanwhile is run
	// then, once (reconcileDue).
	return ctrl.Result{RequeueAfter: authorRecheck}, nil
}

// patchStatus writes the status once per pass, only when it changed; observedGeneration only after a clean pass.
func (r *Reconciler) patchStatus(ctx context.Context, orig, ls *labsv1.LabSchedule, passErr error) error {
	if passErr == nil {
		ls.Status.ObservedGeneration = ls.Generation
	}
	if equality.Semantic.DeepEqual(orig.Status, ls.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, ls, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("patching status of LabSchedule %s: %w", klog.KObj(ls), err)
	}
	return nil
}

// listRuns lists the runs this schedule controls (its label selects them, its controller reference proves them).
func (r *Reconciler) listRuns(ctx context.Context, ls *labsv1.LabSchedule) (scheduleRuns, error) {
	list := &labsv1.LabRunList{}
	if err := r.List(ctx, list, client.InNamespace(ls.Namespace),
		client.MatchingLabels{labsv1.LabelSchedule: ls.Name}); err != nil {
		return scheduleRuns{}, fmt.Errorf("listing the runs of LabSchedule %s: %w", klog.KObj(ls), err)
	}
	owned := list.Items[:0]
	for _, run := range list.Items {
		if metav1.IsControlledBy(&run, ls) {
			owned = append(owned, run)
		}
	}
	return sortRuns(owned), nil
}

// observeRuns copies what the runs show into status: the active ones, the last finished one and its audit of the
// policies (policies.go), the last success. The last run and success outlive pruning: they move only forward. A
// run that ended in the same second as the recorded one (the API keeps whole seconds) replaces it: a run that
// fails fast right after another must not be lost.
func observeRuns(ls *labsv1.LabSchedule, runs scheduleRuns) {
	ls.Status.Active = nil
	for _, run := range runs.active {
		ls.Status.Active = append(ls.Status.Active, run.Name)
	}
	if last := runs.lastFinished(); last != nil {
		prev := ls.Status.LastRun
		if prev == nil || prev.Name == last.Name || prev.CompletionTime == nil ||
			!endTime(last).Before(prev.CompletionTime.Time) {
			ls.Status.LastRun = summarizeRun(last)
			ls.Status.Policies = rememberPolicies(ls.Status.Policies, last)
		}
	}
	if t := runs.lastSuccess(); t != nil && (ls.Status.LastSuccessfulTime == nil || t.After(ls.Status.LastSuccessfulTime.Time)) {
		ls.Status.LastSuccessfulTime = t
	}
}

// prune deletes the oldest finished runs beyond the history limits. It deletes them itself rather than leaving
// it to the garbage collector: their owner, the schedule, lives on. A run's finalizer still restores the mesh.
func (r *Reconciler) prune(ctx context.Context, ls *labsv1.LabSchedule, runs scheduleRuns) error {
	var errs []error
	for _, set := range []struct {
		runs  []*labsv1.LabRun
		limit *int32
		def   int32
	}{{runs.succeeded, ls.Spec.SuccessfulRunsHistoryLimit, 3}, {runs.failed, ls.Spec.FailedRunsHistoryLimit, 1}} {
		limit := set.def
		if set.limit != nil {
			limit = *set.limit
		}
		for i := 0; i < len(set.runs)-int(limit); i++ {
			errs = append(errs, r.deleteRun(ctx, ls, set.runs[i], "Pruning history"))
		}
	}
	return kerrors.NewAggregate(errs)
}

// deleteRun deletes one run of the schedule, this very run only (UID precondition); gone already is fine.
func (r *Reconciler) deleteRun(ctx context.Context, ls *labsv1.LabSchedule, run *labsv1.LabRun, why string) error {
	ctrl.LoggerFrom(ctx).Info("Deleting LabRun", "labRun", klog.KObj(run), "why", why)
	err := r.Delete(ctx, run, client.Preconditions{UID: &run.UID}, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting LabRun %s of LabSchedule %s: %w", klog.KObj(run), klog.KObj(ls), err)
	}
	return nil
}

// reconcileDue creates the run of the most recent due time and the run of an expired trigger, then sleeps until
// the next time or trigger.
func (r *Reconciler) reconcileDue(ctx context.Context, ls *labsv1.LabSchedule, sched cron.Schedule,
	runs *scheduleRuns, now time.Time) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	earliest := ls.CreationTimestamp.Time
	if l := ls.Status.LastScheduleTime; l != nil && l.After(earliest) {
		earliest = l.Time
	}
	due, next, err := dueTimes(sched, earliest, now)
	if err != nil {
		log.Info("Missed run not found", "reason", err.Error())
		ls.Status.LastScheduleTime = &metav1.Time{Time: now.Truncate(time.Second)}
	}
	ls.Status.NextScheduleTime = &metav1.Time{Time: next}
	setScheduleConditions(ls, "", "", now) // Ready says when the first run is due
	switch {
	case due.IsZero():
	case tooLate(ls, due, now):
		log.Info("Skipping a missed run: past startingDeadlineSeconds", "scheduled", due)
		ls.Status.LastScheduleTime = &metav1.Time{Time: due}
	default:
		started, err := r.start(ctx, ls, runs, scheduledRunName(ls.Name, due), ls.Spec.ConcurrencyPolicy, now)
		if err != nil {
			return ctrl.Result{}, err
		}
		if started {
			ls.Status.LastScheduleTime = &metav1.Time{Time: due}
		}
	}
	wake, err := r.reconcileTrigger(ctx, ls, runs, now)
	if err != nil {
		return ctrl.Result{}, err
	}
	if wake.IsZero() || next.Before(wake) {
		wake = next
	}
	return ctrl.Result{RequeueAfter: max(wake.Sub(now), 10*time.Millisecond)}, nil
}

// reconcileTrigger starts the run of pending changes once it is due (triggerDue); it returns when a pending one
// is due. A triggered run never replaces an active one: whoever changes a policy the schedule depends on must not
// be able to abort its runs.
func (r *Reconciler) reconcileTrigger(ctx context.Context, ls *labsv1.LabSchedule, runs *scheduleRuns,
	now time.Time) (time.Time, error) {
	key := client.ObjectKeyFromObject(ls)
	ls.Status.NextTriggerAllowedTime = nextTriggerAllowed(ls)
	if ls.Spec.Trigger == nil {
		r.triggers.forget(key) // the trigger was turned off while a change was pending
		return time.Time{}, nil
	}
	p, ok := r.triggers.pending(key)
	if !ok {
		return time.Time{}, nil
	}
	set := triggerSettings(ls.Spec.Trigger)
	at := triggerDue(p, set.debounce, set.minInterval, ls.Status.NextTriggerAllowedTime)
	if at.After(now) {
		return at, nil
	}
	policy := ls.Spec.ConcurrencyPolicy
	if policy == labsv1.ConcurrencyReplace {
		policy = labsv1.ConcurrencyForbid
	}
	started, err := r.start(ctx, ls, runs, triggeredRunName(ls.Name, at), policy, now)
	if err != nil || !started {
		return time.Time{}, err // Forbid: tried again when the active run ends (its change wakes the schedule)
	}
	r.triggers.done(key, p)
	ls.Status.LastTriggerTime = &metav1.Time{Time: ceilSecond(now)}
	ls.Status.NextTriggerAllowedTime = nextTriggerAllowed(ls)
	return time.Time{}, nil
}

// start creates the run named name unless it exists, applying the concurrency policy. It tells whether the run
// now exists (false: Forbid skipped it while another is active).
func (r *Reconciler) start(ctx context.Context, ls *labsv1.LabSchedule, runs *scheduleRuns, name string,
	policy labsv1.ConcurrencyPolicy, now time.Time) (bool, error) {
	log := ctrl.LoggerFrom(ctx)
	if runs.has(name) {
		return true, nil
	}
	if policy != labsv1.ConcurrencyAllow && policy != labsv1.ConcurrencyReplace && len(runs.active) > 0 {
		log.V(1).Info("Skipping a due run while another is active (concurrencyPolicy Forbid)", "labRun", name,
			"active", runs.active[0].Name)
		return false, nil
	}
	// Each run is created with its author's rights of this pass (and Replace ends no run for one not created).
	if !r.reviewedAt(ls, now) {
		if err := r.review(ctx, ls, now); err != nil {
			return false, err
		}
	}
	if policy == labsv1.ConcurrencyReplace {
		for _, run := range runs.active {
			if err := r.deleteRun(ctx, ls, run, "Replacing it (concurrencyPolicy Replace)"); err != nil {
				return false, err
			}
		}
		runs.active = nil
	}
	run, err := r.newRun(ls, name)
	if err != nil {
		return false, err
	}
	log.Info("Creating LabRun", "labRun", klog.KObj(run))
	if err := r.Create(ctx, run); err != nil && !apierrors.IsAlreadyExists(err) {
		r.Recorder.Eventf(ls, nil, corev1.EventTypeWarning, "CreateFailed", "Create", "Creating LabRun %s: %v", name, err)
		return false, fmt.Errorf("creating LabRun %s for LabSchedule %s: %w", klog.KObj(run), klog.KObj(ls), err)
	} else if err == nil {
		r.Recorder.Eventf(ls, run, corev1.EventTypeNormal, "RunCreated", "Create", "Created LabRun %s", name)
		if err := r.listWarm(ctx, ls, run); err != nil {
			return false, err
		}
	}
	runs.active = append(runs.active, run)
	return true, nil
}

// has tells whether the schedule already has a run of this name, in any state.
func (s scheduleRuns) has(name string) bool {
	for _, set := range [][]*labsv1.LabRun{s.active, s.succeeded, s.failed} {
		for _, run := range set {
			if run.Name == name {
				return true
			}
		}
	}
	return false
}

// newRun stamps out the template: its labels and annotations, the schedule label, the controller reference.
func (r *Reconciler) newRun(ls *labsv1.LabSchedule, name string) (*labsv1.LabRun, error) {
	tmpl := ls.Spec.Template
	labels := maps.Clone(tmpl.Metadata.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[labsv1.LabelSchedule] = ls.Name
	run := &labsv1.LabRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: ls.Namespace, Name: name, Labels: labels,
			Annotations: maps.Clone(tmpl.Metadata.Annotations)},
		Spec: *tmpl.Spec.DeepCopy(),
	}
	if err := controllerutil.SetControllerReference(ls, run, r.Scheme()); err != nil {
		return nil, fmt.Errorf("owning LabRun %s by LabSchedule %s: %w", name, klog.KObj(ls), err)
	}
	return run, nil
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// SetupWithManager watches schedules (spec changes only: status writes do not loop), the runs they own (created,
// deleted, or moved to another phase), and, for triggers, the mesh's policies and ztunnel DaemonSets through a
// cache of their own (see trigger.go).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.triggers = newPendingTriggers()
	b := ctrl.NewControllerManagedBy(mgr).
		Named("labschedule").
		For(&labsv1.LabSchedule{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&labsv1.LabRun{}, builder.WithPredicates(phaseChanged()))
	if err := r.watchTriggers(mgr, b); err != nil {
		return err
	}
	if err := mgr.Add(manager.RunnableFunc(r.sweepOrphans)); err != nil {
		return err
	}
	return b.Complete(r)
}

// phaseChanged passes a run's creation, deletion and phase changes, not every step's status write.
func phaseChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, okO := e.ObjectOld.(*labsv1.LabRun)
		n, okN := e.ObjectNew.(*labsv1.LabRun)
		return !okO || !okN || o.Status.Phase != n.Status.Phase || !n.DeletionTimestamp.IsZero()
	}}
}
