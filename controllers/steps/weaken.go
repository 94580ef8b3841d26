package steps

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// changeSetAside is what the set-aside step records as its change.
const changeSetAside = "set aside"

// weakenExecutor makes one journaled change: SetAside (the AuthorizationPolicy out of force) or SetPermissive
// (the PeerAuthentication, or a temporary one the run creates, PERMISSIVE). The original must be in the run's
// trusted record before the change: the first pass only journals (and returns, so the status copy lands too), a
// later pass changes the object.
type weakenExecutor struct{ env Mesh }

func (x weakenExecutor) Execute(ctx context.Context, in *Input) (Outcome, error) {
	run, st, step := in.Run, in.Result, in.Step
	permissive := step.Kind == labs.KindSetPermissive
	ref, change := x.env.PolicyRef(run), changeSetAside
	if permissive {
		ref, change = x.env.PermissiveRef(run), "mode "+mesh.Permissive
	}
	rec, err := x.env.RecordOrNew(ctx, run)
	if err != nil {
		return Outcome{}, err
	}
	entry := rec.Find(ref)
	if entry == nil || entry.Restored {
		// All that can be done before the window opens is: the original read (or the object to create built),
		// the change worked out on paper, the pods it weakens counted.
		create := permissive && run.Spec.Scope != labsv1.ScopeMesh
		fresh, refused, err := x.env.PrepareEntry(ctx, run, rec, ref, create)
		if err != nil {
			return Outcome{}, err
		}
		if refused != "" {
			return Errored(refused), nil
		}
		if permissive {
			blocked, err := x.env.PermissiveBlocked(ctx, run, fresh)
			if err != nil {
				return Outcome{}, err
			}
			if blocked != "" {
				return Concluded(labsv1.VerdictFail, "", blocked), nil
			}
		}
		x.env.CountWeakened(ctx, run, fresh)
		if err := x.env.Journal(ctx, run, rec, fresh); err != nil {
			return Outcome{}, err
		}
		entry = rec.Find(ref)
	}
	if run.Status.Exposure.Since == nil { // the status copy of the journal pass was lost
		since := metav1.NewMicroTime(entry.RecordedAt.Time)
		run.Status.Exposure.Since = &since
	}
	if err := x.env.Fault("before-change:" + step.ID()); err != nil {
		return Outcome{}, err
	}
	changedAt := x.env.Now()
	switch {
	case entry.Created:
		err, change = mesh.Create(ctx, x.env.Writer(), *entry), "created, "+mesh.Permissive
	case permissive:
		err = mesh.SetMode(ctx, x.env.Writer(), *entry, x.env.Owner(run, rec), mesh.Permissive)
	default:
		err = mesh.SetAside(ctx, x.env.Writer(), *entry, x.env.Owner(run, rec))
	}
	if err != nil {
		return Errored(err.Error()), nil
	}
	if err := x.env.Fault("after-change:" + step.ID()); err != nil {
		return Outcome{}, err
	}
	entry.Change = change
	if err := x.env.Records().Save(ctx, rec); err != nil {
		return Outcome{}, err // the change is idempotent: the next pass makes it again and records it
	}
	mesh.Mirror(run, rec)
	x.env.Event(run, corev1.EventTypeWarning, "MeshWeakened", string(st.Lab)+"/"+st.Name, "%s: %s", ref, change)
	if permissive {
		out, err := x.checkPermissive(ctx, run, st, ref)
		out.ChangedAt = changedAt
		return out, err
	}
	out := Concluded(labsv1.VerdictPass, ref.String()+" "+change, st.Change)
	out.ChangedAt = changedAt
	return out, nil
}

// checkPermissive: after the mesh-wide change, plaintext reaches the target only if no namespace or workload
// PeerAuthentication keeps it STRICT. If one does, the lab cannot show what it means to; the step fails naming
// that policy, and the run restores.
func (x weakenExecutor) checkPermissive(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, ref mesh.Ref) (Outcome, error) {
	modes, err := x.env.TargetModes(ctx, run)
	if err != nil {
		return Errored(err.Error()), nil
	}
	if msg := x.env.Interference(ctx, run); msg != "" {
		// Someone undid the change already (before or while the modes were read): that is the finding.
		return Outcome{Verdict: labsv1.VerdictError, Message: msg, SkipRest: SkipInterfered}, nil
	}
	for _, m := range modes {
		if m.Mode == mesh.Strict && m.By != nil && *m.By == ref {
			// The object the run just set PERMISSIVE decides STRICT: someone put it back meanwhile.
			return Outcome{Verdict: labsv1.VerdictError, Message: fmt.Sprintf(
				"interfered: %s mode was changed back to %s by someone else during the step", ref, m.Mode),
				SkipRest: SkipInterfered}, nil
		}
		if m.Mode == mesh.Strict {
			return Concluded(labsv1.VerdictFail, ref.String()+" mode "+mesh.Permissive+"; target pod "+m.Pod+" "+m.String(),
				fmt.Sprintf("%s is PERMISSIVE, but target pod %s stays STRICT: %s", ref, m.Pod, m.ModeDecision)), nil
		}
	}
	return Concluded(labsv1.VerdictPass, ref.String()+" mode "+mesh.Permissive+"; target effective mode "+modes[0].String(), st.Change), nil
}
