package labschedule

import (
	"fmt"
	"testing"

	. "github.com/onsi/gomega"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// auditedRun is a finished run named run-<end> whose steps are given, ended end minutes from metricsNow.
func auditedRun(end int, steps ...labsv1.StepResult) *labsv1.LabRun {
	return runOf([]labsv1.LabName{labsv1.LabPolicyAudit}, end, steps...)
}

// runOf is a finished run of labs, named run-<end>, with the given steps, ended end minutes from metricsNow.
func runOf(labNames []labsv1.LabName, end int, steps ...labsv1.StepResult) *labsv1.LabRun {
	phase := labsv1.PhaseSucceeded
	for _, st := range steps {
		if st.Verdict == labsv1.VerdictFail || st.Verdict == labsv1.VerdictError {
			phase = labsv1.PhaseFailed
		}
	}
	run := finishedRun("uid", phase, end, steps...)
	run.Spec.Labs = labNames
	return &run
}

// TestRememberPolicies: the memory is the newest audit's policies, in its order, each with that verdict and run;
// lastEnforced is the end of the last run that found the policy Enforced or EnforcedDifferently.
func TestRememberPolicies(t *testing.T) {
	enforcedAt30 := rememberPolicies(nil, auditedRun(-30, audit(labsv1.VerdictPass,
		policy(ap, "shop/orders-allow-web", labsv1.PolicyEnforced), policy(pa, "shop/strict", labsv1.PolicyEnforced),
		policy(ap, "shop/cart-get-only", labsv1.PolicyEnforcedDifferently), policy(ap, "shop/legacy", labsv1.PolicyNoEffect))))
	for _, tc := range []struct {
		name   string
		memory []labsv1.SchedulePolicy
		run    *labsv1.LabRun
		want   []labsv1.SchedulePolicy
	}{
		{name: "a first audit: enforced and enforced differently have lastEnforced, the rest none",
			run: auditedRun(-30, audit(labsv1.VerdictPass,
				policy(ap, "shop/orders-allow-web", labsv1.PolicyEnforced), policy(pa, "shop/strict", labsv1.PolicyEnforced),
				policy(ap, "shop/cart-get-only", labsv1.PolicyEnforcedDifferently), policy(ap, "shop/legacy", labsv1.PolicyNoEffect))),
			want: []labsv1.SchedulePolicy{
				{Kind: ap, Policy: "shop/orders-allow-web", Verdict: labsv1.PolicyEnforced, LastEnforced: metricsAt(-30), LastRun: "run--30"},
				{Kind: pa, Policy: "shop/strict", Verdict: labsv1.PolicyEnforced, LastEnforced: metricsAt(-30), LastRun: "run--30"},
				{Kind: ap, Policy: "shop/cart-get-only", Verdict: labsv1.PolicyEnforcedDifferently, LastEnforced: metricsAt(-30), LastRun: "run--30"},
				{Kind: ap, Policy: "shop/legacy", Verdict: labsv1.PolicyNoEffect, LastRun: "run--30"}}},
		{name: "a later audit: the new verdicts and run, lastEnforced kept where it no longer holds, moved where it " +
			"does; a policy it does not list is dropped, one it lists first has none; another kind is another policy",
			memory: enforcedAt30,
			run: auditedRun(-5, audit(labsv1.VerdictFail,
				policy(ap, "shop/orders-allow-web", labsv1.PolicyNotEnforced), policy(ap, "shop/cart-get-only", labsv1.PolicyNotEnforced),
				policy(pa, "shop/orders-allow-web", labsv1.PolicyNotEnforced), policy(pa, "shop/strict", labsv1.PolicyEnforced),
				policy(ap, "shop/legacy", labsv1.PolicyUntestable))),
			want: []labsv1.SchedulePolicy{
				{Kind: ap, Policy: "shop/orders-allow-web", Verdict: labsv1.PolicyNotEnforced, LastEnforced: metricsAt(-30), LastRun: "run--5"},
				{Kind: ap, Policy: "shop/cart-get-only", Verdict: labsv1.PolicyNotEnforced, LastEnforced: metricsAt(-30), LastRun: "run--5"},
				{Kind: pa, Policy: "shop/orders-allow-web", Verdict: labsv1.PolicyNotEnforced, LastRun: "run--5"},
				{Kind: pa, Policy: "shop/strict", Verdict: labsv1.PolicyEnforced, LastEnforced: metricsAt(-5), LastRun: "run--5"},
				{Kind: ap, Policy: "shop/legacy", Verdict: labsv1.PolicyUntestable, LastRun: "run--5"}}},
		{name: "an audit of namespaces without policies forgets them all",
			memory: enforcedAt30, run: auditedRun(-5, audit(labsv1.VerdictPass))},
		{name: "an audit step that erred, or was skipped, changes nothing",
			memory: enforcedAt30, run: runOf([]labsv1.LabName{labsv1.LabMTLS, labsv1.LabPolicyAudit}, -5,
				step(labsv1.LabMTLS, "client-allowed", labsv1.VerdictFail), audit(labsv1.VerdictError)),
			want: enforcedAt30},
		{name: "a run that has the audit but never got to it changes nothing",
			memory: enforcedAt30, run: auditedRun(-5, step(labsv1.LabPolicyAudit, "create-attacker", labsv1.VerdictError)),
			want: enforcedAt30},
		{name: "a run of no policy-audit lab (the template dropped it) forgets them all",
			memory: enforcedAt30, run: runOf([]labsv1.LabName{labsv1.LabMTLS}, -5, step(labsv1.LabMTLS, "client-allowed", labsv1.VerdictPass))},
		{name: "a step of another lab that carries policies is no audit",
			memory: enforcedAt30, run: runOf([]labsv1.LabName{labsv1.LabMTLS, labsv1.LabPolicyAudit}, -5, func() labsv1.StepResult {
				st := step(labsv1.LabMTLS, "client-allowed", labsv1.VerdictFail)
				st.Policies = []labsv1.PolicyResult{policy(ap, "shop/orders-allow-web", labsv1.PolicyNotEnforced)}
				return st
			}()),
			want: enforcedAt30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got := rememberPolicies(tc.memory, tc.run)
			g.Expect(got).To(Equal(tc.want))
			g.Expect(rememberPolicies(got, tc.run)).To(Equal(got), "folding the same run again")
		})
	}
}

// TestRememberPoliciesIsBounded: at most 64 entries, the audit's first.
func TestRememberPoliciesIsBounded(t *testing.T) {
	var results []labsv1.PolicyResult
	for i := range maxSchedulePolicies + 5 {
		results = append(results, policy(ap, fmt.Sprintf("shop/p-%02d", i), labsv1.PolicyEnforced))
	}
	got := rememberPolicies(nil, auditedRun(-5, audit(labsv1.VerdictPass, results...)))
	g := NewWithT(t)
	g.Expect(got).To(HaveLen(maxSchedulePolicies))
	g.Expect(got[maxSchedulePolicies-1].Policy).To(Equal(fmt.Sprintf("shop/p-%02d", maxSchedulePolicies-1)))
}

// TestObserveRunsRemembersTheAudit: the schedule records each run it takes as its last run into its memory, so
// a regression outlives the run that found the policy enforced; an older run left behind changes nothing.
func TestObserveRunsRemembersTheAudit(t *testing.T) {
	g := NewWithT(t)
	ls := scheduleFor("uid")
	enforcedRun := auditedRun(-30, audit(labsv1.VerdictPass, policy(ap, "shop/orders-deny-legacy", labsv1.PolicyEnforced)))
	brokenRun := auditedRun(-5, audit(labsv1.VerdictFail, policy(ap, "shop/orders-deny-legacy", labsv1.PolicyNotEnforced)))
	observeRuns(ls, scheduleRuns{succeeded: []*labsv1.LabRun{enforcedRun}})
	// The enforced run is pruned (successfulRunsHistoryLimit 0) before the broken one ends.
	observeRuns(ls, scheduleRuns{failed: []*labsv1.LabRun{brokenRun}})
	want := []labsv1.SchedulePolicy{{Kind: ap, Policy: "shop/orders-deny-legacy", Verdict: labsv1.PolicyNotEnforced,
		LastEnforced: metricsAt(-30), LastRun: brokenRun.Name}}
	g.Expect(ls.Status.Policies).To(Equal(want))
	observeRuns(ls, scheduleRuns{succeeded: []*labsv1.LabRun{enforcedRun}})
	g.Expect(ls.Status.Policies).To(Equal(want), "an older run does not move the memory back")
	g.Expect(viewSchedule(ls, nil, metricsNow).regressed).To(Equal([]regressedPolicy{
		{"policy-audit", "audit-policies", ap, "shop/orders-deny-legacy"}}))
}
