package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/probe"
)

// Warm observers. A LabSchedule's Verify runs share its per-node observers and its fixtures (the attacker
// ServiceAccount, the non-mesh namespace), kept between runs, so a steady-state scheduled run creates no pod.
// A warm observer calls nothing until a run arms it: the run writes, in an arm ConfigMap of the observer's
// namespace, one key per node with what that node's observer calls (the target's endpoints as they are now), for
// whom (the run's UID, which every attempt then carries) and until when; the observer reads it from a ConfigMap
// volume. A run judges only attempts made under its own arm. When the endpoints change mid-run, the run writes
// the arm again and the observers follow. A one-off LabRun, or a run its schedule did not list in the warm record,
// creates and removes its own observers as before.
//
// The trust is the same as for a run's own observers: a warm observer is believed only if its UID and digest are
// in the schedule's warm record (written by the manager alone) and its container never restarted. The arm
// ConfigMap is in a tenant's namespace and may be edited there; an edit can only make observers call other URLs
// (attempts the run does not count), call nothing (the step ends in Error), or call on another run's behalf (the
// run's own steps then see no attempt of theirs): none makes a verdict pass.

// warmLife is how long a warm observer with this request timeout lives: its activeDeadlineSeconds (the life, two
// timeouts and a minute: probe.Pod) stays a minute under the admission policy's 4h bound. A run that finds it
// ended replaces it.
func warmLife(timeout time.Duration) time.Duration {
	return max(time.Minute, 4*time.Hour-2*timeout-2*time.Minute)
}

// keeper is whose per-node observers and fixtures a run uses: its own (uid is the run's) or, warm, its schedule's.
type keeper struct {
	name, uid string
	schedule  *mesh.RunRef
}

func (k keeper) warm() bool { return k.schedule != nil }

func coldKeeper(run *labsv1.LabRun) keeper { return keeper{name: run.Name, uid: string(run.UID)} }

// keeper is the run's keeper in this pass (loadKeeper): its schedule's, once decided so, else its own.
func (r *LabRunReconciler) keeper(run *labsv1.LabRun) keeper {
	if v, ok := r.keepers.Load(run.UID); ok {
		return v.(keeper)
	}
	return coldKeeper(run)
}

// scheduleOf is the LabSchedule that controls a Verify run, as the run says (which proves nothing by itself:
// decideKeeper checks the schedule's warm record), or nil.
func scheduleOf(run *labsv1.LabRun) *metav1.OwnerReference {
	if run.Spec.Mode != labsv1.ModeVerify {
		return nil
	}
	ref := metav1.GetControllerOf(run)
	if ref == nil || ref.Kind != "LabSchedule" || !strings.HasPrefix(ref.APIVersion, labsv1.GroupVersion.Group+"/") {
		return nil
	}
	return ref
}

// loadKeeper puts in place, for this pass, the keeper the run's trusted record names; done ends it.
func (r *LabRunReconciler) loadKeeper(ctx context.Context, run *labsv1.LabRun) (done func(), err error) {
	if scheduleOf(run) == nil {
		return func() {}, nil
	}
	// What the pass (or decideKeeper in it) put in place goes with it; the record says it again next pass.
	done = func() { r.keepers.Delete(run.UID) }
	r.keepers.Delete(run.UID)
	rec, err := r.Records.Get(ctx, string(run.UID))
	if err != nil || rec == nil || rec.Keeper == nil {
		return done, err
	}
	r.keepers.Store(run.UID, keeper{name: rec.Keeper.Name, uid: rec.Keeper.UID, schedule: rec.Keeper})
	return done, nil
}

func (r *LabRunReconciler) warmStore() mesh.WarmStore {
	return mesh.WarmStore{Client: r.Client, Reader: r.Records.Reader, Namespace: r.Records.Namespace}
}

// decideKeeper decides, once and before the run's first fixture or observer, whether the run uses its schedule's
// warm observers: only when the schedule controller listed it in the schedule's warm record and no other active
// run holds them. The decision goes in the run's trusted record.
func (r *LabRunReconciler) decideKeeper(ctx context.Context, run *labsv1.LabRun) error {
	ref := scheduleOf(run)
	if ref == nil {
		return nil
	}
	// The record is created with the decision (one write, not a create and an update): a pass that dies before
	// saving it decides again, and the warm record's ArmedBy already names this run.
	rec, err := r.recordOrNew(ctx, run)
	if err != nil || rec.KeeperDecided {
		return err
	}
	sched := mesh.RunRef{Namespace: run.Namespace, Name: ref.Name, UID: string(ref.UID)}
	self := mesh.RunRef{Namespace: run.Namespace, Name: run.Name, UID: string(run.UID)}
	w, err := r.warmStore().Update(ctx, sched, func(w *mesh.Warm) (bool, error) {
		if !w.Lists(self.UID) || w.Schedule != sched {
			return false, nil
		}
		if w.ArmedBy != nil && w.ArmedBy.UID != self.UID {
			if busy, err := r.runActive(ctx, *w.ArmedBy); err != nil || busy {
				return false, err
			}
		}
		w.ArmedBy = &self
		w.AddNamespace(run.TargetNamespace())
		w.NonMeshNamespace = mesh.NonMeshNamespace(sched.UID)
		return true, nil
	})
	if err != nil {
		return err
	}
	if w.ArmedBy != nil && *w.ArmedBy == self {
		rec.Keeper = &sched
		r.keepers.Store(run.UID, keeper{name: sched.Name, uid: sched.UID, schedule: &sched})
	}
	rec.KeeperDecided = true
	ctrl.LoggerFrom(ctx).Info("Decided whose observers the run uses", "warm", rec.Keeper != nil, "labSchedule", sched.String())
	return r.Records.Save(ctx, rec)
}

// runActive tells whether the run ref names still exists, unfinished.
func (r *LabRunReconciler) runActive(ctx context.Context, ref mesh.RunRef) (bool, error) {
	other := &labsv1.LabRun{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, other); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	return string(other.UID) == ref.UID && !finished(other), nil
}

// releaseWarm ends the run's hold on its schedule's warm observers: the arms it wrote are deleted (the
// observers go idle) and the warm record no longer names it.
func (r *LabRunReconciler) releaseWarm(ctx context.Context, run *labsv1.LabRun, rec *mesh.Record) error {
	if rec.Keeper == nil {
		return nil
	}
	w, err := r.warmStore().Get(ctx, rec.Keeper.UID)
	if err != nil || w == nil {
		return err
	}
	if w.ArmedBy == nil || w.ArmedBy.UID != string(run.UID) {
		return nil
	}
	for _, ref := range w.Arms {
		memo := string(run.UID) + "/" + ref
		if v, ok := r.arms.Load(memo); ok && v.(armState).disarmed {
			r.arms.Delete(memo) // deleted when its last step ended, by this manager
			continue
		}
		// Written by this run, or by a manager before a restart, or not at all: deleted to be sure.
		ns, name, _ := strings.Cut(ref, "/")
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if err := r.Delete(ctx, cm); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("disarming %s: %w", ref, err)
		}
		r.arms.Delete(memo)
	}
	_, err = r.warmStore().Update(ctx, *rec.Keeper, func(w *mesh.Warm) (bool, error) {
		if w.ArmedBy == nil || w.ArmedBy.UID != string(run.UID) {
			return false, nil
		}
		w.ArmedBy = nil
		return true, nil
	})
	return err
}

// disarm deletes an arm ConfigMap the run wrote: the observers that read it stop calling.
func (r *LabRunReconciler) disarm(ctx context.Context, run *labsv1.LabRun, ns, name string) error {
	memo := string(run.UID) + "/" + ns + "/" + name
	if v, ok := r.arms.Load(memo); !ok || v.(armState).disarmed {
		return nil // not armed by this run (in this manager: a restarted one deletes them at the run's end)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := r.Delete(ctx, cm); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("disarming %s/%s: %w", ns, name, err)
	}
	// Remembered as deleted until the run's end, which then deletes it no more.
	r.arms.Store(memo, armState{disarmed: true})
	return nil
}

// armKey is a node's key in an arm ConfigMap.
func armKey(node string) string { return hash(node)[:6] + ".json" }

// armState is what a run last wrote in an arm ConfigMap, so that it writes again only on a change.
type armState struct {
	until    time.Time
	sum      string
	disarmed bool // deleted when no remaining step needed it
}

// armFleet writes the arm of a caller's warm observers (key, in namespace ns): for each node, the URLs of the
// endpoints it calls now, this run's UID, and the end of the run's budget. It writes only when that changed.
func (r *LabRunReconciler) armFleet(ctx context.Context, run *labsv1.LabRun, k keeper, key, ns string, f fleet) error {
	name := mesh.ArmName(k.uid, key)
	memo := string(run.UID) + "/" + ns + "/" + name
	st := armState{until: r.now().Add(r.observerBudget(run))}
	if v, ok := r.arms.Load(memo); ok && !v.(armState).disarmed {
		st.until = v.(armState).until
	}
	data := map[string]string{}
	for _, node := range f.nodes {
		raw, _ := json.Marshal(probe.Arm{Token: string(run.UID), URLs: f.urls(node, run.Spec.Target.Path), Until: st.until.UTC(),
			Interval: f.pace(run.Spec.Probe.SettleTimeout.Duration, fleetCount(run))})
		data[armKey(node)] = string(raw)
	}
	raw, _ := json.Marshal(data)
	st.sum = hash(string(raw))
	if v, ok := r.arms.Load(memo); ok && v.(armState).sum == st.sum {
		return nil
	}
	if _, err := r.warmStore().Update(ctx, *k.schedule, func(w *mesh.Warm) (bool, error) {
		return w.AddArm(ns, name), nil
	}); err != nil {
		return err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		Labels:      map[string]string{labsv1.LabelArm: "true", labsv1.LabelWarm: k.uid, labsv1.LabelLabRun: k.uid},
		Annotations: map[string]string{labsv1.AnnotationOwner: k.schedule.String()}}, Data: data}
	err := r.Create(ctx, cm)
	if apierrors.IsAlreadyExists(err) {
		// Every node's key is written whole; a key of a node that left stays, read by no observer.
		patch, _ := json.Marshal(map[string]any{"data": data})
		err = r.Patch(ctx, cm, client.RawPatch(types.MergePatchType, patch))
	}
	if err != nil {
		return fmt.Errorf("arming the observers of %s: %w", klog.KObj(cm), err)
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Armed warm observers", "configMap", klog.KObj(cm), "nodes", len(f.nodes), "until", st.until)
	r.arms.Store(memo, st)
	return nil
}

// warmPod builds a schedule's warm observer for node: what it calls comes from its arm, not its command line.
func (r *LabRunReconciler) warmPod(run *labsv1.LabRun, k keeper, o observer, d observerDest) *corev1.Pod {
	ns, sa := r.caller(run, o.caller)
	image := run.Spec.Probe.Image
	if image == "" {
		image = r.ProbeImage
	}
	pod := probe.Pod(probe.PodRequest{
		Name: observerPodName(k, o), Namespace: ns, ServiceAccount: sa, Image: image,
		Labels: map[string]string{
			labsv1.LabelProbe: "true", labsv1.LabelLabRun: k.uid, labsv1.LabelWarm: k.uid,
			labsv1.LabelStep: "observe-" + o.key(),
		},
		Annotations: map[string]string{labsv1.AnnotationOwner: k.schedule.String()},
		NodeName:    o.node, Tolerations: d.tolerations,
		Arm: &probe.ArmVolume{ConfigMap: mesh.ArmName(k.uid, o.key()), Key: armKey(o.node)},
		Options: probe.Options{Observe: true, Timeout: run.Spec.Probe.RequestTimeout.Duration,
			Settle: warmLife(run.Spec.Probe.RequestTimeout.Duration), Interval: observerInterval},
	})
	if d.nodeUID != "" {
		// The node owns it: when the node leaves the cluster, the garbage collector takes its observers.
		pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: o.node, UID: d.nodeUID}}
	}
	return pod
}

// dropGoneNodes deletes the caller's warm observers (key, in ns) on nodes that are no longer in the cluster, and
// forgets them. A node that is only not ready keeps its observer.
func (r *LabRunReconciler) dropGoneNodes(ctx context.Context, b observerBook, k keeper, key, ns string, nodes []string) error {
	pods := &corev1.PodList{}
	if err := r.List(ctx, pods, client.InNamespace(ns),
		client.MatchingLabels{labsv1.LabelWarm: k.uid, labsv1.LabelStep: "observe-" + key}); err != nil {
		return fmt.Errorf("listing warm observers: %w", err)
	}
	for i := range pods.Items {
		pod := &pods.Items[i]
		if slices.Contains(nodes, pod.Spec.NodeName) || b.lookup(pod.Namespace, pod.Name) == nil {
			continue
		}
		err := r.APIReader.Get(ctx, client.ObjectKey{Name: pod.Spec.NodeName}, &corev1.Node{})
		if !apierrors.IsNotFound(err) {
			if err != nil {
				return fmt.Errorf("reading node %s: %w", pod.Spec.NodeName, err)
			}
			continue
		}
		ctrl.LoggerFrom(ctx).Info("Deleting the warm observer of a node that left", "pod", klog.KObj(pod), "node", pod.Spec.NodeName)
		if err := r.replaceObserver(ctx, b, pod); err != nil {
			return err
		}
	}
	return nil
}

// armHint names, for a warm run, the arm a step's observers read, where an attempt missing for this run is to be
// looked for.
func (r *LabRunReconciler) armHint(run *labsv1.LabRun, step labs.Step) string {
	k := r.keeper(run)
	if !k.warm() {
		return ""
	}
	ns, _ := r.caller(run, step.Caller)
	return fmt.Sprintf("; the schedule's warm observers read what to call from ConfigMap %s/%s", ns, mesh.ArmName(k.uid, observerKey(run, step)))
}
