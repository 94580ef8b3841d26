package policyreport_test

import (
	"context"
	"os"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	labreport "github.com/ambientlab/labrun-operator/internal/report"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// policyReportCRD is the upstream CRD (kubernetes-sigs/wg-policy-prototypes, see the file's header).
const policyReportCRD = "testdata/wgpolicyk8s.io_policyreports.yaml"

var crdGVK = schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}

// TestPolicyReports: without the PolicyReport CRD a run succeeds as ever. The CRD, installed from its upstream
// source after the manager started, is found without a restart and the finished run gets its report (woken by
// the poller: the run itself no longer changes). Each judged step is one result with the step's facts, the
// summary counts them, the run owns the report; someone else's edit is taken back; a run that fails a step
// reports fail. The manager may write no PolicyReport but its own.
func TestPolicyReports(t *testing.T) {
	g := NewWithT(t)
	o := suite.Options()
	o.PolicyReportPoll = 200 * time.Millisecond
	suite.Start(t, o)

	g.Expect(policyReportsServed()).To(BeFalse(), "the PolicyReport CRD must not be installed before this test")
	healthy := suite.NewRun(labsv1.LabMTLS)
	healthy.Spec.Mode = labsv1.ModeVerify
	suite.Create(t, healthy)
	done := suite.Finished(t, healthy)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), suite.NotPassed(done))

	installPolicyReportCRD(t)
	start := time.Now()
	report := waitForReport(t, done, len(done.Status.Steps))
	t.Logf("report of a finished run appeared %s after the CRD was established", time.Since(start).Round(time.Millisecond))
	expectReportOf(t, done, report)
	outbound := resultOf(t, report, "outbound-identity")
	g.Expect(outbound["properties"]).To(HaveKeyWithValue("spiffe", ContainSubstring("spiffe://cluster.local/ns/demo/sa/frontend")))
	expectReportsNameZtunnelPods(t, done, report)
	expectRunMetricsCarryNamespace(t, done)

	t.Run("an edit or deletion by someone else is taken back", func(t *testing.T) {
		forged := report.DeepCopy()
		g := NewWithT(t)
		g.Expect(unstructured.SetNestedSlice(forged.Object, []any{}, "results")).To(Succeed())
		g.Expect(unstructured.SetNestedField(forged.Object, int64(0), "summary", "pass")).To(Succeed())
		forged.SetLabels(nil) // the watch still sees it
		forged.SetOwnerReferences(nil)
		g.Expect(suite.K8s.Update(context.Background(), forged)).To(Succeed())
		back := waitForReport(t, done, len(done.Status.Steps))
		expectReportOf(t, done, back)
		g.Expect(back.GetLabels()).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "labrun-operator"))

		g.Expect(suite.K8s.Delete(context.Background(), back)).To(Succeed())
		g.Eventually(func() types.UID {
			_ = suite.K8s.Get(context.Background(), client.ObjectKeyFromObject(back), forged)
			return forged.GetUID()
		}).WithTimeout(30*time.Second).WithPolling(50*time.Millisecond).ShouldNot(Equal(back.GetUID()), "recreated")
		expectReportOf(t, done, waitForReport(t, done, len(done.Status.Steps)))
	})

	t.Run("a failing step reports fail", func(t *testing.T) {
		g := NewWithT(t)
		suite.AddPeerAuthentication(t, "relaxed", "PERMISSIVE", nil)
		failing := suite.ShortSettle(suite.NewRun(labsv1.LabPeerAuthentication))
		failing.Spec.Mode = labsv1.ModeVerify
		suite.Create(t, failing)
		done := suite.Finished(t, failing)
		g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed), suite.NotPassed(done))
		report := waitForReport(t, done, len(done.Status.Steps))
		expectReportOf(t, done, report)
		g.Expect(resultOf(t, report, "baseline-strict")["result"]).To(Equal("fail"))
		fail, _, _ := unstructured.NestedInt64(report.Object, "summary", "fail")
		g.Expect(fail).To(BeNumerically(">", 0))
	})

	t.Run("the manager writes only its own reports", func(t *testing.T) {
		g := NewWithT(t)
		mgrClient, err := client.New(suite.SB.ManagerConfig(), client.Options{Scheme: suite.K8s.Scheme()})
		g.Expect(err).NotTo(HaveOccurred())
		for name, allowed := range map[string]bool{"labrun-by-hand": true, "kyverno-findings": false} {
			r := &unstructured.Unstructured{}
			r.SetGroupVersionKind(labreport.PolicyReportGVK)
			r.SetNamespace(sandbox.DemoNamespace)
			r.SetName(name)
			err := mgrClient.Create(context.Background(), r, client.DryRunAll)
			if allowed {
				g.Expect(err).NotTo(HaveOccurred(), name)
			} else {
				g.Expect(apierrors.IsInvalid(err) || apierrors.IsForbidden(err)).To(BeTrue(), "%s: %v", name, err)
				g.Expect(err.Error()).To(ContainSubstring("may only write its own PolicyReports"))
			}
		}
	})
}

// expectReportOf checks the report against the run's status: one result per step with its verdict and facts,
// the summary, the scope and the owner.
func expectReportOf(t *testing.T, run *labsv1.LabRun, report *unstructured.Unstructured) {
	t.Helper()
	g := NewWithT(t)
	want := map[labsv1.Verdict]string{labsv1.VerdictPass: "pass", labsv1.VerdictFail: "fail",
		labsv1.VerdictError: "error", labsv1.VerdictSkipped: "skip"}
	counts := map[string]int64{}
	for _, st := range run.Status.Steps {
		res := resultOf(t, report, st.Name)
		g.Expect(res).To(HaveKeyWithValue("policy", "labrun-"+string(st.Lab)))
		g.Expect(res).To(HaveKeyWithValue("result", want[st.Verdict]), st.Name)
		g.Expect(res).To(HaveKeyWithValue("source", "labrun-operator"))
		g.Expect(res).To(HaveKeyWithValue("category", "Istio ambient security"))
		g.Expect(res).To(HaveKey("timestamp"))
		props := res["properties"].(map[string]any)
		g.Expect(props).To(HaveKeyWithValue("lab", string(st.Lab)))
		g.Expect(props).To(HaveKeyWithValue("step", st.Name))
		g.Expect(props).To(HaveKeyWithValue("expected", st.Expected))
		if st.Observed != "" {
			g.Expect(props).To(HaveKeyWithValue("observed", st.Observed))
		}
		for _, n := range st.Coverage {
			if n.Verdict != labsv1.VerdictPass {
				g.Expect(props).To(HaveKeyWithValue("node", ContainSubstring(n.Node)), st.Name)
			}
		}
		counts[want[st.Verdict]]++
	}
	summary, _, _ := unstructured.NestedMap(report.Object, "summary")
	s := run.Status.Summary
	g.Expect(summary).To(Equal(map[string]any{"pass": int64(s.Passed), "fail": int64(s.Failed), "warn": int64(0),
		"error": int64(s.Errored), "skip": int64(s.Skipped)}))
	g.Expect(summary).To(Equal(map[string]any{"pass": counts["pass"], "fail": counts["fail"], "warn": int64(0),
		"error": counts["error"], "skip": counts["skip"]}))
	scope, _, _ := unstructured.NestedStringMap(report.Object, "scope")
	g.Expect(scope).To(Equal(map[string]string{"apiVersion": labsv1.GroupVersion.String(), "kind": "LabRun",
		"namespace": run.Namespace, "name": run.Name, "uid": string(run.UID)}))
	owners := report.GetOwnerReferences()
	g.Expect(owners).To(HaveLen(1))
	g.Expect(owners[0].UID).To(Equal(run.UID))
	g.Expect(owners[0].Controller).To(HaveValue(BeTrue()))
}

// resultOf is the report's result for the named step.
func resultOf(t *testing.T, report *unstructured.Unstructured, step string) map[string]any {
	t.Helper()
	results, _, _ := unstructured.NestedSlice(report.Object, "results")
	for _, r := range results {
		if res := r.(map[string]any); res["rule"] == step {
			return res
		}
	}
	t.Fatalf("PolicyReport %s has no result for step %s", report.GetName(), step)
	return nil
}

// waitForReport waits until the run's report holds n results and returns it.
func waitForReport(t *testing.T, run *labsv1.LabRun, n int) *unstructured.Unstructured {
	t.Helper()
	report := &unstructured.Unstructured{}
	report.SetGroupVersionKind(labreport.PolicyReportGVK)
	key := client.ObjectKey{Namespace: run.Namespace, Name: "labrun-" + run.Name}
	NewWithT(t).Eventually(func() ([]any, error) {
		err := suite.K8s.Get(context.Background(), key, report)
		results, _, _ := unstructured.NestedSlice(report.Object, "results")
		return results, err
	}).WithTimeout(30*time.Second).WithPolling(50*time.Millisecond).Should(HaveLen(n), "PolicyReport %s", key)
	return report
}

// policyReportsServed tells whether the API server serves wgpolicyk8s.io/v1alpha2 PolicyReports.
func policyReportsServed() bool {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(labreport.PolicyReportGVK.GroupVersion().WithKind("PolicyReportList"))
	return suite.K8s.List(context.Background(), list, client.Limit(1)) == nil
}

// installPolicyReportCRD creates the upstream CRD, waits until it is served, and removes it (with every report)
// when the test ends: no garbage collector runs in the sandbox, and other tests expect no reports.
func installPolicyReportCRD(t *testing.T) {
	t.Helper()
	g := NewWithT(t)
	f, err := os.Open(policyReportCRD)
	g.Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	crd := &unstructured.Unstructured{}
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for crd.GetKind() == "" { // the file starts with an empty document
		g.Expect(dec.Decode(&crd.Object)).To(Succeed())
	}
	g.Expect(crd.GroupVersionKind()).To(Equal(crdGVK))
	ctx := context.Background()
	g.Expect(suite.K8s.Create(ctx, crd)).To(Succeed())
	t.Cleanup(func() {
		if err := suite.K8s.Delete(ctx, crd); client.IgnoreNotFound(err) != nil {
			t.Errorf("deleting the PolicyReport CRD: %v", err)
		}
		NewWithT(t).Eventually(func() bool {
			return apierrors.IsNotFound(suite.K8s.Get(ctx, client.ObjectKeyFromObject(crd), &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": crdGVK.GroupVersion().String(), "kind": crdGVK.Kind}}))
		}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(BeTrue())
	})
	g.Eventually(policyReportsServed).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(BeTrue())
}
