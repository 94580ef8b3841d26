package guarantee_test

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// setMode changes the PeerAuthentication as a third party would (kubectl, Argo CD self-heal).
func setMode(t *testing.T, mode string) {
	t.Helper()
	pa := suite.ReadMesh(suite.PeerAuthRef)
	patch := client.MergeFrom(pa.DeepCopy())
	if err := unstructured.SetNestedField(pa.Object, mode, "spec", "mtls", "mode"); err != nil {
		t.Fatal(err)
	}
	NewWithT(t).Expect(suite.K8s.Patch(context.Background(), pa, patch)).To(Succeed())
}

func TestFailingStepStillRestoresAndWarnsWhenNotStrictBefore(t *testing.T) {
	suite.Start(t, suite.Options())
	g := NewWithT(t)
	setMode(t, "PERMISSIVE") // the mesh is weak before the run: the guide's baseline fails
	t.Cleanup(func() { setMode(t, "STRICT") })
	suite.WaitForPlaintextVerdict(t, "") // istiod dropped the static strict policy: STRICT no longer refuses plaintext
	run := suite.NewRun(labsv1.LabPeerAuthentication)
	run.Spec.Scope = labsv1.ScopeMesh // the scope that changes, and so restores, the mesh-wide policy
	run.Spec.Probe.SettleTimeout = &metav1.Duration{Duration: 2 * time.Second}
	run.Spec.Probe.RequestTimeout = &metav1.Duration{Duration: time.Second}
	suite.Create(t, run)
	done := suite.Finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed))
	g.Expect(suite.StepOf(t, done, labsv1.LabPeerAuthentication, "baseline-strict").Verdict).To(Equal(labsv1.VerdictFail))
	// Plaintext was refused only by the policy (still in force a moment after being set aside), not by STRICT.
	strict := suite.StepOf(t, done, labsv1.LabPeerAuthentication, "strict-rejection-logged")
	g.Expect(strict.Verdict).To(Equal(labsv1.VerdictFail), strict.Message)
	c := meta.FindStatusCondition(done.Status.Conditions, labsv1.ConditionMeshRestored)
	g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
	g.Expect(c.Reason).To(Equal(labsv1.ReasonWasNotStrict))
	g.Expect(suite.KstatusOf(t, done)).To(Equal(status.FailedStatus))
	suite.ExpectMeshAsFound(t) // STRICT now, as it always is after a run
}

func TestErroringStepsStillRestore(t *testing.T) {
	suite.Start(t, suite.Options())
	g := NewWithT(t)
	run := suite.NewRun(labsv1.LabPeerAuthentication)
	run.Spec.Probe.Image = suite.UnpullableImage // permitted by the administrator, but no kubelet can pull it
	suite.Create(t, run)
	done := suite.Finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed))
	st := suite.StepOf(t, done, labsv1.LabPeerAuthentication, "non-mesh-denied")
	g.Expect(st.Verdict).To(Equal(labsv1.VerdictError))
	g.Expect(st.Message).To(ContainSubstring("ErrImagePull"))
	// No observer can run, so no window opens (TestNoWindowWithoutObservers): the weakening step errs instead.
	g.Expect(suite.StepOf(t, done, labsv1.LabPeerAuthentication, "set-aside-policy").Verdict).To(Equal(labsv1.VerdictError))
	g.Expect(done.Status.Journal).To(BeEmpty())
	g.Expect(meta.IsStatusConditionTrue(done.Status.Conditions, labsv1.ConditionMeshRestored)).To(BeTrue())
	suite.ExpectMeshAsFound(t)
}

func TestExposureCapRestoresAtOnce(t *testing.T) {
	suite.Start(t, suite.Options())
	g := NewWithT(t)
	// Policy changes now take longer to reach ztunnel than the run may keep the mesh weak.
	suite.SlowPropagation(t, 5*time.Second)
	run := suite.NewRun(labsv1.LabPeerAuthentication)
	run.Spec.MaxExposure = &metav1.Duration{Duration: 2 * time.Second}
	run.Spec.Probe.SettleTimeout = &metav1.Duration{Duration: 2 * time.Second}
	run.Spec.Probe.RequestTimeout = &metav1.Duration{Duration: time.Second}
	suite.Create(t, run)
	done := suite.Finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed))
	g.Expect(done.Status.Reason).To(Equal(labsv1.ReasonExposureExceeded))
	var capped bool
	for _, st := range done.Status.Steps {
		capped = capped || strings.Contains(st.Message, "maxExposure (2s) ran out")
	}
	g.Expect(capped).To(BeTrue())
	g.Expect(done.Status.Exposure.Duration.Duration).To(BeNumerically("<", 4*time.Second))
	suite.ExpectMeshAsFound(t)
}

func TestDeletingARunMidwayRestores(t *testing.T) {
	suite.Start(t, suite.Options())
	run := suite.NewRun(labsv1.LabPeerAuthentication)
	suite.Create(t, run)
	suite.WaitForMode(t, "PERMISSIVE")
	suite.DeleteAndWait(t, run)
	suite.ExpectMeshAsFound(t)
}

// TestManagerKilledAtEachMutationPoint stops the manager right at each point where the mesh changes, before
// the pass can record anything, and starts a new one. At each of them the trusted record still holds a change
// pending: the new manager restores it before resuming anything, and the run ends Failed saying so, with the
// mesh as found. (A run killed with nothing pending resumes: TestTakeoverLeavesARunBetweenWindowsToResume, in
// controllers/meshguard.)
func TestManagerKilledAtEachMutationPoint(t *testing.T) {
	points := []string{
		"before-change:peer-authentication/set-aside-policy",
		"after-change:peer-authentication/set-aside-policy",
		"after-change:peer-authentication/set-permissive",
		"after-restore:PeerAuthentication",
		"after-change:authorization-policy/set-aside-policy",
		"after-restore:AuthorizationPolicy demo/backend-allow-frontend-only",
	}
	for _, point := range points {
		t.Run(point, func(t *testing.T) {
			g := NewWithT(t)
			kill := suite.CrashAt(point)
			o := suite.Options()
			o.Fault = kill.Fault
			stop := suite.Start(t, o)
			run := suite.NewRun(labsv1.LabPeerAuthentication, labsv1.LabAuthorizationPolicy)
			suite.Create(t, run)
			g.Eventually(kill.Done).WithTimeout(60 * time.Second).Should(BeClosed())
			stop()
			suite.Start(t, suite.Options())
			suite.ExpectInterrupted(t, suite.Finished(t, run))
			suite.DeleteAndWait(t, run) // while the second manager runs
			suite.ExpectMeshAsFound(t)
		})
	}
}

// TestThirdPartyChangeMidStepIsReported: someone else undoes the run's change mid-step (Argo CD self-heal): the
// mesh-wide PeerAuthentication put back to STRICT (Mesh scope), or the temporary one deleted (Workload scope).
func TestThirdPartyChangeMidStepIsReported(t *testing.T) {
	suite.Start(t, suite.Options())
	suite.SlowPropagation(t, 3*time.Second) // keep the run inside non-mesh-allowed for a while
	for _, scope := range []labsv1.Scope{labsv1.ScopeMesh, labsv1.ScopeWorkload} {
		t.Run(string(scope), func(t *testing.T) {
			g := NewWithT(t)
			run := suite.NewRun(labsv1.LabPeerAuthentication)
			run.Spec.Scope = scope
			suite.Create(t, run)
			suite.WaitForMode(t, "PERMISSIVE")
			if scope == labsv1.ScopeMesh {
				setMode(t, "STRICT") // Argo CD self-heal puts it back mid-step
			} else {
				for _, name := range suite.TemporaryPeerAuths() { // "peerauthentication <ns>/<name>"
					ns, n, _ := strings.Cut(strings.TrimPrefix(name, "peerauthentication "), "/")
					pa := &unstructured.Unstructured{}
					pa.SetGroupVersionKind(mesh.GVK(mesh.KindPeerAuthentication))
					pa.SetNamespace(ns)
					pa.SetName(n)
					g.Expect(suite.K8s.Delete(context.Background(), pa)).To(Succeed())
				}
			}
			done := suite.Finished(t, run)
			g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed))
			var interfered bool
			for _, st := range done.Status.Steps {
				interfered = interfered || strings.Contains(st.Message, "interfered")
			}
			g.Expect(interfered).To(BeTrue(), "a step should say the mesh was changed by someone else: %s", suite.NotPassed(done))
			suite.ExpectMeshAsFound(t)
			suite.WaitPropagated(t, 3*time.Second) // the next case starts on a data plane that enforces STRICT again
		})
	}
}

// TestSecondRunQueuesBehindMeshLock: a run that changes the mesh waits for the lock, naming the holder; while it
// waits it creates what changes nothing in the mesh (its fixtures, its observers), so its window opens at once.
func TestSecondRunQueuesBehindMeshLock(t *testing.T) {
	suite.Start(t, suite.Options())
	suite.SlowPropagation(t, 2*time.Second) // the first run holds the lock a while
	g := NewWithT(t)
	first, second := suite.NewRun(labsv1.LabPeerAuthentication), suite.NewRun(labsv1.LabAuthorizationPolicy)
	suite.Create(t, first)
	suite.WaitForMode(t, "PERMISSIVE")
	suite.Create(t, second)
	g.Eventually(func(g Gomega) {
		cur := &labsv1.LabRun{}
		g.Expect(suite.K8s.Get(context.Background(), client.ObjectKeyFromObject(second), cur)).To(Succeed())
		g.Expect(cur.Status.Phase).To(Equal(labsv1.PhaseQueued))
		g.Expect(cur.Status.LockHolder).To(Equal(first.Namespace + "/" + first.Name))
		ready := meta.FindStatusCondition(cur.Status.Conditions, labsv1.ConditionReady)
		g.Expect(ready.Message).To(ContainSubstring(first.Name))
		g.Expect(suite.KstatusOf(t, cur)).To(Equal(status.InProgressStatus))
	}).WithTimeout(30 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())
	firstDone := suite.Finished(t, first)
	g.Expect(firstDone.Status.Phase).To(Equal(labsv1.PhaseSucceeded), suite.NotPassed(firstDone))
	done := suite.Finished(t, second)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), done.Status.Message)
	released := firstDone.Status.Steps[len(firstDone.Status.Steps)-1].CompletionTime.Time
	fixture := suite.StepOf(t, done, labsv1.LabAuthorizationPolicy, "create-attacker")
	g.Expect(fixture.CompletionTime.Time).To(BeTemporally("<", released), "the fixture was created ahead of the lock")
	// The second run journaled the real original, never the first run's weakened state.
	for _, e := range done.Status.Journal {
		g.Expect(e.Annotations).NotTo(HaveKey(labsv1.AnnotationOwner))
		g.Expect(e.Labels).NotTo(HaveKey(mesh.LabelChangedBy))
	}
	suite.ExpectMeshAsFound(t)
}

func TestDryRunChangesNothing(t *testing.T) {
	suite.Start(t, suite.Options())
	g := NewWithT(t)
	before := []string{suite.ReadMesh(suite.PeerAuthRef).GetResourceVersion(), suite.ReadMesh(suite.PolicyRef).GetResourceVersion()}
	run := suite.NewRun(labsv1.AllLabs...)
	run.Spec.DryRun = true
	suite.Create(t, run)
	done := suite.Finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded))
	g.Expect(done.Status.Steps).To(HaveEach(HaveField("Verdict", labsv1.VerdictSkipped)))
	g.Expect(suite.StepOf(t, done, labsv1.LabPeerAuthentication, "set-permissive").Change).To(ContainSubstring("PERMISSIVE"))
	g.Expect(done.Status.Journal).To(BeEmpty())
	after := []string{suite.ReadMesh(suite.PeerAuthRef).GetResourceVersion(), suite.ReadMesh(suite.PolicyRef).GetResourceVersion()}
	g.Expect(after).To(Equal(before))
	suite.ExpectMeshAsFound(t)
}

func TestPreflightFailuresChangeNothing(t *testing.T) {
	suite.Start(t, suite.Options())
	cases := []struct {
		name    string
		mutate  func(*labsv1.LabRun)
		message string
	}{
		{"missing Service", func(r *labsv1.LabRun) { r.Spec.Target.Service = "nope" }, "target Service demo/nope not found"},
		{"namespace not enrolled", func(r *labsv1.LabRun) { r.Spec.Target.Namespace = plainNamespace(t) }, "not enrolled in ambient"},
		{"missing policy", func(r *labsv1.LabRun) { r.Spec.Mesh.AuthorizationPolicy.Name = "nope" }, "AuthorizationPolicy demo/nope not found"},
		{"missing PeerAuthentication", func(r *labsv1.LabRun) { r.Spec.Mesh.PeerAuthentication = "nope" }, "PeerAuthentication istio-system/nope not found"},
		// ztunnel not ready: the selector is the operator's (TestPreflightRefusesAnotherMesh).
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			before := []string{suite.ReadMesh(suite.PeerAuthRef).GetResourceVersion(), suite.ReadMesh(suite.PolicyRef).GetResourceVersion()}
			run := suite.NewRun(labsv1.LabPeerAuthentication)
			tc.mutate(run)
			suite.Create(t, run)
			done := suite.Finished(t, run)
			g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed))
			g.Expect(done.Status.Reason).To(Equal(labsv1.ReasonPreflightFailed))
			g.Expect(done.Status.Message).To(ContainSubstring(tc.message))
			g.Expect(done.Status.Steps).To(HaveEach(HaveField("Verdict", labsv1.VerdictSkipped)))
			after := []string{suite.ReadMesh(suite.PeerAuthRef).GetResourceVersion(), suite.ReadMesh(suite.PolicyRef).GetResourceVersion()}
			g.Expect(after).To(Equal(before))
			suite.ExpectMeshAsFound(t)
		})
	}
}

// plainNamespace creates a namespace outside the mesh with a backend Service in it.
func plainNamespace(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plain", Labels: map[string]string{labsv1.LabelEnabled: "true"}}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "plain", Name: "backend"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	for _, o := range []client.Object{ns, svc} {
		if err := suite.K8s.Create(ctx, o); client.IgnoreAlreadyExists(err) != nil {
			t.Fatal(err)
		}
	}
	return ns.Name
}

// TestPolicyDeletedMidRunIsRecreated: someone deletes the set-aside AuthorizationPolicy during the run; the run
// reports the interference and restore creates the policy again from the journal, exactly as it was.
func TestPolicyDeletedMidRunIsRecreated(t *testing.T) {
	suite.Start(t, suite.Options())
	g := NewWithT(t)
	suite.SlowPropagation(t, 2*time.Second) // keep the run inside its weakened steps for a while
	run := suite.NewRun(labsv1.LabAuthorizationPolicy)
	suite.Create(t, run)
	g.Eventually(func() map[string]string {
		return suite.ReadMesh(suite.PolicyRef).GetLabels()
	}).WithTimeout(30 * time.Second).WithPolling(10 * time.Millisecond).Should(HaveKey(mesh.LabelChangedBy))
	g.Expect(suite.K8s.Delete(context.Background(), suite.ReadMesh(suite.PolicyRef))).To(Succeed())
	done := suite.Finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed))
	g.Expect(suite.NotPassed(done)).To(ContainSubstring("interfered"))
	g.Expect(meta.IsStatusConditionTrue(done.Status.Conditions, labsv1.ConditionMeshRestored)).To(BeTrue())
	suite.ExpectMeshAsFound(t)
}

// TestStepTimeoutStillRestores: inside the weakened window the run's observers are gone and pods stop starting;
// the probe step times out (Error) and the run restores.
func TestStepTimeoutStillRestores(t *testing.T) {
	o := suite.Options()
	o.PodStartGrace = time.Second
	suite.Start(t, o)
	g := NewWithT(t)
	t.Cleanup(func() { suite.SB.SetPodStartLatency(0) })
	suite.SlowPropagation(t, 3*time.Second) // keep the run inside non-mesh-allowed for a while
	run := suite.NewRun(labsv1.LabPeerAuthentication)
	run.Spec.Probe.SettleTimeout = &metav1.Duration{Duration: time.Second}
	run.Spec.Probe.RequestTimeout = &metav1.Duration{Duration: 500 * time.Millisecond}
	suite.Create(t, run)
	suite.WaitForMode(t, "PERMISSIVE")
	suite.SB.SetPodStartLatency(time.Hour)
	cur := &labsv1.LabRun{}
	g.Expect(suite.K8s.Get(context.Background(), client.ObjectKeyFromObject(run), cur)).To(Succeed())
	pods := &corev1.PodList{}
	g.Expect(suite.K8s.List(context.Background(), pods, client.MatchingLabels{labsv1.LabelLabRun: string(cur.UID), labsv1.LabelProbe: "true"})).To(Succeed())
	g.Expect(pods.Items).NotTo(BeEmpty(), "the run's observers")
	for i := range pods.Items {
		g.Expect(suite.K8s.Delete(context.Background(), &pods.Items[i])).To(Succeed())
	}
	done := suite.Finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed))
	g.Expect(suite.NotPassed(done)).To(ContainSubstring("step timed out"))
	g.Expect(meta.IsStatusConditionTrue(done.Status.Conditions, labsv1.ConditionMeshRestored)).To(BeTrue())
	suite.SB.SetPodStartLatency(0)
	suite.ExpectMeshAsFound(t)
}
