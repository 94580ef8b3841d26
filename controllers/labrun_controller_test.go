package controllers_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

func backendServer(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/get" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// resettingServer accepts connections and resets them, as ztunnel does to a denied client.
func resettingServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*net.TCPConn).SetLinger(0)
			_ = c.Close()
		}
	}()
	return ln.Addr().String()
}

func TestSkeletonMTLSRunSucceeds(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, true)
	seedWorld(t, ns)
	fakeKubelet(t, ns, backendServer(t))
	startManager(t)

	run := newLabRun(ns, labsv1.LabMTLS)
	g.Expect(k8s.Create(context.Background(), run)).To(Succeed())
	run = finishedRun(t, client.ObjectKeyFromObject(run))

	g.Expect(run.Status.Phase).To(Equal(labsv1.PhaseSucceeded), run.Status.Message)
	g.Expect(run.Finalizers).To(ContainElement(labsv1.Finalizer))
	g.Expect(run.Status.Steps).NotTo(BeEmpty())
	step := run.Status.Steps[0]
	g.Expect(step.Lab).To(Equal(labsv1.LabMTLS))
	g.Expect(step.Name).To(Equal("client-allowed"))
	g.Expect(step.Verdict).To(Equal(labsv1.VerdictPass), step.Message)
	g.Expect(step.HTTPCode).To(HaveValue(BeEquivalentTo(200)))
	g.Expect(step.ExitCode).To(HaveValue(BeEquivalentTo(0)))
	g.Expect(step.Attempts).To(BeNumerically(">=", 1))
	g.Expect(step.Settle).NotTo(BeNil())
	g.Expect(step.StartTime).NotTo(BeNil())
	g.Expect(step.CompletionTime).NotTo(BeNil())
	g.Expect(run.Status.Summary).To(Equal(labsv1.Summary{Total: int32(len(run.Status.Steps)),
		Passed: int32(len(run.Status.Steps))}))
	g.Expect(run.Status.ObservedGeneration).To(Equal(run.Generation))
	g.Expect(meta.IsStatusConditionTrue(run.Status.Conditions, labsv1.ConditionReady)).To(BeTrue())
	g.Expect(meta.IsStatusConditionTrue(run.Status.Conditions, labsv1.ConditionMeshRestored)).To(BeTrue())
	g.Expect(meta.FindStatusCondition(run.Status.Conditions, labsv1.ConditionReconciling)).To(BeNil())
	expectNoProbePods(t, ns)
}

func TestSkeletonProbeMismatchFailsRun(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, true)
	seedWorld(t, ns)
	fakeKubelet(t, ns, resettingServer(t))
	startManager(t)

	run := newLabRun(ns, labsv1.LabMTLS)
	run.Spec.Probe.SettleTimeout = &metav1.Duration{Duration: 300 * time.Millisecond}
	run.Spec.Probe.RequestTimeout = &metav1.Duration{Duration: 200 * time.Millisecond}
	g.Expect(k8s.Create(context.Background(), run)).To(Succeed())
	run = finishedRun(t, client.ObjectKeyFromObject(run))

	g.Expect(run.Status.Phase).To(Equal(labsv1.PhaseFailed))
	g.Expect(run.Status.Steps[0].Verdict).To(Equal(labsv1.VerdictFail))
	g.Expect(run.Status.Steps[0].ExitCode).To(HaveValue(BeEquivalentTo(56)))
	g.Expect(run.Status.Steps[0].Observed).To(ContainSubstring("connection reset"))
	g.Expect(meta.IsStatusConditionTrue(run.Status.Conditions, labsv1.ConditionStalled)).To(BeTrue())
	g.Expect(meta.IsStatusConditionFalse(run.Status.Conditions, labsv1.ConditionReady)).To(BeTrue())
	expectNoProbePods(t, ns)
}

func TestPreflightFailuresChangeNothing(t *testing.T) {
	startManager(t)
	cases := []struct {
		name    string
		ambient bool
		seed    bool
		message string
	}{
		{name: "missing Service", ambient: true, seed: false, message: "target Service"},
		{name: "namespace not enrolled", ambient: false, seed: true, message: "not enrolled in ambient mode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			ns := newNamespace(t, tc.ambient)
			if tc.seed {
				seedWorld(t, ns)
			}
			run := newLabRun(ns, labsv1.LabMTLS)
			g.Expect(k8s.Create(context.Background(), run)).To(Succeed())
			run = finishedRun(t, client.ObjectKeyFromObject(run))
			g.Expect(run.Status.Phase).To(Equal(labsv1.PhaseFailed))
			g.Expect(run.Status.Reason).To(Equal(labsv1.ReasonPreflightFailed))
			g.Expect(run.Status.Message).To(ContainSubstring(tc.message))
			g.Expect(run.Status.Steps).To(HaveEach(HaveField("Verdict", labsv1.VerdictSkipped)))
			expectNoProbePods(t, ns)
		})
	}
}

func TestDeletingARunRemovesItsProbePods(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, true)
	seedWorld(t, ns)
	startManager(t) // no kubelet: the probe pod stays pending

	run := newLabRun(ns, labsv1.LabMTLS)
	g.Expect(k8s.Create(context.Background(), run)).To(Succeed())
	g.Eventually(func() ([]corev1.Pod, error) {
		return probePods(ns)
	}).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(HaveLen(1))

	g.Expect(k8s.Delete(context.Background(), run)).To(Succeed())
	g.Eventually(func() error {
		return k8s.Get(context.Background(), client.ObjectKeyFromObject(run), &labsv1.LabRun{})
	}).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Satisfy(isNotFound))
	expectNoProbePods(t, ns)
}

func probePods(ns string) ([]corev1.Pod, error) {
	pods := &corev1.PodList{}
	err := k8s.List(context.Background(), pods, client.InNamespace(ns), client.MatchingLabels{labsv1.LabelProbe: "true"})
	return pods.Items, err
}

// expectNoProbePods waits until every probe pod in ns is gone (deletion is asynchronous: kubelet confirms it;
// with no kubelet the API server removes a pod that never ran at once).
func expectNoProbePods(t *testing.T, ns string) {
	t.Helper()
	NewWithT(t).Eventually(func() ([]corev1.Pod, error) {
		return probePods(ns)
	}).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(BeEmpty())
}
