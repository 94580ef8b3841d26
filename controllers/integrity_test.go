package controllers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

// The integrity tests act as someone who wants another team's verdict to be wrong or their run never to end:
// admission refuses the forgery, and where admission is off (a binding deleted) the controller still does not
// believe it.

// refusedByAdmission: the API server refused the request (a ValidatingAdmissionPolicy denies as Invalid or
// Forbidden), naming why.
func refusedByAdmission(g Gomega, err error, why string) {
	g.ExpectWithOffset(1, apierrors.IsInvalid(err) || apierrors.IsForbidden(err)).To(BeTrue(), "want refused, got %v", err)
	g.ExpectWithOffset(1, err.Error()).To(ContainSubstring(why))
}

// eventuallyRefused: the API server refuses try (a dry run), naming why. Eventually: a binding another test put
// back is enforced again only once the API server has loaded it.
func eventuallyRefused(t *testing.T, try func() error, why string) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) { refusedByAdmission(g, try(), why) }).
		WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
}

// TestHiddenReplicaIsStillAnEndpoint: a replica of the target labelled as a probe, taking plaintext through a
// workload PERMISSIVE PeerAuthentication, must fail a Verify run, not be left out of it. Admission refuses the
// label; with admission off, the controller does not leave a target pod out for a label.
func TestHiddenReplicaIsStillAnEndpoint(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	backends := &corev1.PodList{}
	g.Expect(k8s.List(ctx, backends, client.InNamespace(sandbox.DemoNamespace), client.MatchingLabels{"app": "backend"})).To(Succeed())
	g.Expect(backends.Items).To(HaveLen(1))
	first := backends.Items[0]
	hidden := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: first.Namespace, Name: "backend-hidden-replica",
		Labels: map[string]string{labsv1.LabelProbe: "x", "replica": "hidden"}}, Spec: *first.Spec.DeepCopy()}
	for k, v := range first.Labels {
		hidden.Labels[k] = v
	}
	hidden.Spec.NodeName = sb.Nodes[2]

	eventuallyRefused(t, func() error { return k8s.Create(ctx, hidden.DeepCopy(), client.DryRunAll) }, "labs.ambientlab.io/")

	withoutBinding(t, "labrun-object-marks")
	g.Eventually(func() error { return k8s.Create(ctx, hidden.DeepCopy()) }).WithTimeout(30*time.Second).
		WithPolling(50*time.Millisecond).Should(Succeed(), "the API server stops enforcing a deleted binding")
	t.Cleanup(func() {
		_ = k8s.Delete(ctx, hidden, client.GracePeriodSeconds(0))
		NewWithT(t).Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(hidden), &corev1.Pod{}))
		}).WithTimeout(30 * time.Second).Should(BeTrue())
	})
	permissive := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"selector": map[string]any{"matchLabels": map[string]any{"replica": "hidden"}},
		"mtls":     map[string]any{"mode": "PERMISSIVE"},
	}}}
	permissive.SetGroupVersionKind(mesh.GVK(mesh.KindPeerAuthentication))
	permissive.SetNamespace(sandbox.DemoNamespace)
	permissive.SetName("hidden-replica-permissive")
	g.Expect(k8s.Create(ctx, permissive)).To(Succeed())
	t.Cleanup(func() {
		_ = k8s.Delete(ctx, permissive)
		waitPropagated(t, testDelay)
	})
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(hidden), hidden)).To(Succeed())
		g.Expect(hidden.Status.Phase).To(Equal(corev1.PodRunning))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	waitPropagated(t, testDelay)

	startManager(t, managerOptions())
	done := verifyRun(t, []labsv1.LabName{labsv1.LabPeerAuthentication})
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed), notPassed(done))
	st := stepOf(t, done, labsv1.LabPeerAuthentication, "non-mesh-denied")
	g.Expect(st.Verdict).To(Equal(labsv1.VerdictFail), st.Message)
	g.Expect(st.Message).To(ContainSubstring(hidden.Name), "the failing endpoint is the hidden replica")
}

// observerOfRun waits for the run's observer of the given kind (its step label) to run, and returns it.
func observerOfRun(t *testing.T, run *labsv1.LabRun, step string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	NewWithT(t).Eventually(func(g Gomega) {
		cur := &labsv1.LabRun{}
		g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(run), cur)).To(Succeed())
		pods := &corev1.PodList{}
		g.Expect(k8s.List(context.Background(), pods, client.MatchingLabels{labsv1.LabelLabRun: string(cur.UID),
			labsv1.LabelStep: step})).To(Succeed())
		g.Expect(pods.Items).To(HaveLen(1))
		g.Expect(pods.Items[0].Status.Phase).To(Equal(corev1.PodRunning))
		pod = &pods.Items[0]
	}).WithTimeout(30 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())
	return pod
}

// unanswerableRun is an mtls run whose client-allowed step waits (the target path answers 503) until its settle
// runs out: long enough to tamper with its observer.
func unanswerableRun(t *testing.T) *labsv1.LabRun {
	run := newRun(labsv1.LabMTLS)
	run.Spec.Target.Path = "/status/503"
	run.Spec.Probe.SettleTimeout = &metav1.Duration{Duration: 30 * time.Second}
	create(t, run)
	return run
}

// TestTamperedObserverEndsItsStepInError: an observer whose image was swapped, or that was deleted and created
// again under its name, is not the pod the run started: its log is not evidence, and the step ends in Error
// naming the tampering. Admission refuses both to anyone but the manager; they are done here with it off.
func TestTamperedObserverEndsItsStepInError(t *testing.T) {
	startManager(t, managerOptions())
	ctx := context.Background()

	t.Run("admission refuses changing or deleting a probe pod", func(t *testing.T) {
		run := unanswerableRun(t)
		pod := observerOfRun(t, run, "observe-client-target")
		grant(t, "tenant-forger", sandbox.DemoNamespace, rule("", "pods", "get", "update", "delete"))
		swap := func(c client.Client) func() error {
			return func() error {
				cur := &corev1.Pod{}
				if err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), cur); err != nil {
					return err
				}
				cur.Spec.Containers[0].Image = "registry.example/forger:1"
				return c.Update(ctx, cur, client.DryRunAll)
			}
		}
		tenant := asUser(t, "tenant-forger")
		eventuallyRefused(t, swap(tenant), "only the operator changes it")
		eventuallyRefused(t, swap(k8s), "only the operator changes it")
		eventuallyRefused(t, func() error { return tenant.Delete(ctx, pod.DeepCopy(), client.DryRunAll) }, "removes it when the run ends")
	})

	t.Run("image swapped", func(t *testing.T) {
		g := NewWithT(t)
		withoutBinding(t, "labrun-object-marks")
		run := unanswerableRun(t)
		pod := observerOfRun(t, run, "observe-client-target")
		g.Eventually(func() error {
			cur := &corev1.Pod{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), cur); err != nil {
				return err
			}
			cur.Spec.Containers[0].Image = "registry.example/forger:1"
			return k8s.Update(ctx, cur)
		}).WithTimeout(30*time.Second).WithPolling(50*time.Millisecond).Should(Succeed(), "the API server stops enforcing a deleted binding")
		done := finished(t, run)
		st := stepOf(t, done, labsv1.LabMTLS, "client-allowed")
		g.Expect(st.Verdict).To(Equal(labsv1.VerdictError), st.Message)
		g.Expect(st.Message).To(And(ContainSubstring("tampered"), ContainSubstring("registry.example/forger:1")))
		g.Expect(st.Message).NotTo(ContainSubstring("settle"), "ended at once, not when settle ran out")
	})

	t.Run("deleted and created again under its name", func(t *testing.T) {
		g := NewWithT(t)
		withoutBinding(t, "labrun-object-marks")
		run := unanswerableRun(t)
		pod := observerOfRun(t, run, "observe-client-target")
		g.Eventually(func() error { return k8s.Delete(ctx, pod, client.GracePeriodSeconds(0)) }).WithTimeout(30 * time.Second).
			WithPolling(50 * time.Millisecond).Should(Succeed())
		recreated := false
		g.Eventually(func() bool {
			cur := &corev1.Pod{}
			err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), cur)
			recreated = err == nil && cur.UID != pod.UID
			return recreated || apierrors.IsNotFound(err)
		}).WithTimeout(10 * time.Second).WithPolling(5 * time.Millisecond).Should(BeTrue())
		if recreated {
			t.Skip("the manager recreated its observer before the namesake could be created; the race is lost, not the property")
		}
		namesake := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, Labels: pod.Labels,
			Annotations: pod.Annotations}, Spec: *pod.Spec.DeepCopy()}
		err := k8s.Create(ctx, namesake)
		if apierrors.IsAlreadyExists(err) {
			t.Skip("the manager recreated its observer first; the race is lost, not the property")
		}
		g.Expect(err).NotTo(HaveOccurred())
		t.Cleanup(func() { _ = k8s.Delete(ctx, namesake, client.GracePeriodSeconds(0)) })
		done := finished(t, run)
		st := stepOf(t, done, labsv1.LabMTLS, "client-allowed")
		g.Expect(st.Verdict).To(Equal(labsv1.VerdictError), st.Message)
		g.Expect(st.Message).To(And(ContainSubstring("tampered"), ContainSubstring(string(namesake.UID))))
	})
}

// TestFinalizerCannotKeepTheTemporaryPeerAuthentication: a finalizer on the run's temporary PERMISSIVE
// PeerAuthentication would keep it in force after restore deleted it. Admission refuses it; with admission off,
// restore removes it, and the run says MeshRestored only once the object is gone.
func TestFinalizerCannotKeepTheTemporaryPeerAuthentication(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	slowPropagation(t, 2*time.Second) // a window of seconds, to act in
	startManager(t, managerOptions())
	run := newRun(labsv1.LabPeerAuthentication)
	create(t, run)

	temporary := func(g Gomega) *unstructured.Unstructured {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(mesh.GVK(mesh.KindPeerAuthentication).GroupVersion().WithKind("PeerAuthenticationList"))
		g.Expect(k8s.List(ctx, list, client.InNamespace(sandbox.DemoNamespace), client.HasLabels{mesh.LabelChangedBy})).To(Succeed())
		g.Expect(list.Items).To(HaveLen(1))
		return &list.Items[0]
	}
	var pa *unstructured.Unstructured
	g.Eventually(func(g Gomega) { pa = temporary(g) }).WithTimeout(60 * time.Second).WithPolling(10 * time.Millisecond).Should(Succeed())

	eventuallyRefused(t, func() error {
		held := temporary(g)
		held.SetFinalizers([]string{"tenant.example/keep"})
		return k8s.Update(ctx, held, client.DryRunAll)
	}, "finalizers")

	withoutBinding(t, "labrun-mesh-marks")
	g.Eventually(func() error {
		cur := temporary(g)
		cur.SetFinalizers([]string{"tenant.example/keep"})
		return k8s.Update(ctx, cur)
	}).WithTimeout(5 * time.Second).WithPolling(10 * time.Millisecond).Should(Succeed())
	t.Cleanup(func() { // should there be one left, let it go
		cur := &unstructured.Unstructured{}
		cur.SetGroupVersionKind(pa.GroupVersionKind())
		if k8s.Get(ctx, client.ObjectKeyFromObject(pa), cur) == nil {
			cur.SetFinalizers(nil)
			_ = k8s.Update(ctx, cur)
		}
	})

	done := finished(t, run)
	g.Expect(meta.IsStatusConditionTrue(done.Status.Conditions, labsv1.ConditionMeshRestored)).To(BeTrue(), notPassed(done))
	err := k8s.Get(ctx, client.ObjectKeyFromObject(pa), &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": pa.GetAPIVersion(), "kind": pa.GetKind()}})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the temporary PeerAuthentication is gone once MeshRestored: %v", err)
	expectMeshAsFound(t)
}

// TestNoWindowWithoutObservers: when no observer can run (the probe image is one the manager may not use, or one
// no kubelet can pull), the run ends without a single change to the mesh and its message says why.
func TestNoWindowWithoutObservers(t *testing.T) {
	startManager(t, managerOptions())
	for _, tc := range []struct{ image, why string }{
		{"registry.invalid/not-in-the-allowed-list:1", "not listed in probeImages"},
		{unpullableImage, "ErrImagePull"},
	} {
		t.Run(tc.image, func(t *testing.T) {
			g := NewWithT(t)
			paBefore, apBefore := readMesh(peerAuthRef).GetResourceVersion(), readMesh(policyRef).GetResourceVersion()
			run := newRun(labsv1.LabPeerAuthentication, labsv1.LabAuthorizationPolicy)
			run.Spec.Probe.Image = tc.image
			create(t, run)
			done := finished(t, run)
			g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed))
			g.Expect(done.Status.Journal).To(BeEmpty(), "nothing journaled: nothing changed")
			g.Expect(done.Status.Exposure.Since).To(BeNil(), "no window opened")
			g.Expect(done.Status.Message).To(ContainSubstring(tc.why))
			weakening := 0 // the first step that would have weakened the mesh errs, naming the cause
			for _, st := range done.Status.Steps {
				if strings.Contains(st.Message, "The mesh was not weakened") {
					weakening++
					g.Expect(st.Verdict).To(Equal(labsv1.VerdictError))
					g.Expect(st.Message).To(ContainSubstring(tc.why))
				}
			}
			g.Expect(weakening).To(Equal(1), notPassed(done))
			g.Expect(temporaryPeerAuths()).To(BeEmpty())
			g.Expect(readMesh(peerAuthRef).GetResourceVersion()).To(Equal(paBefore))
			g.Expect(readMesh(policyRef).GetResourceVersion()).To(Equal(apBefore))
			g.Expect(meta.IsStatusConditionTrue(done.Status.Conditions, labsv1.ConditionMeshRestored)).To(BeTrue())
		})
	}
}

// TestMissingClientServiceAccountFailsAtPreflight: a run whose client ServiceAccount does not exist ends at
// preflight, naming it, instead of waiting a step budget per probe step for an observer that cannot start.
func TestMissingClientServiceAccountFailsAtPreflight(t *testing.T) {
	startManager(t, managerOptions())
	g := NewWithT(t)
	run := newRun(labsv1.LabPeerAuthentication)
	run.Spec.Client.ServiceAccount = "frontnd"
	create(t, run)
	done := finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed))
	g.Expect(done.Status.Reason).To(Equal(labsv1.ReasonPreflightFailed))
	g.Expect(done.Status.Message).To(ContainSubstring("ServiceAccount demo/frontnd"))
	g.Expect(done.Status.Journal).To(BeEmpty())
	for _, st := range done.Status.Steps {
		g.Expect(st.StartTime).To(BeNil(), "no step ran: %s/%s", st.Lab, st.Name)
	}
}

// TestForgedScheduleRunIsRefused: a LabSchedule's history is the runs labelled as its own; only the manager may
// write that label, so no one slips a run of her own (with her own verdict) into another team's schedule.
func TestForgedScheduleRunIsRefused(t *testing.T) {
	g := NewWithT(t)
	run := newRun(labsv1.LabMTLS)
	run.Labels = map[string]string{labsv1.LabelSchedule: "platform-nightly"}
	eventuallyRefused(t, func() error { return k8s.Create(context.Background(), run.DeepCopy(), client.DryRunAll) }, "labs.ambientlab.io/")
	run.Labels = nil
	g.Expect(k8s.Create(context.Background(), run, client.DryRunAll)).To(Succeed(), "the same run without the mark")
}
