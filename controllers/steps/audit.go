package steps

import (
	"context"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
)

// Auditor proves the policies of the audited namespaces: it derives each policy's probes from its spec
// (internal/authz), runs them from every node as the identities they need, and judges each policy by what its
// probes saw. It changes no policy.
type Auditor interface {
	Clock
	// Audit works out the policies, their probes and their verdicts (written to st.Policies); a step not over yet
	// returns a Waiting error.
	Audit(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step) (Outcome, error)
}

// auditExecutor runs the policy-audit lab's audit step.
type auditExecutor struct{ env Auditor }

func (x auditExecutor) Execute(ctx context.Context, in *Input) (Outcome, error) {
	if in.Result.StartTime == nil {
		return Errored("the audit step has no start time"), nil
	}
	return x.env.Audit(ctx, in.Run, in.Result, in.Step)
}
