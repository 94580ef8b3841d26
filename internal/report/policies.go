package report

import (
	"fmt"
	"strings"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// A policy-audit step carries a verdict per policy (status.steps[].policies). Every report shows them beside the
// step: a JUnit test case, a PolicyReport result and a Markdown row per policy.

// PolicyName names a policy as the reports do: "<kind> <namespace>/<name>".
func PolicyName(p labsv1.PolicyResult) string { return p.Kind + " " + p.Policy }

// policyMessage is the one line a report shows for a policy: the audit's reason, else istiod's word, else the
// verdict.
func policyMessage(p labsv1.PolicyResult) string {
	return firstNonEmpty(p.Reason, p.Istiod, string(p.Verdict))
}

// policyDetails are the verdict, the reason, what istiod wrote and every probe, a line each, for the body of a
// JUnit case.
func policyDetails(p labsv1.PolicyResult) string {
	lines := []string{"verdict: " + string(p.Verdict)}
	if p.Reason != "" {
		lines = append(lines, "reason: "+p.Reason)
	}
	if p.Istiod != "" {
		lines = append(lines, "istiod: "+p.Istiod)
	}
	for _, probe := range p.Probes {
		lines = append(lines, "probe: "+probe)
	}
	return strings.Join(lines, "\n")
}

// markdownProbes is how many of a policy's probes the Markdown table shows (contradictions come first); the
// JSON and JUnit reports hold them all.
const markdownProbes = 2

// firstProbes are a policy's first probes, joined, with how many more there are.
func firstProbes(probes []string) string {
	if len(probes) <= markdownProbes {
		return strings.Join(probes, "; ")
	}
	return fmt.Sprintf("%s (+%d more)", strings.Join(probes[:markdownProbes], "; "), len(probes)-markdownProbes)
}
