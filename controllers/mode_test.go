package controllers_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

// TestNamespacePermissiveFailsTheBaseline: the mesh-wide policy is STRICT, but a namespace-level PERMISSIVE one
// in demo decides the target's mode. The baseline step sees it and names it.
func TestNamespacePermissiveFailsTheBaseline(t *testing.T) {
	addPeerAuthentication(t, "relaxed", "PERMISSIVE", nil)
	g := NewWithT(t)
	done := runToFailure(t, shortSettle(newRun(labsv1.LabPeerAuthentication)))
	st := stepOf(t, done, labsv1.LabPeerAuthentication, "baseline-strict")
	g.Expect(st.Verdict).To(Equal(labsv1.VerdictFail))
	g.Expect(st.Message).To(ContainSubstring("is PERMISSIVE (decided by demo/relaxed, namespace level), not STRICT"))
	g.Expect(meta.IsStatusConditionTrue(done.Status.Conditions, labsv1.ConditionMeshRestored)).To(BeTrue())
	expectMeshAsFound(t)
	expectNoLock(t)
}

// TestWorkloadStrictStopsThePermissiveStep: a workload-level STRICT policy for backend outranks whatever the lab
// would make PERMISSIVE, in every scope (for Workload scope because at one level the oldest policy wins). The
// step works the change out before making it, fails naming the policy, and never creates or changes the
// PeerAuthentication; the run restores what it had set aside.
func TestWorkloadStrictStopsThePermissiveStep(t *testing.T) {
	addPeerAuthentication(t, "backend-strict", "STRICT", map[string]any{"app": "backend"})
	startManager(t, managerOptions())
	for _, scope := range []labsv1.Scope{labsv1.ScopeWorkload, labsv1.ScopeNamespace, labsv1.ScopeMesh} {
		t.Run(string(scope), func(t *testing.T) {
			g := NewWithT(t)
			run := newRun(labsv1.LabPeerAuthentication)
			run.Spec.Scope = scope
			create(t, run)
			done := finished(t, run)
			g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed))
			base := stepOf(t, done, labsv1.LabPeerAuthentication, "baseline-strict")
			g.Expect(base.Verdict).To(Equal(labsv1.VerdictPass), base.Message)
			g.Expect(base.Observed).To(ContainSubstring("decided by demo/backend-strict, workload level"))
			st := stepOf(t, done, labsv1.LabPeerAuthentication, "set-permissive")
			g.Expect(st.Verdict).To(Equal(labsv1.VerdictFail))
			g.Expect(st.Message).To(ContainSubstring("scope " + string(scope) + " cannot make target pod backend"))
			g.Expect(st.Message).To(ContainSubstring("it would stay STRICT (decided by demo/backend-strict, workload level)"))
			g.Expect(stepOf(t, done, labsv1.LabPeerAuthentication, "non-mesh-allowed").Verdict).To(Equal(labsv1.VerdictSkipped))
			for _, e := range done.Status.Journal {
				g.Expect(e.Kind).To(Equal(mesh.KindAuthorizationPolicy), "only the policy set aside was changed")
			}
			g.Expect(meta.IsStatusConditionTrue(done.Status.Conditions, labsv1.ConditionMeshRestored)).To(BeTrue())
			expectMeshAsFound(t)
			expectNoLock(t)
		})
	}
}

// TestDenialByTheWrongPolicyFails: demo is PERMISSIVE at namespace level, and an extra DENY policy refuses every
// source outside demo. The plaintext probe is reset, as the guide expects, but not by STRICT: the step names the
// policy that did it and fails, instead of passing on a reset alone.
func TestDenialByTheWrongPolicyFails(t *testing.T) {
	addPeerAuthentication(t, "relaxed", "PERMISSIVE", nil)
	deny := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"selector": map[string]any{"matchLabels": map[string]any{"app": "backend"}},
		"action":   "DENY",
		"rules":    []any{map[string]any{"from": []any{map[string]any{"source": map[string]any{"notNamespaces": []any{sandbox.DemoNamespace}}}}}},
	}}}
	deny.SetGroupVersionKind(mesh.GVK(mesh.KindAuthorizationPolicy))
	deny.SetNamespace(sandbox.DemoNamespace)
	deny.SetName("deny-outsiders")
	NewWithT(t).Expect(k8s.Create(context.Background(), deny)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), deny) })
	waitForPlaintextVerdict(t, "demo/deny-outsiders")
	g := NewWithT(t)
	done := runToFailure(t, shortSettle(newRun(labsv1.LabPeerAuthentication)))
	st := stepOf(t, done, labsv1.LabPeerAuthentication, "non-mesh-denied")
	g.Expect(st.Verdict).To(Equal(labsv1.VerdictFail), st.Message)
	g.Expect(st.Observed).To(ContainSubstring("non-mesh denied (connection reset, curl 56) by demo/deny-outsiders"))
	g.Expect(st.Message).To(ContainSubstring("not by STRICT mTLS"))
	g.Expect(st.Evidence).To(HaveLen(1))
	expectMeshAsFound(t)
	expectNoLock(t)
}

// runToFailure runs run under a fresh manager and expects it to end Failed.
func runToFailure(t *testing.T, run *labsv1.LabRun) *labsv1.LabRun {
	t.Helper()
	startManager(t, managerOptions())
	create(t, run)
	done := finished(t, run)
	NewWithT(t).Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed), notPassed(done))
	return done
}
