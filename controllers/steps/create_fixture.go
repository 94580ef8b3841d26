package steps

import (
	"context"
	"fmt"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// createFixtureExecutor creates a temporary object a lab needs (the non-mesh namespace, the attacker
// ServiceAccount), labelled with the run; the step loop runs it ahead of its place.
type createFixtureExecutor struct{ env Fixtures }

func (x createFixtureExecutor) Execute(ctx context.Context, in *Input) (Outcome, error) {
	name, err := x.env.CreateFixture(ctx, in.Run, in.Step.Fixture)
	if err != nil {
		return Errored(fmt.Sprintf("creating %s: %v", name, err)), nil
	}
	return Concluded(labsv1.VerdictPass, name+" created", "Created"), nil
}
