package controllers

import (
	"context"
	"time"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// criteria turns the catalogue's evidence into log criteria with the run's SPIFFE identities.
func (r *LabRunReconciler) criteria(ctx context.Context, run *labsv1.LabRun, lab labsv1.LabName, ev *labs.Evidence, since time.Time) (ztunnel.Criteria, error) {
	rejected := ev.PolicyRejected
	c := ztunnel.Criteria{Since: since.Add(-steps.ClockSlack), Until: r.now().Add(steps.ClockSlack), Direction: ev.Direction,
		HBONE: ev.HBONE, PolicyRejected: &rejected, NoSrcIdentity: ev.Plaintext}
	if ev.DeniedByStrict {
		static, converted := r.strictDenials(run)
		c.ErrorAnyOf = []string{"explicitly denied by: " + static, "explicitly denied by: " + converted}
	}
	td := run.Spec.Mesh.TrustDomain
	// ztunnel names the source pod, in the mesh or not: only the observer of the step the evidence is about
	// counts, however close in time another observer's connections were (the bystander's, for one).
	src := planStep(run, lab, ev.Since)
	if steps.PerNode(run, src) {
		c.SrcWorkloadPrefix = observerPrefix(r.keeper(run), observer{caller: src.Caller, node: "any"})
	} else {
		c.SrcWorkload = r.observerName(run, observerOf(src))
	}
	c.SrcNamespace, _ = r.caller(run, src.Caller) // where the observer runs: a tenant's namesake pod is not it
	if ev.SrcCaller != "" {
		ns, sa := r.caller(run, ev.SrcCaller)
		c.SrcIdentity = ztunnel.SPIFFEID(td, ns, sa)
	}
	if ev.DstTarget {
		sa, err := r.targetServiceAccount(ctx, run)
		if err != nil {
			return c, err
		}
		c.DstIdentity = ztunnel.SPIFFEID(td, run.TargetNamespace(), sa)
	}
	return c, nil
}

// planStep is the catalogue's step lab/name of the run's plan (zero when absent).
func planStep(run *labsv1.LabRun, lab labsv1.LabName, name string) labs.Step {
	plan, _ := planOf(run)
	return steps.PlanStep(plan, lab, name)
}
