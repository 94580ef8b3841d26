package report_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/report"
)

// auditRun is a finished policy-audit run whose audit step judged one policy of each verdict, those not
// enforced first, as the lab lists them.
func auditRun() *labsv1.LabRun {
	audit := step(labsv1.LabPolicyAudit, "audit-policies", labsv1.VerdictFail, time.Second, 20*time.Second)
	audit.Expected, audit.Observed = "every policy enforced", "1 of 5 policies not enforced"
	audit.Message = "AuthorizationPolicy shop/orders-allow-web is not enforced"
	audit.Policies = []labsv1.PolicyResult{
		{Kind: "AuthorizationPolicy", Policy: "shop/orders-allow-web", Verdict: labsv1.PolicyNotEnforced,
			Reason: "the attacker reached orders on node-2 although only web may",
			Probes: []string{"node-2: attacker -> orders:8080 expected denied, saw allowed (HTTP 200)",
				"node-1: attacker -> orders:8080 expected denied, saw denied", "node-1: web -> orders:8080 expected allowed, saw allowed (HTTP 200)"}},
		{Kind: "AuthorizationPolicy", Policy: "shop/cart-get-only", Verdict: labsv1.PolicyEnforcedDifferently,
			Reason: "istiod dropped its HTTP rules for ztunnel: enforced as an L4 policy",
			Istiod: "ztunnel does not support HTTP attributes (found: methods). In ambient mode you must use a waypoint proxy to enforce HTTP rules",
			Probes: []string{"node-1: web -> cart:8080 expected allowed, saw allowed (HTTP 200)"}},
		{Kind: "PeerAuthentication", Policy: "shop/strict", Verdict: labsv1.PolicyEnforced,
			Reason: "plaintext from outside the mesh was refused on every node",
			Probes: []string{"node-1: non-mesh -> orders:8080 expected refused, saw refused (curl 56)"}},
		{Kind: "AuthorizationPolicy", Policy: "shop/legacy", Verdict: labsv1.PolicyNoEffect,
			Reason: "it selects no pod (app=legacy)"},
		{Kind: "AuthorizationPolicy", Policy: "shop/admin-only", Verdict: labsv1.PolicyUntestable,
			Reason: "it allows only shop/admin, an identity the audit may not call as"},
	}
	fixture := step(labsv1.LabPolicyAudit, "create-attacker", labsv1.VerdictPass, 0, time.Second)
	end := metav1.NewTime(t0.Add(time.Minute))
	return &labsv1.LabRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "audit", UID: "u-2"},
		Spec:       labsv1.LabRunSpec{Mode: labsv1.ModeVerify, Labs: []labsv1.LabName{labsv1.LabPolicyAudit}},
		Status: labsv1.LabRunStatus{Phase: labsv1.PhaseFailed, CompletionTime: &end,
			Steps:   []labsv1.StepResult{fixture, audit},
			Summary: labsv1.Summary{Total: 2, Passed: 1, Failed: 1}},
	}
}

// TestJUnitHasACasePerPolicy: after the audit step's own case, one case per policy, named for the lab, the kind
// and the policy: NotEnforced fails with the reason and every probe, NoEffect and Untestable are skipped with the
// reason, Enforced and EnforcedDifferently pass with the reason and istiod's word as output. The counts include
// them.
func TestJUnitHasACasePerPolicy(t *testing.T) {
	g := NewWithT(t)
	var buf bytes.Buffer
	g.Expect(report.WriteJUnit(&buf, auditRun())).To(Succeed())
	var doc parsed
	g.Expect(xml.Unmarshal(buf.Bytes(), &doc)).To(Succeed(), buf.String())
	g.Expect([]int{doc.Tests, doc.Failures, doc.Errors, doc.Skipped}).To(Equal([]int{7, 2, 0, 2}))
	g.Expect(doc.Suites).To(HaveLen(1))
	suite := doc.Suites[0]
	g.Expect(suite.Name).To(Equal("policy-audit"))
	g.Expect([]int{suite.Tests, suite.Failures, suite.Errors, suite.Skipped}).To(Equal([]int{7, 2, 0, 2}))
	g.Expect(suite.Time).To(Equal("21.000"), "policies take no time of their own")

	var names []string
	for _, c := range suite.Cases {
		names = append(names, c.Name)
		g.Expect(c.Classname).To(Equal("policy-audit"))
	}
	g.Expect(names).To(Equal([]string{"create-attacker", "audit-policies",
		"policy-audit/AuthorizationPolicy shop/orders-allow-web", "policy-audit/AuthorizationPolicy shop/cart-get-only",
		"policy-audit/PeerAuthentication shop/strict", "policy-audit/AuthorizationPolicy shop/legacy",
		"policy-audit/AuthorizationPolicy shop/admin-only"}), "each policy right after the step that audited it")

	notEnforced := suite.Cases[2]
	g.Expect(notEnforced.Failure).NotTo(BeNil())
	g.Expect(notEnforced.Failure.Type).To(Equal("NotEnforced"))
	g.Expect(notEnforced.Failure.Message).To(Equal("the attacker reached orders on node-2 although only web may"))
	g.Expect(notEnforced.Failure.Text).To(ContainSubstring("probe: node-2: attacker -> orders:8080 expected denied, saw allowed (HTTP 200)"))
	g.Expect(notEnforced.Failure.Text).To(ContainSubstring("probe: node-1: web -> orders:8080 expected allowed"), "every probe")
	props := map[string]string{}
	for _, p := range notEnforced.Properties {
		props[p.Name] = p.Value
	}
	g.Expect(props).To(Equal(map[string]string{"step": "audit-policies", "kind": "AuthorizationPolicy",
		"policy": "shop/orders-allow-web", "verdict": "NotEnforced"}))

	differently := suite.Cases[3]
	g.Expect(differently.Failure).To(BeNil())
	g.Expect(differently.Skipped).To(BeNil())
	g.Expect(differently.Error).To(BeNil())
	g.Expect(differently.SystemOut).To(ContainSubstring("reason: istiod dropped its HTTP rules"))
	g.Expect(differently.SystemOut).To(ContainSubstring("istiod: ztunnel does not support HTTP attributes"))
	enforced := suite.Cases[4]
	g.Expect(enforced.Failure).To(BeNil())
	g.Expect(enforced.Skipped).To(BeNil())
	g.Expect(enforced.SystemOut).To(ContainSubstring("plaintext from outside the mesh was refused on every node"))
	g.Expect(suite.Cases[5].Skipped).NotTo(BeNil())
	g.Expect(suite.Cases[5].Skipped.Message).To(Equal("it selects no pod (app=legacy)"))
	g.Expect(suite.Cases[6].Skipped).NotTo(BeNil())
	g.Expect(suite.Cases[6].Skipped.Message).To(Equal("it allows only shop/admin, an identity the audit may not call as"))
}

// TestPolicyReportHasAResultPerPolicy: the audit step keeps its own result; each policy it judged adds one,
// policy <namespace>/<name>, Enforced→pass, NotEnforced→fail, EnforcedDifferently→warn, NoEffect and
// Untestable→skip, the reason as message and the probes in the properties; the summary counts them all.
func TestPolicyReportHasAResultPerPolicy(t *testing.T) {
	g := NewWithT(t)
	run := auditRun()
	rep := report.BuildPolicyReport(run)
	results, _, _ := unstructured.NestedSlice(rep.Object, "results")
	g.Expect(results).To(HaveLen(7))
	g.Expect(resultOf(t, rep, "audit-policies")).To(HaveKeyWithValue("policy", "labrun-policy-audit"))

	byPolicy := map[string]map[string]any{}
	for _, r := range results {
		if res := r.(map[string]any); res["rule"] != "audit-policies" && res["rule"] != "create-attacker" {
			byPolicy[res["policy"].(string)] = res
		}
	}
	g.Expect(byPolicy).To(HaveLen(5))
	want := map[string]string{"shop/orders-allow-web": "fail", "shop/cart-get-only": "warn", "shop/strict": "pass",
		"shop/legacy": "skip", "shop/admin-only": "skip"}
	for policy, result := range want {
		g.Expect(byPolicy[policy]).To(HaveKeyWithValue("result", result), policy)
		g.Expect(byPolicy[policy]).To(HaveKeyWithValue("source", "labrun-operator"))
		g.Expect(byPolicy[policy]).To(HaveKeyWithValue("category", "Istio ambient security"))
		g.Expect(byPolicy[policy]).To(HaveKeyWithValue("severity", "high"))
		g.Expect(byPolicy[policy]).To(HaveKey("timestamp"))
	}
	failed := byPolicy["shop/orders-allow-web"]
	g.Expect(failed).To(HaveKeyWithValue("rule", "AuthorizationPolicy"))
	g.Expect(failed).To(HaveKeyWithValue("message", "the attacker reached orders on node-2 although only web may"))
	g.Expect(failed["properties"]).To(Equal(map[string]any{"labrun": "audit", "mode": "Verify", "lab": "policy-audit",
		"step": "audit-policies", "kind": "AuthorizationPolicy", "verdict": "NotEnforced",
		"probes": strings.Join(run.Status.Steps[1].Policies[0].Probes, "\n")}))
	g.Expect(byPolicy["shop/strict"]).To(HaveKeyWithValue("rule", "PeerAuthentication"))
	g.Expect(byPolicy["shop/cart-get-only"]["properties"]).To(HaveKeyWithValue("istiod", ContainSubstring("waypoint")))
	g.Expect(byPolicy["shop/legacy"]["properties"]).NotTo(HaveKey("probes"), "empty facts are left out")

	summary, _, _ := unstructured.NestedMap(rep.Object, "summary")
	g.Expect(summary).To(Equal(map[string]any{"pass": int64(2), "fail": int64(2), "warn": int64(1), "error": int64(0), "skip": int64(2)}))
}

// TestPolicyReportHasNoPoliciesOfAStepNotJudgedYet: a running audit step has no result yet, nor its policies.
func TestPolicyReportHasNoPoliciesOfAStepNotJudgedYet(t *testing.T) {
	run := auditRun()
	run.Status.Steps[1].Verdict = labsv1.VerdictRunning
	results, _, _ := unstructured.NestedSlice(report.BuildPolicyReport(run).Object, "results")
	NewWithT(t).Expect(results).To(HaveLen(1))
}

// TestMarkdownHasAPolicyTableAfterTheStep: the audit step is followed by a table of its policies (verdict, kind,
// policy, reason, the first two probes and how many more).
func TestMarkdownHasAPolicyTableAfterTheStep(t *testing.T) {
	g := NewWithT(t)
	var buf bytes.Buffer
	g.Expect(report.WriteMarkdown(&buf, auditRun())).To(Succeed())
	md := buf.String()
	g.Expect(md).To(ContainSubstring("audit-policies, per policy:\n\n| Verdict | Kind | Policy | Reason | Probes |\n|---|---|---|---|---|\n"))
	g.Expect(md).To(ContainSubstring("| **NotEnforced** | AuthorizationPolicy | shop/orders-allow-web | " +
		"the attacker reached orders on node-2 although only web may | " +
		"node-2: attacker -> orders:8080 expected denied, saw allowed (HTTP 200); node-1: attacker -> orders:8080 expected denied, saw denied (+1 more) |\n"))
	g.Expect(md).To(ContainSubstring("| EnforcedDifferently | AuthorizationPolicy | shop/cart-get-only | istiod dropped its HTTP rules for ztunnel: enforced as an L4 policy | node-1: web -> cart:8080 expected allowed, saw allowed (HTTP 200) |\n"))
	g.Expect(md).To(ContainSubstring("| NoEffect | AuthorizationPolicy | shop/legacy | it selects no pod (app=legacy) |  |\n"))
	g.Expect(strings.Index(md, "per policy:")).To(BeNumerically(">", strings.Index(md, "| audit-policies |")))
	g.Expect(strings.Count(md, "per policy:")).To(Equal(1), "only the step that audited policies")
}

// TestJSONCarriesThePolicies: the JSON report's steps are the API's, policies included.
func TestJSONCarriesThePolicies(t *testing.T) {
	g := NewWithT(t)
	var buf bytes.Buffer
	g.Expect(report.WriteJSON(&buf, auditRun())).To(Succeed())
	var doc report.Document
	g.Expect(json.Unmarshal(buf.Bytes(), &doc)).To(Succeed())
	g.Expect(doc.Labs[0].Steps[1].Policies).To(Equal(auditRun().Status.Steps[1].Policies))
}
