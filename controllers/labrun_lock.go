package controllers

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// Sharing the mesh. A Lab run holds a lock only for a window: from the moment it is served, just before its
// first change, through the verified restore that closes the window and that lab's last probe (its probes that
// see the restore take effect must not see another run's window); its evidence steps, which read lines already
// written, and its non-mutating labs run outside any lock. The
// lock is as narrow as the change (mesh.LockKey): the pods of the target Service (scope Workload), its namespace,
// or the mesh; the AuthorizationPolicy set aside reaches the pods its selector picks. Waiters are served in the
// order they asked (mesh.Lock's tickets, Leases in the operator's namespace where only the manager writes);
// while a run waits, it is Queued with its position, and only the runs close to the front (QueueLookahead) keep
// observers running. A hold is bounded by maxExposure plus the restore: every wait inside a window is cut at the
// exposure deadline, whatever the step's settle.

// serveMu serialises the decisions to serve a ticket, across all reconcilers of this process.
var serveMu sync.Mutex

// lock is the mesh lock queue. Its Leases live in the operator's own namespace (where the trusted records are),
// not in a namespace a spec names: there only the manager may create or hold a Lease
// (config/rbac/leader_election_role.yaml, config/admission/manager_policy.yaml), so no tenant can take the lock,
// pre-create a ticket or jump the queue.
func (r *LabRunReconciler) lock() mesh.Lock {
	return mesh.Lock{Client: r.Client, Reader: r.APIReader, Namespace: r.Records.Namespace, Alive: r.holderAlive,
		Serve: &serveMu}
}

func holderOf(run *labsv1.LabRun) mesh.Holder {
	return mesh.NewHolder(run.Namespace, run.Name, string(run.UID))
}

// holderAlive: a ticket stands while its LabRun exists (same UID) and has not finished, and after that while its
// trusted record still holds a change not restored (the watchdog restores it): the mesh is not free before.
func (r *LabRunReconciler) holderAlive(ctx context.Context, h mesh.Holder) (bool, error) {
	ns, name, uid := h.Parts()
	other := &labsv1.LabRun{}
	err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, other)
	if client.IgnoreNotFound(err) != nil {
		return false, err
	}
	if err == nil && string(other.UID) == uid && !finished(other) {
		return true, nil
	}
	rec, err := r.Records.Get(ctx, uid)
	if err != nil {
		return false, err
	}
	return rec != nil && len(rec.Pending()) > 0, nil
}

// lockKeys is what the run's windows reach: its scope's PeerAuthentication, the AuthorizationPolicy it sets
// aside, and the bystander its window expects to stay protected.
func (r *LabRunReconciler) lockKeys(ctx context.Context, run *labsv1.LabRun, plan []labs.Step) ([]mesh.LockKey, error) {
	ns := run.TargetNamespace()
	var keys []mesh.LockKey
	if needs(plan, labs.KindSetPermissive) {
		switch scopeOf(run) {
		case labsv1.ScopeMesh:
			keys = append(keys, mesh.LockKey{Level: mesh.LockMesh})
		case labsv1.ScopeNamespace:
			keys = append(keys, mesh.LockKey{Level: mesh.LockNamespace, Namespace: ns})
		default:
			svc := &corev1.Service{}
			if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: run.Spec.Target.Service}, svc); err != nil {
				return nil, fmt.Errorf("reading the target Service: %w", err)
			}
			keys = append(keys, workloadKey(ns, svc.Spec.Selector))
		}
	}
	if windowReadsBystander(plan) {
		// Not a change, but the window's verdict on the bystander holds only while no other run weakens it.
		svc, _, err := r.bystanderService(ctx, run)
		if err != nil {
			return nil, err
		}
		if svc != nil {
			keys = append(keys, workloadKey(ns, svc.Spec.Selector))
		}
	}
	if needs(plan, labs.KindSetAside) {
		key, err := r.policyReach(ctx, policyRef(run))
		if err != nil {
			return nil, err
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// windowReadsBystander: a probe step of the plan expects the bystander to stay protected while the target is
// weakened.
func windowReadsBystander(plan []labs.Step) bool {
	for _, s := range plan {
		if s.Kind == labs.KindProbe && s.Bystander {
			return true
		}
	}
	return false
}

// workloadKey: a selector that picks nothing in particular reaches the whole namespace.
func workloadKey(ns string, selector map[string]string) mesh.LockKey {
	if len(selector) == 0 {
		return mesh.LockKey{Level: mesh.LockNamespace, Namespace: ns}
	}
	return mesh.LockKey{Level: mesh.LockWorkload, Namespace: ns, Selector: selector}
}

// policyReach is what setting an AuthorizationPolicy aside reaches: the pods its selector picks, its whole
// namespace without one (or when it is attached by targetRefs), every namespace from the root namespace.
func (r *LabRunReconciler) policyReach(ctx context.Context, ref mesh.Ref) (mesh.LockKey, error) {
	if ref.Namespace == r.meshConfig().RootNamespace {
		return mesh.LockKey{Level: mesh.LockMesh}, nil
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(mesh.GVK(ref.Kind))
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, u); err != nil {
		if apierrors.IsNotFound(err) {
			return mesh.LockKey{Level: mesh.LockNamespace, Namespace: ref.Namespace}, nil
		}
		return mesh.LockKey{}, fmt.Errorf("reading %s: %w", ref, err)
	}
	_, byRef, _ := unstructured.NestedSlice(u.Object, "spec", "targetRefs")
	_, byOneRef, _ := unstructured.NestedMap(u.Object, "spec", "targetRef")
	selector, _, _ := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels")
	if byRef || byOneRef {
		selector = nil
	}
	return workloadKey(ref.Namespace, selector), nil
}

// openGate is asked before a window opens. It returns true when the run holds the lock on what its changes
// reach and the admission policies are enforced. Otherwise the run is Queued, with its place, and only a run
// near the front keeps its fixtures and observers ready: the others hold no pod while they wait.
func (r *LabRunReconciler) openGate(ctx context.Context, run *labsv1.LabRun, plan []labs.Step) (bool, error) {
	served, err := r.lock().Served(ctx, holderOf(run))
	if err != nil {
		return false, err
	}
	// A run that holds its lock finishes the lab it is in (its after-checks, its restore never wait); the
	// admission policies are asked before it asks for a lock again.
	if !served {
		if held, err := r.holdForAdmission(ctx, run); err != nil || held {
			if held {
				run.Status.Phase = labsv1.PhaseQueued
			}
			return false, err
		}
	}
	// The trusted record exists before the run asks (and before its observers start), so the watchdog can
	// clean up after it even if it is force-deleted while it waits.
	if _, err := r.trustedRecord(ctx, run); err != nil {
		return false, err
	}
	keys := func() ([]mesh.LockKey, error) { return r.lockKeys(ctx, run, plan) }
	place, err := r.lock().Request(ctx, holderOf(run), keys, r.now())
	if err != nil {
		return false, err
	}
	if place.Served {
		if run.Status.Phase == labsv1.PhaseQueued || run.Status.LockHolder != "" {
			ctrl.LoggerFrom(ctx).Info("Holding the mesh lock", "keys", describeKeys(place.Keys))
		}
		run.Status.LockHolder, run.Status.QueuePosition = "", 0
		run.Status.Phase, run.Status.Reason = labsv1.PhaseRunning, labsv1.ReasonRunning
		run.Status.Message = "Holding the lock on " + describeKeys(place.Keys) + "; running steps"
		return true, nil
	}
	run.Status.Phase, run.Status.Reason = labsv1.PhaseQueued, labsv1.ReasonQueued
	run.Status.LockHolder, run.Status.QueuePosition = place.Blocker.Run(), int32(place.Ahead)
	run.Status.Message = fmt.Sprintf("Waiting for the lock on %s: %d run(s) ahead, first LabRun %s",
		describeKeys(place.Keys), place.Ahead, place.Blocker.Run())
	if place.Ahead > r.queueLookahead() {
		return false, r.parkObservers(ctx, run, plan)
	}
	// Close to the front: what changes nothing in the mesh is made ready (fixtures, observers), so the window
	// opens as soon as the run is served.
	if _, err := r.prepare(ctx, run, plan); err != nil {
		return false, err
	}
	return false, nil
}

func (r *LabRunReconciler) queueLookahead() int {
	if r.QueueLookahead <= 0 {
		return 1
	}
	return r.QueueLookahead
}

func describeKeys(keys []mesh.LockKey) string {
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		if s := k.String(); !slices.Contains(parts, s) {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, " and ")
}

// parkObservers stops the observers of a run far back in a queue: they would call the target for nothing
// while it waits. They are forgotten by the record before they are deleted; the run creates them again when it
// comes close to the front, and a window waits until those are watching.
func (r *LabRunReconciler) parkObservers(ctx context.Context, run *labsv1.LabRun, plan []labs.Step) error {
	rec, err := r.recordOrNew(ctx, run)
	if err != nil || !rec.Stored() {
		return err
	}
	for _, step := range neededObservers(run, plan) {
		if steps.PerNode(run, step) {
			continue
		}
		o := observerOf(step)
		ns, _ := r.caller(run, o.caller)
		pod := &corev1.Pod{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: r.observerName(run, o)}, pod); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return err
		}
		if trusted, _, err := r.trustObserver(ctx, runBook{r: r, rec: rec}, pod); err != nil || trusted == nil {
			if err != nil {
				return err
			}
			continue // not proven: the window's own check names it
		}
		if err := r.replaceObserver(ctx, runBook{r: r, rec: rec}, pod); err != nil {
			return err
		}
	}
	return nil
}

// releaseAfterWindow gives the lock back at the end of a lab whose window is closed: every change of the run
// restored and read back. The next window asks again, behind whoever asked meanwhile.
func (r *LabRunReconciler) releaseAfterWindow(ctx context.Context, run *labsv1.LabRun) error {
	if run.Status.Exposure.Since != nil {
		return nil
	}
	for _, e := range run.Status.Journal {
		if !e.Restored {
			return nil
		}
	}
	return r.lock().Release(ctx, holderOf(run))
}

func isLockTicket(obj client.Object) bool { return obj.GetLabels()[mesh.LabelLockTicket] == "true" }

// queuedRuns wakes the runs waiting in a queue when a ticket comes or goes, the front of the queue first: the
// work queue hands them out in that order, so the run a release serves is not woken behind everyone who only
// learns that its place moved up.
func (r *LabRunReconciler) queuedRuns(ctx context.Context, _ client.Object) []reconcile.Request {
	var queued []*labsv1.LabRun
	r.runsWhere(ctx, "waiting for the mesh lock", func(run *labsv1.LabRun) bool {
		if run.Status.Phase == labsv1.PhaseQueued && run.Status.ActiveSince != nil {
			queued = append(queued, run)
		}
		return false
	})
	slices.SortStableFunc(queued, func(a, b *labsv1.LabRun) int {
		return cmp.Or(cmp.Compare(a.Status.QueuePosition, b.Status.QueuePosition),
			a.Status.ActiveSince.Compare(b.Status.ActiveSince.Time))
	})
	reqs := make([]reconcile.Request, 0, len(queued))
	for _, run := range queued {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(run)})
	}
	return reqs
}

// lockPoll is how often a queued run looks again without an event, a backstop: every way a ticket ends (its run's
// cleanup, the watchdog after a force-deleted run, a dead ticket dropped by a waiter) is a ticket event that wakes
// the queue.
const lockPoll = 5 * time.Minute
