package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	ctrl "sigs.k8s.io/controller-runtime"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
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

// targetModes computes the effective mTLS mode of each of the target Service's pods on the target port.
func (r *LabRunReconciler) targetModes(ctx context.Context, run *labsv1.LabRun) ([]steps.PodMode, error) {
	svc, pods, err := r.targetPods(ctx, run)
	if err != nil {
		return nil, err
	}
	pas, err := mesh.PeerAuthentications(ctx, r.APIReader, r.meshConfig().RootNamespace, run.TargetNamespace())
	if err != nil {
		return nil, err
	}
	var out []steps.PodMode
	for i := range pods {
		port := containerPort(svc, run.Spec.Target.Port, &pods[i])
		d := mesh.EffectiveMode(pas, r.meshConfig().RootNamespace, run.TargetNamespace(), pods[i].Labels, port)
		out = append(out, steps.PodMode{ModeDecision: d, Pod: pods[i].Name})
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
	mesh.Mirror(run, rec)
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
		TargetNamespace: run.TargetNamespace(), NonMeshNamespace: nonMeshNamespace(coldKeeper(run)),
	}, nil
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
	r.markStarted(st)
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

// interference checks that the run's changes still stand: if someone else (e.g. Argo CD self-heal) changed a
// weakened object, it says how (an "interfered: …" message, for the current step's Error), else "".
func (r *LabRunReconciler) interference(ctx context.Context, run *labsv1.LabRun) string {
	rec, err := r.Records.Get(ctx, string(run.UID))
	if err != nil || rec == nil {
		return ""
	}
	for _, e := range rec.Pending() {
		if e.Change == "" {
			continue
		}
		want := ""
		if e.Kind == mesh.KindPeerAuthentication {
			want = mesh.Permissive
		}
		if msg, err := mesh.Interference(ctx, r.APIReader, *e, string(run.UID), want); err == nil && msg != "" {
			return "interfered: " + msg
		}
	}
	return ""
}
