package controllers

import (
	"context"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// meshConfig is the reconciler's mesh.Config with Istio's defaults filled in.
func (r *LabRunReconciler) meshConfig() mesh.Config { return r.Mesh.WithDefaults() }

// preflightMesh refuses a run whose spec names another root namespace or ztunnel than the operator's.
func (r *LabRunReconciler) preflightMesh(_ context.Context, run *labsv1.LabRun) error {
	if msg := r.meshConfig().Mismatch(&run.Spec.Mesh); msg != "" {
		return stalled(labsv1.ReasonPreflightFailed, "%s", msg)
	}
	return nil
}
