package policyaudit_test

import (
	"testing"

	. "github.com/onsi/gomega"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// policies is the audit's line per policy, by "<kind> <ns>/<name>".
func policies(t *testing.T, run *labsv1.LabRun) map[string]labsv1.PolicyResult {
	st := suite.StepOf(t, run, labsv1.LabPolicyAudit, "audit-policies")
	out := map[string]labsv1.PolicyResult{}
	for _, p := range st.Policies {
		out[p.Kind+" "+p.Policy] = p
	}
	return out
}

// auditRun is a Verify run of the policy audit alone.
func auditRun(namespaces ...string) *labsv1.LabRun {
	run := suite.NewRun(labsv1.LabPolicyAudit)
	run.Spec.Mode = labsv1.ModeVerify
	if len(namespaces) > 0 {
		run.Spec.Audit = &labsv1.AuditSpec{Namespaces: namespaces}
	}
	return run
}

// TestAuditOfTheGuideWorld: the demo namespace's AuthorizationPolicy is enforced (frontend, which it names, is let
// through from every node and the attacker refused, by no ALLOW match, as ztunnel's line says), and the mesh-wide
// STRICT PeerAuthentication is enforced on every port of every demo Service (plaintext refused by
// istio_converted_static_strict). Nothing is changed and no probe is left.
func TestAuditOfTheGuideWorld(t *testing.T) {
	g := NewWithT(t)
	suite.Start(t, suite.Options())
	run := auditRun()
	suite.Create(t, run)
	done := suite.Finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), suite.NotPassed(done))
	got := policies(t, done)
	ap := got["AuthorizationPolicy demo/backend-allow-frontend-only"]
	g.Expect(ap.Verdict).To(Equal(labsv1.PolicyEnforced), "%+v", ap)
	g.Expect(ap.Probes).To(ContainElement(And(ContainSubstring("as demo/frontend → backend-"), ContainSubstring("allowed by demo/backend-allow-frontend-only"))))
	g.Expect(ap.Probes).To(ContainElement(And(ContainSubstring("as demo/labrun-attacker-"), ContainSubstring("denied (allow policies exist, but none allowed)"))), "the attacker is refused")
	pa := got["PeerAuthentication istio-system/default"]
	g.Expect(pa.Verdict).To(Equal(labsv1.PolicyEnforced), "%+v", pa)
	g.Expect(pa.Probes).To(ContainElement(And(ContainSubstring("plaintext (non-mesh) → backend-"), ContainSubstring("denied by STRICT mTLS"))))
	g.Expect(pa.Probes).To(ContainElement(ContainSubstring("plaintext (non-mesh) → frontend-")))
	g.Expect(done.Status.Journal).To(BeEmpty())
	suite.DeleteAndWait(t, run)
	g.Expect(suite.Leftovers()).To(BeEmpty())
}
