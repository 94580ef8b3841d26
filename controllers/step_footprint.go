package controllers

import (
	"context"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
)

// footprintExecutor runs the three steps of the footprint lab (NoSidecars, ZtunnelUsage, SidecarEstimate); they
// read only, and write the run's footprint (labrun_footprint.go).
type footprintExecutor struct{ *LabRunReconciler }

func (r footprintExecutor) execute(ctx context.Context, in *stepInput) (outcome, error) {
	var v labsv1.Verdict
	var observed, msg string
	var err error
	switch in.step.Kind {
	case labs.KindNoSidecars:
		v, observed, msg, err = r.noSidecars(ctx, in.run)
	case labs.KindZtunnelUsage:
		v, observed, msg, err = r.ztunnelUsage(ctx, in.run)
	default:
		v, observed, msg, err = r.sidecarEstimate(ctx, in.run)
	}
	if err != nil {
		return errored(err.Error()), nil
	}
	return concluded(v, observed, msg), nil
}
