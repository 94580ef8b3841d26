package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// clockSlack widens the evidence window for clock skew between the nodes and the manager.
const clockSlack = time.Second

// evidence looks for the access-log lines the step needs in its time window: from the start of the step it
// refers to until now. ztunnel writes a line when a connection ends, so missing lines are re-read for a
// bounded time before the step fails. Unreachable logs are an Error, never a Pass.
func (r *LabRunReconciler) evidence(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step) error {
	ev := step.Evidence
	if stepStart(run, step.Lab, ev.Since).IsZero() {
		r.finishStep(run, st, labsv1.VerdictError, "", fmt.Sprintf("step %s/%s has not run", step.Lab, ev.Since))
		return nil
	}
	// The lines of the probe step's observer since its attempts started to count: the mesh state it judged.
	plan, _ := planOf(run)
	since := countedFrom(r.changeBefore(run, plan, planStep(run, step.Lab, ev.Since)))
	if since.IsZero() {
		since = run.Status.StartTime.Time
	}
	crit, err := r.criteria(ctx, run, step.Lab, ev, since)
	if err != nil {
		r.finishStep(run, st, labsv1.VerdictError, "", err.Error())
		return nil
	}
	entries, err := r.readZtunnel(ctx, run, st, since.Add(-clockSlack))
	if err != nil {
		r.finishStep(run, st, labsv1.VerdictError, "", "ztunnel logs unreachable: "+err.Error())
		return nil
	}
	matched := ztunnel.Match(entries, crit)
	want := max(ev.MinLines, 1)
	if len(matched) >= want {
		st.Evidence = lines(matched, 5)
		r.finishStep(run, st, labsv1.VerdictPass, fmt.Sprintf("%d matching lines", len(matched)),
			fmt.Sprintf("Found %d matching access-log lines among %d read", len(matched), len(entries)))
		return nil
	}
	if r.now().Sub(st.StartTime.Time) < r.EvidenceWait {
		return waitFor("ztunnel access logs", r.deadlineAfter(run, 250*time.Millisecond))
	}
	st.Evidence = lines(matched, 5)
	r.finishStep(run, st, labsv1.VerdictFail, fmt.Sprintf("%d matching lines", len(matched)),
		fmt.Sprintf("Found %d of %d matching access-log lines among %d read in %s", len(matched), want,
			len(entries), r.EvidenceWait))
	return nil
}

// criteria turns the catalogue's evidence into log criteria with the run's SPIFFE identities.
func (r *LabRunReconciler) criteria(ctx context.Context, run *labsv1.LabRun, lab labsv1.LabName, ev *labs.Evidence, since time.Time) (ztunnel.Criteria, error) {
	rejected := ev.PolicyRejected
	c := ztunnel.Criteria{Since: since.Add(-clockSlack), Until: r.now().Add(clockSlack), Direction: ev.Direction,
		HBONE: ev.HBONE, PolicyRejected: &rejected, NoSrcIdentity: ev.Plaintext}
	if ev.DeniedByStrict {
		static, converted := r.strictDenials(run)
		c.ErrorAnyOf = []string{"explicitly denied by: " + static, "explicitly denied by: " + converted}
	}
	td := run.Spec.Mesh.TrustDomain
	// ztunnel names the source pod, in the mesh or not: only the observer of the step the evidence is about
	// counts, however close in time another observer's connections were (the bystander's, for one).
	src := planStep(run, lab, ev.Since)
	if perNode(run, src) {
		c.SrcWorkloadPrefix = observerPrefix(run, observer{caller: src.Caller, node: "any"})
	} else {
		c.SrcWorkload = observerPodName(run, observerOf(src))
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

// targetServiceAccount is the identity of the target's pods (the Service's selector picks them).
func (r *LabRunReconciler) targetServiceAccount(ctx context.Context, run *labsv1.LabRun) (string, error) {
	_, pods, err := r.targetPods(ctx, run)
	if err != nil {
		return "", err
	}
	if pods[0].Spec.ServiceAccountName == "" {
		return "default", nil
	}
	return pods[0].Spec.ServiceAccountName, nil
}

// targetPods reads the target Service and the pods it selects (never the run's own probe pods).
func (r *LabRunReconciler) targetPods(ctx context.Context, run *labsv1.LabRun) (*corev1.Service, []corev1.Pod, error) {
	svc := &corev1.Service{}
	key := types.NamespacedName{Namespace: run.TargetNamespace(), Name: run.Spec.Target.Service}
	if err := r.APIReader.Get(ctx, key, svc); err != nil {
		return nil, nil, fmt.Errorf("reading target Service: %w", err)
	}
	if len(svc.Spec.Selector) == 0 {
		return nil, nil, fmt.Errorf("Service %s selects no pods (no selector)", key)
	}
	pods, err := r.appPods(ctx, client.InNamespace(key.Namespace), client.MatchingLabels(svc.Spec.Selector))
	if err != nil {
		return nil, nil, fmt.Errorf("listing target pods: %w", err)
	}
	if len(pods) == 0 {
		return nil, nil, fmt.Errorf("no pods back Service %s", key)
	}
	return svc, pods, nil
}

// planStep is the catalogue's step lab/name of the run's plan (zero when absent).
func planStep(run *labsv1.LabRun, lab labsv1.LabName, name string) labs.Step {
	plan, _ := planOf(run)
	for _, s := range plan {
		if s.Lab == lab && s.Name == name {
			return s
		}
	}
	return labs.Step{Lab: lab, Name: name}
}

func stepStart(run *labsv1.LabRun, lab labsv1.LabName, name string) time.Time {
	for _, st := range run.Status.Steps {
		if st.Lab == lab && st.Name == name && st.StartTime != nil {
			return st.StartTime.Time
		}
	}
	return time.Time{}
}

func lines(entries []ztunnel.Entry, n int) []string {
	var out []string
	for i, e := range entries {
		if i == n {
			break
		}
		out = append(out, evidenceLine(ztunnel.FormatText(e)))
	}
	return out
}
