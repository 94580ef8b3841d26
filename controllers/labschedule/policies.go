package labschedule

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
)

// The schedule's memory of the policy audit (status.policies): what the newest audit of its runs said of each
// policy, and when a run last found the policy enforced. Runs are pruned to the history limits; the memory is
// what lets a regression be seen once the run that found the policy enforced is gone. Only the manager writes a
// schedule's status (config/admission/status_policy.yaml), so a tenant cannot make a regression vanish.

// maxSchedulePolicies bounds status.policies (the CRD allows 64, as many as one audit step lists).
const maxSchedulePolicies = 64

// policyKey is a policy across runs: its kind and <namespace>/<name>.
type policyKey struct{ kind, policy string }

// enforced: the verdicts that say the policy is in force (EnforcedDifferently: in force as istiod narrowed it).
func enforced(v labsv1.PolicyVerdict) bool {
	return v == labsv1.PolicyEnforced || v == labsv1.PolicyEnforcedDifferently
}

// rememberPolicies folds the audit of a finished run into the memory: the run's policies, in its order, each
// with its verdict and the run's name; lastEnforced becomes the run's end for a policy it found enforced and is
// carried over otherwise. A policy the run's audit does not list is dropped, and a run of no policy-audit lab
// (the template no longer has it) forgets them all. A run whose audit step gave no verdict (it erred, or was
// skipped) leaves the memory as it was. Folding the same run twice changes nothing.
func rememberPolicies(memory []labsv1.SchedulePolicy, run *labsv1.LabRun) []labsv1.SchedulePolicy {
	if !slices.ContainsFunc(run.Spec.Labs, func(l labsv1.LabName) bool { return auditLabs[l] }) {
		return nil
	}
	results, audited := auditedPolicies(run)
	if !audited {
		return memory
	}
	before := make(map[policyKey]*metav1.Time, len(memory))
	for _, p := range memory {
		before[policyKey{p.Kind, p.Policy}] = p.LastEnforced
	}
	ended := metav1.NewTime(endTime(run))
	var out []labsv1.SchedulePolicy
	seen := map[policyKey]bool{}
	for _, p := range results {
		k := policyKey{p.Kind, p.Policy}
		if seen[k] {
			continue
		}
		seen[k] = true
		sp := labsv1.SchedulePolicy{Kind: p.Kind, Policy: p.Policy, Verdict: p.Verdict, LastRun: run.Name}
		if enforced(p.Verdict) {
			sp.LastEnforced = ended.DeepCopy()
		} else if t := before[k]; t != nil {
			sp.LastEnforced = t.DeepCopy()
		}
		if out = append(out, sp); len(out) == maxSchedulePolicies {
			break
		}
	}
	return out
}

// auditedPolicies are the policies the run's audit steps judged, and whether one of them gave a verdict at all
// (an audit of namespaces without policies judges none, and that is news too).
func auditedPolicies(run *labsv1.LabRun) ([]labsv1.PolicyResult, bool) {
	var out []labsv1.PolicyResult
	audited := false
	for _, st := range run.Status.Steps {
		if !auditSteps[string(st.Lab)+"/"+st.Name] ||
			st.Verdict != labsv1.VerdictPass && st.Verdict != labsv1.VerdictFail {
			continue
		}
		audited = true
		out = append(out, st.Policies...)
	}
	return out, audited
}

// auditSteps are the catalogue's steps that judge policies, by ID, and auditLabs the labs that have them;
// auditLab and auditStep label the series of a regressed policy (the catalogue has one such step).
var auditSteps, auditLabs, auditLab, auditStep = func() (map[string]bool, map[labsv1.LabName]bool, string, string) {
	ids, labNames := map[string]bool{}, map[labsv1.LabName]bool{}
	lab, step := UnknownStep, UnknownStep
	plan, err := labs.Plan([]labsv1.LabName{labsv1.LabPolicyAudit})
	if err != nil {
		return ids, labNames, lab, step
	}
	for _, s := range plan {
		if s.Kind == labs.KindAudit {
			if len(ids) == 0 {
				lab, step = catalogued(string(s.Lab), s.Name)
			}
			ids[s.ID()] = true
			labNames[s.Lab] = true
		}
	}
	return ids, labNames, lab, step
}()
