package controllers

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// createFixtureExecutor creates a temporary object a lab needs (the non-mesh namespace, the attacker
// ServiceAccount), labelled with the run; the step loop runs it ahead of its place (prepare).
type createFixtureExecutor struct{ *LabRunReconciler }

func (r createFixtureExecutor) execute(ctx context.Context, in *stepInput) (outcome, error) {
	run, f := in.run, in.step.Fixture
	err := r.Create(ctx, fixture(run, f))
	if apierrors.IsAlreadyExists(err) {
		// Created by an earlier pass of this run (the names are the run's own).
		err = nil
	}
	if err != nil {
		return errored(fmt.Sprintf("creating %s: %v", r.fixtureName(run, f), err)), nil
	}
	return concluded(labsv1.VerdictPass, r.fixtureName(run, f)+" created", "Created"), nil
}
