package steps

import (
	"context"

	"github.com/ambientlab/labrun-operator/internal/labs"
)

// footprintExecutor runs the three steps of the footprint lab (NoSidecars, ZtunnelUsage, SidecarEstimate); they
// read only, and write the run's footprint.
type footprintExecutor struct{ env Footprint }

func (x footprintExecutor) Execute(ctx context.Context, in *Input) (Outcome, error) {
	measure := x.env.SidecarEstimate
	switch in.Step.Kind {
	case labs.KindNoSidecars:
		measure = x.env.NoSidecars
	case labs.KindZtunnelUsage:
		measure = x.env.ZtunnelUsage
	}
	v, observed, msg, err := measure(ctx, in.Run)
	if err != nil {
		return Errored(err.Error()), nil
	}
	return Concluded(v, observed, msg), nil
}
