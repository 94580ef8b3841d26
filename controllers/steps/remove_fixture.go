package steps

import (
	"context"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// removeFixtureExecutor removes a fixture the run created: only an object that carries the run's label.
type removeFixtureExecutor struct{ env Fixtures }

func (x removeFixtureExecutor) Execute(ctx context.Context, in *Input) (Outcome, error) {
	name, err := x.env.RemoveFixture(ctx, in.Run, in.Step.Fixture)
	if err != nil {
		return Errored(err.Error()), nil
	}
	return Concluded(labsv1.VerdictPass, name+" removed", "Removed"), nil
}
