package steps

import (
	"context"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// removeFixtureExecutor removes a fixture the run created: only an object that carries the run's label.
type removeFixtureExecutor struct{ env Fixtures }

func (x removeFixtureExecutor) Execute(ctx context.Context, in *Input) (Outcome, error) {
	observed, kept, err := x.env.RemoveFixture(ctx, in.Run, in.Step.Fixture)
	if err != nil {
		return Errored(err.Error()), nil
	}
	if kept {
		return Concluded(labsv1.VerdictPass, observed, "Kept: the schedule's warm observers call as it"), nil
	}
	return Concluded(labsv1.VerdictPass, observed, "Removed"), nil
}
