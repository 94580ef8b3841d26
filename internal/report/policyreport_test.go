package report_test

import (
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/report"
)

// TestSPIFFEIdentities reads the identities out of ztunnel log lines, once each.
func TestSPIFFEIdentities(t *testing.T) {
	got := report.SPIFFEIdentities([]string{
		`src.identity="spiffe://cluster.local/ns/demo/sa/frontend" dst.identity="spiffe://cluster.local/ns/demo/sa/backend"`,
		`{"src.identity":"spiffe://cluster.local/ns/demo/sa/frontend"}`,
		`identity spiffe://td.example/ns/a/sa/b, then nothing`,
		`no identity here`,
	})
	NewWithT(t).Expect(got).To(Equal([]string{"spiffe://cluster.local/ns/demo/sa/frontend",
		"spiffe://cluster.local/ns/demo/sa/backend", "spiffe://td.example/ns/a/sa/b"}))
}

// TestReportNameFitsAnObjectName: a long run name still gives a valid, distinct report name.
func TestReportNameFitsAnObjectName(t *testing.T) {
	g := NewWithT(t)
	long := strings.Repeat("a", 253)
	g.Expect(report.ReportName("run-1")).To(Equal("labrun-run-1"))
	g.Expect(report.ReportName(long)).To(HaveLen(253))
	g.Expect(report.ReportName(long)).NotTo(Equal(report.ReportName(long[:252] + "b")))
	g.Expect(report.ReportName(long)).To(HavePrefix(report.ReportPrefix))
}

// TestBuildPolicyReport: a step still running has no result yet; a per-node step names the nodes that did not
// pass; identities come from the evidence; empty facts are left out; the summary counts the results.
func TestBuildPolicyReport(t *testing.T) {
	g := NewWithT(t)
	end := metav1.NewMicroTime(time.Date(2026, 11, 27, 12, 0, 0, 123456000, time.UTC))
	run := &labsv1.LabRun{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "nightly", UID: "u-1"},
		Spec: labsv1.LabRunSpec{Mode: labsv1.ModeVerify}}
	run.Status.Steps = []labsv1.StepResult{
		{Lab: labsv1.LabMTLS, Name: "client-allowed", Expected: "allowed", Observed: "denied", Verdict: labsv1.VerdictFail,
			Message: "frontend was refused on node-2", CompletionTime: &end,
			Coverage: []labsv1.NodeResult{{Node: "node-1", Role: labsv1.RoleSource, Verdict: labsv1.VerdictPass},
				{Node: "node-2", Role: labsv1.RoleSource, Verdict: labsv1.VerdictFail},
				{Node: "node-2", Role: labsv1.RoleDestination, Verdict: labsv1.VerdictFail},
				{Node: "node-3", Role: labsv1.RoleDestination, Verdict: labsv1.VerdictError}}},
		{Lab: labsv1.LabMTLS, Name: "outbound-identity", Expected: "evidence", Verdict: labsv1.VerdictSkipped,
			Evidence: []string{`src.identity="spiffe://cluster.local/ns/demo/sa/frontend" dst.identity="spiffe://cluster.local/ns/demo/sa/backend"`}},
		{Lab: labsv1.LabFootprint, Name: "compare", Expected: "numbers", Verdict: labsv1.VerdictRunning},
	}
	rep := report.BuildPolicyReport(run)
	g.Expect(rep.GetName()).To(Equal("labrun-nightly"))
	results, _, _ := unstructured.NestedSlice(rep.Object, "results")
	g.Expect(results).To(HaveLen(2), "the running step has no result yet")
	failed := resultOf(t, rep, "client-allowed")
	g.Expect(failed).To(HaveKeyWithValue("result", "fail"))
	g.Expect(failed).To(HaveKeyWithValue("message", "frontend was refused on node-2"))
	g.Expect(failed).To(HaveKeyWithValue("timestamp", map[string]any{"seconds": end.Unix(), "nanos": int64(123456000)}))
	g.Expect(failed["properties"]).To(Equal(map[string]any{"labrun": "nightly", "mode": "Verify", "lab": "mtls",
		"step": "client-allowed", "expected": "allowed", "observed": "denied", "node": "node-2,node-3"}))
	skipped := resultOf(t, rep, "outbound-identity")
	g.Expect(skipped).To(HaveKeyWithValue("result", "skip"))
	g.Expect(skipped).NotTo(HaveKey("timestamp"))
	g.Expect(skipped["properties"]).To(HaveKeyWithValue("spiffe",
		"spiffe://cluster.local/ns/demo/sa/frontend,spiffe://cluster.local/ns/demo/sa/backend"))
	g.Expect(skipped["properties"]).NotTo(HaveKey("node"))
	summary, _, _ := unstructured.NestedMap(rep.Object, "summary")
	g.Expect(summary).To(Equal(map[string]any{"pass": int64(0), "fail": int64(1), "warn": int64(0), "error": int64(0), "skip": int64(1)}))
}

func resultOf(t *testing.T, rep *unstructured.Unstructured, step string) map[string]any {
	t.Helper()
	results, _, _ := unstructured.NestedSlice(rep.Object, "results")
	for _, r := range results {
		if res := r.(map[string]any); res["rule"] == step {
			return res
		}
	}
	t.Fatalf("PolicyReport %s has no result for step %s", rep.GetName(), step)
	return nil
}
