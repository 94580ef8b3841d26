package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

// refuseProbePods installs, for the test, an admission policy that refuses the probe pods of one step with 403,
// as a cluster's own webhook or policy might, and waits until the API server enforces it.
// testStepLabel stands for labs.ambientlab.io/step in refuseProbePods' own check that its policy is enforced.
const testStepLabel = "labrun.test/step"

func refuseProbePods(t *testing.T, step string) {
	t.Helper()
	ctx := context.Background()
	name := "test-refuse-" + step
	policy := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{Operations: []admissionv1.OperationType{admissionv1.Create},
					Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}},
			}}},
			Validations: []admissionv1.Validation{{
				Expression: "!has(object.metadata.labels) || ['" + labsv1.LabelStep + "', '" + testStepLabel + "'].all(l, !(l in object.metadata.labels) || object.metadata.labels[l] != '" + step + "')",
				Message:    "the cluster's policy refuses probe pods of step " + step,
				Reason:     ptr.To(metav1.StatusReasonForbidden),
			}},
		},
	}
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny}}}
	for _, o := range []client.Object{policy, binding} {
		NewWithT(t).Expect(k8s.Create(ctx, o)).To(Succeed())
		t.Cleanup(func() { _ = k8s.Delete(ctx, o) })
	}
	// Only the manager may label a pod with the operator's marks (labrun-object-marks): the check uses a label
	// of its own that the policy refuses alike.
	probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.DemoNamespace, Name: "admission-check",
		Labels: map[string]string{testStepLabel: step}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
	NewWithT(t).Eventually(func() bool {
		return apierrors.IsForbidden(k8s.Create(ctx, probe.DeepCopy(), client.DryRunAll))
	}).WithTimeout(10 * time.Second).WithPolling(50 * time.Millisecond).Should(BeTrue())
	// Registered last, so it runs first at the end: wait until the API server no longer enforces the policy
	// deleted by the cleanups above (it drops it asynchronously), or the next test's observers are refused.
	t.Cleanup(func() {
		for _, o := range []client.Object{binding, policy} {
			_ = k8s.Delete(ctx, o)
		}
		NewWithT(t).Eventually(func() error {
			return k8s.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		}).WithTimeout(30*time.Second).WithPolling(50*time.Millisecond).Should(Succeed(), "the refusal is lifted")
	})
}

// TestRefusedProbePodEndsTheRunAndFreesTheLock: a probe pod refused at creation (403 from the cluster's
// admission) ends its step in Error with the server's message; as every observer starts before a window opens,
// the window never opens (nothing to observe it with): the run fails with the mesh untouched, releases the mesh
// lock, and the run queued behind it then runs.
func TestRefusedProbePodEndsTheRunAndFreesTheLock(t *testing.T) {
	refuseProbePods(t, "observe-non-mesh-bystander") // the observer the window's bystander step reads
	startManager(t, managerOptions())
	g := NewWithT(t)
	first, second := newRun(labsv1.LabPeerAuthentication), newRun(labsv1.LabAuthorizationPolicy)
	create(t, first)
	create(t, second)
	done := finished(t, first)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed))
	st := stepOf(t, done, labsv1.LabPeerAuthentication, "set-aside-policy") // the window's first change
	g.Expect(st.Verdict).To(Equal(labsv1.VerdictError))
	g.Expect(st.Message).To(ContainSubstring("The mesh was not weakened"))
	g.Expect(st.Message).To(ContainSubstring("probe pod refused"))
	g.Expect(st.Message).To(ContainSubstring("the cluster's policy refuses probe pods of step observe-non-mesh-bystander"))
	g.Expect(done.Status.Journal).To(BeEmpty(), "no window opened without its observers")
	g.Expect(done.Status.Message).To(ContainSubstring("the cluster's policy refuses probe pods"))
	g.Expect(meta.IsStatusConditionTrue(done.Status.Conditions, labsv1.ConditionMeshRestored)).To(BeTrue())
	next := finished(t, second)
	g.Expect(next.Status.Phase).To(Equal(labsv1.PhaseSucceeded), notPassed(next))
	expectMeshAsFound(t)
	expectNoLock(t)
}

// TestStatusEditedMidRunIsRestoredAtOnce: with the status-writes policy switched off mid-run, someone marks a
// weakened run Succeeded. The operator notices at once (not after maxExposure plus the watchdog's grace),
// restores and fails the run saying why. (A Lab run does not start while a policy is off: admission_guard.go.)
func TestStatusEditedMidRunIsRestoredAtOnce(t *testing.T) {
	startManager(t, managerOptions())
	g := NewWithT(t)
	ctx := context.Background()
	slowPropagation(t, 3*time.Second) // keep the run inside its weakened steps
	run := newRun(labsv1.LabPeerAuthentication)
	run.Spec.MaxExposure = &metav1.Duration{Duration: 10 * time.Minute}
	create(t, run)
	waitForMode(t, "PERMISSIVE")
	withoutBinding(t, "labrun-status-writes")
	forged := time.Now()
	g.Eventually(func() error {
		cur := &labsv1.LabRun{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(run), cur); err != nil {
			return err
		}
		cur.Status.Phase = labsv1.PhaseSucceeded
		return k8s.Status().Update(ctx, cur)
	}).WithTimeout(10 * time.Second).Should(Succeed())
	g.Eventually(func(g Gomega) {
		cur := &labsv1.LabRun{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(run), cur)).To(Succeed())
		g.Expect(cur.Status.Reason).To(Equal(labsv1.ReasonStatusTampered))
		g.Expect(cur.Status.Phase).To(Equal(labsv1.PhaseFailed))
		g.Expect(cur.Status.Message).To(ContainSubstring("changed by someone other than the operator"))
	}).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	expectMeshAsFound(t)
	expectNoLock(t)
	t.Logf("restored %s after the forged status", time.Since(forged).Round(time.Millisecond))
}
