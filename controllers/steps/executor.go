// Package steps holds the step executors: one per kind of step (labs.Kind), one file each. An executor carries
// out its step and says what it concluded; the LabRun controller's step loop (controllers.reconcileSteps) is the
// only place that writes a verdict, emits the step's Event and counts its metric.
//
// An executor reaches the cluster only through the part of Env its kind is given (env.go): a probe step reads
// observers and logs, and cannot change the mesh; only the kinds that change the mesh are given Mesh; only the
// footprint kinds are given Footprint. The LabRun controller implements Env.
package steps

import (
	"context"
	"time"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
)

// Executor carries out one kind of step.
//
// Execute returns, as its result contract:
//   - an Outcome with a Verdict, and a nil error: the step is over; the step loop writes the verdict, its observed
//     text and message, and, with SkipRest, skips the steps after it;
//   - no verdict and a *Waiting error (WaitFor): the step is not over; the pass ends and comes back on a watched
//     event or at the error's deadline;
//   - no verdict and an error wrapping ErrAborted (fault injection): the pass ends and writes nothing, as if the
//     manager died there;
//   - no verdict and an error the controller reads as final (an input that cannot work, an API refusal for
//     good): the run fails;
//   - no verdict and any other error: transient; the pass ends and is retried with backoff, within the step's
//     budget;
//   - no verdict and a nil error: the step has done what it can this pass and runs again in the next.
//
// What an executor may write: its own result fields (in.Result: evidence, attempts, coverage, …, never its
// verdict, observed text, message or times); the mesh state (the trusted record, the run's journal copy and
// exposure) only for the kinds given Mesh; the footprint only for the footprint kinds. in.Run and in.Plan are
// read only otherwise.
type Executor interface {
	Execute(ctx context.Context, in *Input) (Outcome, error)
}

// Input is what a step executor is handed.
type Input struct {
	Run    *labsv1.LabRun
	Step   labs.Step
	Plan   []labs.Step // the run's plan, worked out once per pass
	Result *labsv1.StepResult
}

// Outcome is what an executor concluded. The zero Outcome is no verdict yet.
type Outcome struct {
	Verdict           labsv1.Verdict
	Observed, Message string
	// SkipRest, when set, skips every step after this one with this message (the mesh was changed by someone
	// else: nothing after it would be judged in the mesh it was meant for).
	SkipRest string
	// ChangedAt, for a step that changed the mesh, is when it began writing its change: the step's completion
	// time, from which the next probe counts (and before which seeing the new behaviour is "early"). The step
	// itself goes on after the write (it reads the change back, records it), and a probe that saw the change
	// take effect within that time must not be judged early.
	ChangedAt time.Time
}

// Concluded is an Outcome with a verdict.
func Concluded(v labsv1.Verdict, observed, msg string) Outcome {
	return Outcome{Verdict: v, Observed: observed, Message: msg}
}

// Errored is an Error verdict saying why.
func Errored(msg string) Outcome { return Outcome{Verdict: labsv1.VerdictError, Message: msg} }

// SkipInterfered is what the steps after an interfered one get.
const SkipInterfered = "Not run: the mesh was changed by someone else during the run"

// For is the executor of a kind of step, working through env; false for a kind that has none. Each kind is
// handed the narrowest part of env it needs.
func For(kind labs.Kind, env Env) (Executor, bool) {
	switch kind {
	case labs.KindProbe:
		return probeExecutor{env}, true
	case labs.KindCheckMode:
		return checkModeExecutor{env}, true
	case labs.KindSetAside, labs.KindSetPermissive:
		return weakenExecutor{env}, true
	case labs.KindRestore:
		return restoreExecutor{env}, true
	case labs.KindCreateFixture:
		return createFixtureExecutor{env}, true
	case labs.KindRemoveFixture:
		return removeFixtureExecutor{env}, true
	case labs.KindEvidence:
		return evidenceExecutor{env}, true
	case labs.KindNoSidecars, labs.KindZtunnelUsage, labs.KindSidecarEstimate:
		return footprintExecutor{env}, true
	case labs.KindAudit:
		return auditExecutor{env}, true
	}
	return nil, false
}
