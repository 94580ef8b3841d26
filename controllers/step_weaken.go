package controllers

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// weakenExecutor makes one journaled change: SetAside (the AuthorizationPolicy out of force) or SetPermissive
// (the PeerAuthentication, or a temporary one the run creates, PERMISSIVE). The original must be in the run's
// trusted record before the change: the first pass only journals (and returns, so the status copy lands too), a
// later pass changes the object.
type weakenExecutor struct{ *LabRunReconciler }

func (r weakenExecutor) execute(ctx context.Context, in *stepInput) (outcome, error) {
	run, st, step := in.run, in.result, in.step
	ref, change := policyRef(run), changeSetAside
	if step.Kind == labs.KindSetPermissive {
		ref, change = r.permissiveRef(run), "mode "+modePermissive
	}
	rec, err := r.recordOrNew(ctx, run)
	if err != nil {
		return outcome{}, err
	}
	entry := rec.Find(ref)
	if entry == nil || entry.Restored {
		// All that can be done before the window opens is: the original read (or the object to create built),
		// the change worked out on paper, the pods it weakens counted.
		create := step.Kind == labs.KindSetPermissive && scopeOf(run) != labsv1.ScopeMesh
		fresh, refused, err := r.prepareEntry(ctx, run, rec, ref, create)
		if err != nil {
			return outcome{}, err
		}
		if refused != "" {
			return errored(refused), nil
		}
		if step.Kind == labs.KindSetPermissive {
			blocked, err := r.permissiveBlocked(ctx, run, fresh)
			if err != nil {
				return outcome{}, err
			}
			if blocked != "" {
				return concluded(labsv1.VerdictFail, "", blocked), nil
			}
		}
		r.countWeakened(ctx, run, fresh)
		if err := r.journal(ctx, run, rec, fresh); err != nil {
			return outcome{}, err
		}
		entry = rec.Find(ref)
	}
	if run.Status.Exposure.Since == nil { // the status copy of the journal pass was lost
		since := metav1.NewMicroTime(entry.RecordedAt.Time)
		run.Status.Exposure.Since = &since
	}
	if err := r.fault("before-change:" + step.ID()); err != nil {
		return outcome{}, err
	}
	changedAt := r.now()
	switch {
	case entry.Created:
		err, change = mesh.Create(ctx, r.Client, *entry), "created, "+modePermissive
	case step.Kind == labs.KindSetPermissive:
		err = mesh.SetMode(ctx, r.Client, *entry, r.owner(run, rec), modePermissive)
	default:
		err = mesh.SetAside(ctx, r.Client, *entry, r.owner(run, rec))
	}
	if err != nil {
		return errored(err.Error()), nil
	}
	if err := r.fault("after-change:" + step.ID()); err != nil {
		return outcome{}, err
	}
	entry.Change = change
	if err := r.Records.Save(ctx, rec); err != nil {
		return outcome{}, err // the change is idempotent: the next pass makes it again and records it
	}
	mirrorJournal(run, rec)
	r.event(run, corev1.EventTypeWarning, "MeshWeakened", string(st.Lab)+"/"+st.Name, "%s: %s", ref, change)
	if step.Kind == labs.KindSetPermissive {
		out, err := r.checkPermissive(ctx, run, st, ref)
		out.changedAt = changedAt
		return out, err
	}
	out := concluded(labsv1.VerdictPass, ref.String()+" "+change, st.Change)
	out.changedAt = changedAt
	return out, nil
}

// checkPermissive: after the mesh-wide change, plaintext reaches the target only if no namespace or workload
// PeerAuthentication keeps it STRICT. If one does, the lab cannot show what it means to; the step fails naming
// that policy, and the run restores.
func (r weakenExecutor) checkPermissive(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, ref mesh.Ref) (outcome, error) {
	modes, err := r.targetModes(ctx, run)
	if err != nil {
		return errored(err.Error()), nil
	}
	if msg := r.interference(ctx, run); msg != "" {
		// Someone undid the change already (before or while the modes were read): that is the finding.
		return outcome{verdict: labsv1.VerdictError, message: msg, skipRest: skipInterfered}, nil
	}
	for _, m := range modes {
		if m.Mode == mesh.Strict && m.By != nil && *m.By == ref {
			// The object the run just set PERMISSIVE decides STRICT: someone put it back meanwhile.
			return outcome{verdict: labsv1.VerdictError, message: fmt.Sprintf(
				"interfered: %s mode was changed back to %s by someone else during the step", ref, m.Mode),
				skipRest: skipInterfered}, nil
		}
		if m.Mode == mesh.Strict {
			return concluded(labsv1.VerdictFail, ref.String()+" mode "+modePermissive+"; target pod "+m.pod+" "+m.String(),
				fmt.Sprintf("%s is PERMISSIVE, but target pod %s stays STRICT: %s", ref, m.pod, m.ModeDecision)), nil
		}
	}
	return concluded(labsv1.VerdictPass, ref.String()+" mode "+modePermissive+"; target effective mode "+modes[0].String(), st.Change), nil
}

// prepareEntry reads the original of ref (or, for an object the run creates, builds it). refused says why the
// object cannot be journaled (the step then errs, nothing changed).
func (r weakenExecutor) prepareEntry(ctx context.Context, run *labsv1.LabRun, rec *mesh.Record, ref mesh.Ref, create bool) (labsv1.JournalEntry, string, error) {
	now := r.now()
	if create {
		if unowned, err := existsUnowned(ctx, r.APIReader, ref, string(run.UID)); err != nil || unowned {
			if err != nil {
				return labsv1.JournalEntry{}, "", err
			}
			return labsv1.JournalEntry{}, ref.String() + " already exists and is not this run's: nothing was changed", nil
		}
		e, err := r.temporaryEntry(ctx, run, r.owner(run, rec), now)
		return e, "", err
	}
	e, err := mesh.Snapshot(ctx, r.APIReader, ref, metav1.NewTime(now))
	var other *mesh.ErrChangedByOther
	if errors.As(err, &other) {
		return e, err.Error(), nil
	}
	return e, "", err
}
