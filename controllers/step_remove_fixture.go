package controllers

import (
	"context"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// removeFixtureExecutor removes a fixture the run created: only an object that carries the run's label.
type removeFixtureExecutor struct{ *LabRunReconciler }

func (r removeFixtureExecutor) execute(ctx context.Context, in *stepInput) (outcome, error) {
	run, f := in.run, in.step.Fixture
	if err := r.deleteOwned(ctx, run, fixture(run, f)); err != nil {
		return errored(err.Error()), nil
	}
	return concluded(labsv1.VerdictPass, r.fixtureName(run, f)+" removed", "Removed"), nil
}
