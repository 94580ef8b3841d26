package controllers

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
)

// Active runs. The manager works on at most MaxActiveRuns runs at once (--max-active-runs): every active run
// holds probe pods, reads logs and writes status, so their number is what the manager's memory grows with. The
// others wait Queued after their preflight, in the order they were created (creationTimestamp, set by the API
// server, then namespace and name; fairly between namespaces), holding nothing: no pod, no lock, no poll. A run is let in when fewer runs
// are active than the bound and fewer runs wait ahead of it than slots are free; the end of any active run wakes
// the waiters.

// slotBook remembers the runs this reconciler let in until the cache shows them active, so two passes in quick
// succession never count the same free slot twice. Each reconciler has its own: one manager's admissions are not
// another's (tests start several managers in one process, one after another).
type slotBook struct {
	mu       sync.Mutex
	admitted map[types.UID]admission
}

// admittedFor is how long an admission counts while the cache does not show the run active yet.
const admittedFor = time.Minute

type admission struct {
	namespace string
	at        time.Time
}

// reconcileSlot lets a run that passed its preflight in among the active runs, or keeps it Queued with its place.
func (r *LabRunReconciler) reconcileSlot(ctx context.Context, run *labsv1.LabRun) error {
	if run.Status.Phase != labsv1.PhaseQueued || run.Status.ActiveSince != nil {
		return nil
	}
	ok, ahead, active, recheck, err := r.takeSlot(ctx, run)
	if err != nil {
		return err
	}
	if ok {
		now := metav1.NewTime(r.now())
		run.Status.ActiveSince = &now
		run.Status.QueuePosition = 0
		run.Status.Phase, run.Status.Reason = labsv1.PhaseRunning, labsv1.ReasonRunning
		run.Status.Message = "Preflight passed"
		return nil
	}
	run.Status.Reason = labsv1.ReasonWaitingForSlot
	run.Status.QueuePosition = int32(ahead + 1)
	run.Status.Message = fmt.Sprintf("Waiting for one of the %d active runs to end (--max-active-runs %d): %d queued ahead",
		active, r.MaxActiveRuns, ahead)
	// The end of an active run wakes the waiters; a slot held only by an admission not seen yet frees itself
	// when that admission lapses, which no event announces.
	return steps.WaitFor("an active-run slot", min(lockPoll, recheck))
}

// takeSlot decides, one decision at a time, whether run may become active; else how many wait ahead of it and
// how many are active. Waiters are served fairly between namespaces: a run's turn is the number of runs of its
// namespace active or waiting before it, so one tenant's hundred runs take turns with another team's one rather
// than all going first; within a namespace, and between equal turns, the earlier created goes first. recheck is
// when to look again without an event: when the first admission counted as active lapses.
func (r *LabRunReconciler) takeSlot(ctx context.Context, run *labsv1.LabRun) (ok bool, ahead, active int, recheck time.Duration, err error) {
	recheck = lockPoll
	if r.MaxActiveRuns <= 0 {
		return true, 0, 0, recheck, nil
	}
	slots := &r.slots
	slots.mu.Lock()
	defer slots.mu.Unlock()
	if slots.admitted == nil {
		slots.admitted = map[types.UID]admission{}
	}
	if _, ok := slots.admitted[run.UID]; ok {
		return true, 0, 0, recheck, nil // let in by an earlier pass whose status write is not seen yet
	}
	runs := &labsv1.LabRunList{}
	if err := r.List(ctx, runs, client.UnsafeDisableDeepCopy); err != nil {
		return false, 0, 0, recheck, fmt.Errorf("listing LabRuns: %w", err)
	}
	activeIn := map[string]int{}
	seen := map[types.UID]bool{}
	var waiters []*labsv1.LabRun
	for i := range runs.Items {
		other := &runs.Items[i]
		switch {
		case finished(other):
		case other.Status.ActiveSince != nil:
			activeIn[other.Namespace]++
			seen[other.UID] = true
			active++
		case slots.admitted[other.UID] != (admission{}):
			// let in already; counted below
		case waitingForSlot(other) || other.UID == run.UID:
			waiters = append(waiters, other)
		}
	}
	for uid, a := range slots.admitted {
		left := a.at.Add(admittedFor).Sub(r.now())
		if seen[uid] || left < 0 {
			delete(slots.admitted, uid) // the cache has it now (or it is long gone)
			continue
		}
		recheck = min(recheck, left+10*time.Millisecond)
		activeIn[a.namespace]++
		active++
	}
	sort.Slice(waiters, func(i, j int) bool { return arrivedBefore(waiters[i], waiters[j]) })
	turn := make(map[types.UID]int, len(waiters))
	for _, w := range waiters {
		turn[w.UID] = activeIn[w.Namespace]
		activeIn[w.Namespace]++
	}
	for _, w := range waiters {
		if w.UID != run.UID && (turn[w.UID] < turn[run.UID] || (turn[w.UID] == turn[run.UID] && arrivedBefore(w, run))) {
			ahead++
		}
	}
	if active+ahead >= r.MaxActiveRuns {
		return false, ahead, active, recheck, nil
	}
	slots.admitted[run.UID] = admission{namespace: run.Namespace, at: r.now()}
	return true, ahead, active, recheck, nil
}

func waitingForSlot(run *labsv1.LabRun) bool {
	return run.Status.Phase == labsv1.PhaseQueued && run.Status.ActiveSince == nil && run.DeletionTimestamp.IsZero()
}

// arrivedBefore orders runs by creation (the API server's clock), then by namespace and name.
func arrivedBefore(a, b *labsv1.LabRun) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// slotWaiters wakes the runs waiting for a slot when an active run ends.
func (r *LabRunReconciler) slotWaiters(ctx context.Context, _ client.Object) []reconcile.Request {
	if r.MaxActiveRuns <= 0 {
		return nil
	}
	return r.runsWhere(ctx, "waiting for an active-run slot", waitingForSlot)
}

// runEnded passes the events of a LabRun ending (finished, or deleted).
var runEnded = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return true },
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, okO := e.ObjectOld.(*labsv1.LabRun)
		n, okN := e.ObjectNew.(*labsv1.LabRun)
		return okO && okN && !finished(o) && finished(n)
	},
}
