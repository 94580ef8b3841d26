package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	ctrl "sigs.k8s.io/controller-runtime"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

const (
	modePermissive = "PERMISSIVE"
	changeSetAside = "set aside"
)

// changeOf says, at planning time, what a step will change (shown in status, also for dry runs).
func (r *LabRunReconciler) changeOf(run *labsv1.LabRun, s labs.Step) string {
	switch s.Kind {
	case labs.KindSetAside:
		return fmt.Sprintf("set %s aside (its selector then matches no workload)", policyRef(run))
	case labs.KindSetPermissive:
		return r.permissiveChange(run)
	case labs.KindRestore:
		return "restore the journaled originals (PeerAuthentication mode STRICT)"
	case labs.KindCreateFixture, labs.KindRemoveFixture:
		verb := "create"
		if s.Kind == labs.KindRemoveFixture {
			verb = "remove"
		}
		return fmt.Sprintf("%s %s", verb, r.fixtureName(run, s.Fixture))
	}
	return ""
}

// checkMode checks the lab guide's starting point: the target's effective mTLS mode is STRICT. The mode comes
// from every PeerAuthentication that applies to the target's pods (workload, namespace, mesh), not from the
// mesh-wide object alone, and the step names the one that decided.
func (r *LabRunReconciler) checkMode(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult) error {
	modes, err := r.targetModes(ctx, run)
	if err != nil {
		r.finishStep(run, st, labsv1.VerdictError, "", err.Error())
		return nil
	}
	for _, m := range modes {
		if m.Mode != mesh.Strict {
			r.finishStep(run, st, labsv1.VerdictFail, "effective mode "+m.String(), fmt.Sprintf(
				"The target pod %s is %s, not STRICT: plaintext may reach it", m.pod, m.ModeDecision))
			return nil
		}
	}
	r.finishStep(run, st, labsv1.VerdictPass, "effective mode "+modes[0].String(),
		fmt.Sprintf("Every target pod (%d) is STRICT", len(modes)))
	return nil
}

// podMode is the effective mode of one target pod.
type podMode struct {
	mesh.ModeDecision
	pod string
}

// targetModes computes the effective mTLS mode of each of the target Service's pods on the target port.
func (r *LabRunReconciler) targetModes(ctx context.Context, run *labsv1.LabRun) ([]podMode, error) {
	svc, pods, err := r.targetPods(ctx, run)
	if err != nil {
		return nil, err
	}
	pas, err := mesh.PeerAuthentications(ctx, r.APIReader, r.meshConfig().RootNamespace, run.TargetNamespace())
	if err != nil {
		return nil, err
	}
	var out []podMode
	for i := range pods {
		port := containerPort(svc, run.Spec.Target.Port, &pods[i])
		d := mesh.EffectiveMode(pas, r.meshConfig().RootNamespace, run.TargetNamespace(), pods[i].Labels, port)
		out = append(out, podMode{ModeDecision: d, pod: pods[i].Name})
	}
	return out, nil
}

// containerPort is the pod port behind the Service port: PeerAuthentication's port-level settings name container
// ports (ISTIO-FACTS.md).
func containerPort(svc *corev1.Service, port int32, pod *corev1.Pod) int32 {
	for _, p := range svc.Spec.Ports {
		if p.Port != port {
			continue
		}
		switch {
		case p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal != 0:
			return p.TargetPort.IntVal
		case p.TargetPort.Type == intstr.String && p.TargetPort.StrVal != "":
			for _, c := range pod.Spec.Containers {
				for _, cp := range c.Ports {
					if cp.Name == p.TargetPort.StrVal {
						return cp.ContainerPort
					}
				}
			}
		}
	}
	return port
}

func orUnset(mode string) string {
	if mode == "" {
		return "UNSET"
	}
	return mode
}

// weaken makes one journaled change. The original must be in the run's trusted record before the change: the
// first pass only journals (and returns, so the status copy lands too), a later pass changes the object.
func (r *LabRunReconciler) weaken(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step) error {
	ref, change := policyRef(run), changeSetAside
	if step.Kind == labs.KindSetPermissive {
		ref, change = r.permissiveRef(run), "mode "+modePermissive
	}
	rec, err := r.recordOrNew(ctx, run)
	if err != nil {
		return err
	}
	entry := rec.Find(ref)
	if entry == nil || entry.Restored {
		// All that can be done before the window opens is: the original read (or the object to create built),
		// the change worked out on paper, the pods it weakens counted.
		create := step.Kind == labs.KindSetPermissive && scopeOf(run) != labsv1.ScopeMesh
		fresh, done, err := r.prepareEntry(ctx, run, st, rec, ref, create)
		if err != nil || done {
			return err
		}
		if step.Kind == labs.KindSetPermissive {
			if blocked, err := r.permissiveBlocked(ctx, run, fresh); err != nil || blocked != "" {
				if err == nil {
					r.finishStep(run, st, labsv1.VerdictFail, "", blocked)
				}
				return err
			}
		}
		r.countWeakened(ctx, run, fresh)
		if err := r.journal(ctx, run, rec, fresh); err != nil {
			return err
		}
		entry = rec.Find(ref)
	}
	if run.Status.Exposure.Since == nil { // the status copy of the journal pass was lost
		since := metav1.NewMicroTime(entry.RecordedAt.Time)
		run.Status.Exposure.Since = &since
	}
	if err := r.fault("before-change:" + step.ID()); err != nil {
		return err
	}
	switch {
	case entry.Created:
		err, change = mesh.Create(ctx, r.Client, *entry), "created, "+modePermissive
	case step.Kind == labs.KindSetPermissive:
		err = mesh.SetMode(ctx, r.Client, *entry, r.owner(run, rec), modePermissive)
	default:
		err = mesh.SetAside(ctx, r.Client, *entry, r.owner(run, rec))
	}
	if err != nil {
		r.finishStep(run, st, labsv1.VerdictError, "", err.Error())
		return nil
	}
	if err := r.fault("after-change:" + step.ID()); err != nil {
		return err
	}
	entry.Change = change
	if err := r.Records.Save(ctx, rec); err != nil {
		return err // the change is idempotent: the next pass makes it again and records it
	}
	mirrorJournal(run, rec)
	r.event(run, corev1.EventTypeWarning, "MeshWeakened", string(st.Lab)+"/"+st.Name, "%s: %s", ref, change)
	if step.Kind == labs.KindSetPermissive {
		return r.checkPermissive(ctx, run, st, ref)
	}
	r.finishStep(run, st, labsv1.VerdictPass, ref.String()+" "+change, st.Change)
	return nil
}

// checkPermissive: after the mesh-wide change, plaintext reaches the target only if no namespace or workload
// PeerAuthentication keeps it STRICT. If one does, the lab cannot show what it means to; the step fails naming
// that policy, and the run restores.
func (r *LabRunReconciler) checkPermissive(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, ref mesh.Ref) error {
	modes, err := r.targetModes(ctx, run)
	if err != nil {
		r.finishStep(run, st, labsv1.VerdictError, "", err.Error())
		return nil
	}
	if r.interfered(ctx, run, st) {
		return nil // someone undid the change already (before or while the modes were read): that is the finding
	}
	for _, m := range modes {
		if m.Mode == mesh.Strict && m.By != nil && *m.By == ref {
			// The object the run just set PERMISSIVE decides STRICT: someone put it back meanwhile.
			r.finishStep(run, st, labsv1.VerdictError, "", fmt.Sprintf(
				"interfered: %s mode was changed back to %s by someone else during the step", ref, m.Mode))
			skipRemaining(run, "Not run: the mesh was changed by someone else during the run")
			return nil
		}
		if m.Mode == mesh.Strict {
			r.finishStep(run, st, labsv1.VerdictFail, ref.String()+" mode "+modePermissive+"; target pod "+m.pod+" "+m.String(),
				fmt.Sprintf("%s is PERMISSIVE, but target pod %s stays STRICT: %s", ref, m.pod, m.ModeDecision))
			return nil
		}
	}
	r.finishStep(run, st, labsv1.VerdictPass, ref.String()+" mode "+modePermissive+"; target effective mode "+modes[0].String(), st.Change)
	return nil
}

// prepareEntry reads the original of ref (or, for an object the run creates, builds it). done is true when the
// step ended instead: the object cannot be journaled.
func (r *LabRunReconciler) prepareEntry(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, rec *mesh.Record, ref mesh.Ref, create bool) (labsv1.JournalEntry, bool, error) {
	now := r.now()
	if create {
		if unowned, err := existsUnowned(ctx, r.APIReader, ref, string(run.UID)); err != nil || unowned {
			if err != nil {
				return labsv1.JournalEntry{}, false, err
			}
			r.finishStep(run, st, labsv1.VerdictError, "", ref.String()+" already exists and is not this run's: nothing was changed")
			return labsv1.JournalEntry{}, true, nil
		}
		e, err := r.temporaryEntry(ctx, run, r.owner(run, rec), now)
		return e, false, err
	}
	e, err := mesh.Snapshot(ctx, r.APIReader, ref, metav1.NewTime(now))
	var other *mesh.ErrChangedByOther
	if errors.As(err, &other) {
		r.finishStep(run, st, labsv1.VerdictError, "", err.Error())
		return e, true, nil
	}
	return e, false, err
}

// journal records the original in the run's trusted record (a copy goes to status) and opens the exposure window;
// the change follows in the same pass.
func (r *LabRunReconciler) journal(ctx context.Context, run *labsv1.LabRun, rec *mesh.Record, entry labsv1.JournalEntry) error {
	now := r.now()
	if len(rec.Pending()) == 0 || rec.RestoreBy == nil {
		// A new exposure window: what is left of maxExposure from now is the deadline the watchdog enforces.
		used := time.Duration(0)
		if d := run.Status.Exposure.Duration; d != nil {
			used = d.Duration
		}
		by := metav1.NewTime(now.Add(r.exposureBudget(run) - used))
		rec.RestoreBy = &by
	}
	entry.RecordedAt = metav1.NewTime(now)
	rec.Put(entry)
	if err := r.Records.Save(ctx, rec); err != nil {
		return err
	}
	mirrorJournal(run, rec)
	if run.Status.Exposure.Since == nil {
		since := metav1.NewMicroTime(now)
		run.Status.Exposure.Since = &since
	}
	ctrl.LoggerFrom(ctx).Info("Journaled original", "object", mesh.RefOf(entry).String())
	return nil
}

// recordOrNew is the run's trusted record, or a new one (not yet saved) when it has none.
func (r *LabRunReconciler) recordOrNew(ctx context.Context, run *labsv1.LabRun) (*mesh.Record, error) {
	rec, err := r.Records.Get(ctx, string(run.UID))
	if err != nil || rec != nil {
		return rec, err
	}
	return &mesh.Record{
		Run:             mesh.RunRef{Namespace: run.Namespace, Name: run.Name, UID: string(run.UID)},
		TargetNamespace: run.TargetNamespace(), NonMeshNamespace: nonMeshNamespace(run),
	}, nil
}

// mirrorJournal copies the trusted record into status, for people. Nothing reads it back.
func mirrorJournal(run *labsv1.LabRun, rec *mesh.Record) {
	run.Status.Journal = nil
	for _, e := range rec.Entries {
		run.Status.Journal = append(run.Status.Journal, *e.DeepCopy())
	}
}

func (r *LabRunReconciler) owner(run *labsv1.LabRun, rec *mesh.Record) mesh.Owner {
	restoreBy := r.now().Add(r.exposureBudget(run))
	if rec.RestoreBy != nil {
		restoreBy = rec.RestoreBy.Time
	}
	return mesh.Owner{Namespace: run.Namespace, Name: run.Name, UID: string(run.UID),
		RestoreBy: restoreBy.UTC().Format(time.RFC3339)}
}

// setRestoredCondition says the mesh is back, warning when the PeerAuthentication was not STRICT to begin with
// (the run leaves it STRICT all the same).
func (r *LabRunReconciler) setRestoredCondition(run *labsv1.LabRun) {
	if len(run.Status.Journal) == 0 {
		setMeshRestored(run, metav1.ConditionTrue, labsv1.ReasonUnchanged, "The run changed nothing in the mesh", r.now())
		return
	}
	for _, e := range run.Status.Journal {
		if e.Kind == mesh.KindPeerAuthentication && !e.Created && mesh.OriginalMode(e) != mesh.Strict {
			setMeshRestored(run, metav1.ConditionTrue, labsv1.ReasonWasNotStrict, fmt.Sprintf(
				"Restored; %s was %s before the run and is now STRICT", mesh.RefOf(e), orUnset(mesh.OriginalMode(e))), r.now())
			return
		}
	}
	setMeshRestored(run, metav1.ConditionTrue, labsv1.ReasonRestored,
		"Every changed object is back as found, PeerAuthentication STRICT", r.now())
}

// exposureBudget is spec.maxExposure.
func (r *LabRunReconciler) exposureBudget(run *labsv1.LabRun) time.Duration {
	if run.Spec.MaxExposure == nil {
		return 2 * time.Minute
	}
	return run.Spec.MaxExposure.Duration
}

// exposureLeft is what remains of maxExposure while the mesh is weakened.
func (r *LabRunReconciler) exposureLeft(run *labsv1.LabRun) (time.Duration, bool) {
	since := run.Status.Exposure.Since
	if since == nil {
		return 0, false
	}
	used := r.now().Sub(since.Time)
	if d := run.Status.Exposure.Duration; d != nil {
		used += d.Duration
	}
	return r.exposureBudget(run) - used, true
}

// exposureExceeded fails the current step when the mesh has been weak for maxExposure; the run then restores.
func (r *LabRunReconciler) exposureExceeded(run *labsv1.LabRun, st *labsv1.StepResult) bool {
	left, open := r.exposureLeft(run)
	if !open || left > 0 {
		return false
	}
	msg := fmt.Sprintf("maxExposure (%s) ran out: the mesh is restored at once", r.exposureBudget(run))
	if st.StartTime == nil {
		now := metav1.NewMicroTime(r.now())
		st.StartTime = &now
	}
	r.finishStep(run, st, labsv1.VerdictFail, "", msg)
	skipRemaining(run, "Not run: "+msg)
	run.Status.Reason, run.Status.Message = labsv1.ReasonExposureExceeded, msg
	return true
}

// closeExposure adds the weakened time to the total once nothing is changed any more.
func (r *LabRunReconciler) closeExposure(run *labsv1.LabRun) { r.closeExposureAt(run, r.now()) }

// closeExposureAt closes the window at the time the last change was put back.
func (r *LabRunReconciler) closeExposureAt(run *labsv1.LabRun, at time.Time) {
	since := run.Status.Exposure.Since
	if since == nil {
		return
	}
	for _, e := range run.Status.Journal {
		if !e.Restored {
			return
		}
	}
	window := at.Sub(since.Time).Round(time.Millisecond)
	total := window
	if d := run.Status.Exposure.Duration; d != nil {
		total += d.Duration
	}
	x := &run.Status.Exposure
	addPodSeconds(x, window)
	x.Duration, x.Since = &metav1.Duration{Duration: total}, nil
}

// interfered checks that the run's changes still stand; if someone else (e.g. Argo CD self-heal) changed a
// weakened object, the current step errors with an "interfered" message and the run goes to restore.
func (r *LabRunReconciler) interfered(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult) bool {
	rec, err := r.Records.Get(ctx, string(run.UID))
	if err != nil || rec == nil {
		return false
	}
	for _, e := range rec.Pending() {
		if e.Change == "" {
			continue
		}
		want := ""
		if e.Kind == mesh.KindPeerAuthentication {
			want = modePermissive
		}
		msg, err := mesh.Interference(ctx, r.APIReader, *e, string(run.UID), want)
		if err != nil || msg == "" {
			continue
		}
		if st.StartTime == nil {
			now := metav1.NewMicroTime(r.now())
			st.StartTime = &now
		}
		r.finishStep(run, st, labsv1.VerdictError, "", "interfered: "+msg)
		skipRemaining(run, "Not run: the mesh was changed by someone else during the run")
		return true
	}
	return false
}
