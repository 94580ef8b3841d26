package labschedule_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/probe"
	"github.com/ambientlab/labrun-operator/internal/sandbox/dataplane"
	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// warmSchedule verifies the mtls and peer-authentication labs every 2s: per-node observers of the client and of
// the non-mesh caller, and the non-mesh namespace fixture.
func warmSchedule() *labsv1.LabSchedule {
	ls := suite.NewSchedule("@every 2s")
	ls.Spec.Template.Spec.Labs = []labsv1.LabName{labsv1.LabMTLS, labsv1.LabPeerAuthentication}
	return ls
}

// warmPods are the schedule's warm observers, by name → UID.
func warmPods(g Gomega, ls *labsv1.LabSchedule) map[string]string {
	pods := &corev1.PodList{}
	g.Expect(suite.K8s.List(context.Background(), pods, client.MatchingLabels{labsv1.LabelWarm: string(ls.UID)})).To(Succeed())
	out := map[string]string{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp.IsZero() {
			out[p.Namespace+"/"+p.Name] = string(p.UID)
		}
	}
	return out
}

// succeededAfter waits for a run of the schedule created after since to succeed and returns it.
func succeededAfter(t *testing.T, ls *labsv1.LabSchedule, since time.Time) *labsv1.LabRun {
	t.Helper()
	var out *labsv1.LabRun
	NewWithT(t).Eventually(func(g Gomega) {
		for _, run := range suite.RunsOf(g, ls) {
			if run.CreationTimestamp.Time.Before(since) {
				continue
			}
			g.Expect(run.Status.Phase).NotTo(Equal(labsv1.PhaseFailed), suite.NotPassed(&run))
			if run.Status.Phase == labsv1.PhaseSucceeded {
				out = run.DeepCopy()
				return
			}
		}
		g.Expect(out).NotTo(BeNil(), "a run created after %s has succeeded", since)
	}).WithTimeout(90 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
	return out
}

// TestWarmObserversServeTheScheduleSteadyState: a schedule's first Verify run creates one observer per node per
// caller, kept by the schedule; every later run arms them and creates no pod at all (no observer, no fixture
// namespace's pods), judging only the attempts made under its own arm. When the schedule goes, so does all it kept.
func TestWarmObserversServeTheScheduleSteadyState(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	suite.Start(t, suite.Options())
	ls := warmSchedule()
	cleanup := suite.CreateSchedule(t, ls)
	first := succeededAfter(t, ls, time.Time{})
	nodes := len(suite.SB.Nodes)
	warm := warmPods(g, ls)
	g.Expect(warm).To(HaveLen(2*nodes), "one warm observer per node for the client and for the non-mesh caller")

	// From here on, no probe pod may be created anywhere.
	pods := &corev1.PodList{}
	g.Expect(suite.K8s.List(ctx, pods, client.HasLabels{labsv1.LabelProbe})).To(Succeed())
	w, err := suite.K8s.Watch(ctx, &corev1.PodList{}, client.HasLabels{labsv1.LabelProbe},
		&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: pods.ResourceVersion}})
	g.Expect(err).NotTo(HaveOccurred())
	defer w.Stop()
	var created []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Added {
				created = append(created, p.Namespace+"/"+p.Name)
			}
		}
	}()

	second := succeededAfter(t, ls, first.CreationTimestamp.Add(time.Second))
	third := succeededAfter(t, ls, second.CreationTimestamp.Add(time.Second))
	w.Stop()
	<-done
	g.Expect(created).To(BeEmpty(), "steady-state runs create no pod")
	g.Expect(warmPods(g, ls)).To(Equal(warm), "the same observers served every run")
	for _, run := range []*labsv1.LabRun{second, third} {
		allowed := suite.StepOf(t, run, labsv1.LabMTLS, "client-allowed")
		g.Expect(allowed.Verdict).To(Equal(labsv1.VerdictPass))
		g.Expect(allowed.Coverage).To(HaveLen(nodes+1), "every node as a source, and the endpoint")
		g.Expect(allowed.Attempts).To(BeNumerically(">", 0))
		kept := suite.StepOf(t, run, labsv1.LabPeerAuthentication, "remove-non-mesh-namespace")
		g.Expect(kept.Observed).To(ContainSubstring("kept for LabSchedule"))
	}
	g.Expect(suite.StepOf(t, first, labsv1.LabPeerAuthentication, "remove-non-mesh-namespace").Observed).To(
		ContainSubstring("kept for LabSchedule"), "the first run, listed by the schedule, keeps them too")
	// A run that passed writes one Event, its outcome: none for its preflight or its steps.
	g.Eventually(func(g Gomega) {
		events := &eventsv1.EventList{}
		g.Expect(suite.K8s.List(ctx, events, client.InNamespace(second.Namespace))).To(Succeed())
		var reasons []string
		for _, e := range events.Items {
			if e.Regarding.UID == second.UID {
				reasons = append(reasons, e.Reason)
			}
		}
		g.Expect(reasons).To(ConsistOf("RunSucceeded"))
	}).WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

	// Between runs the observers are idle: the arms are gone.
	g.Eventually(func(g Gomega) {
		cms := &corev1.ConfigMapList{}
		g.Expect(suite.K8s.List(ctx, cms, client.MatchingLabels{labsv1.LabelArm: "true", labsv1.LabelWarm: string(ls.UID)})).To(Succeed())
		active := 0
		for _, run := range suite.RunsOf(g, ls) {
			if run.Status.CompletionTime == nil {
				active++
			}
		}
		g.Expect(active > 0 || len(cms.Items) == 0).To(BeTrue(), "no arm is left while no run is active")
	}).WithTimeout(30 * time.Second).Should(Succeed())

	cleanup()
	g.Eventually(func(g Gomega) {
		g.Expect(warmPods(g, ls)).To(BeEmpty())
		err := suite.K8s.Get(ctx, client.ObjectKey{Name: mesh.NonMeshNamespace(string(ls.UID))}, &corev1.Namespace{})
		if err == nil {
			ns := &corev1.Namespace{}
			g.Expect(suite.K8s.Get(ctx, client.ObjectKey{Name: mesh.NonMeshNamespace(string(ls.UID))}, ns)).To(Succeed())
			g.Expect(ns.DeletionTimestamp.IsZero()).To(BeFalse(), "the warm non-mesh namespace is being deleted")
		} else {
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
		}
		cms := &corev1.ConfigMapList{}
		g.Expect(suite.K8s.List(ctx, cms, client.MatchingLabels{labsv1.LabelWarm: string(ls.UID)})).To(Succeed())
		g.Expect(cms.Items).To(BeEmpty(), "no arm and no warm record is left")
	}).WithTimeout(60 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
}

// TestWarmObserversFollowTheEndpoints: an endpoint that comes up while a run's per-node step is under way is armed
// into the observers and probed in that run; the step covers it. (Observers started with a fixed list, as a
// one-off run's are, would never call it, and the step would fail on it.)
func TestWarmObserversFollowTheEndpoints(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	suite.Start(t, suite.Options())
	nodes := suite.SB.Nodes
	// The client's node refuses everything, so the run's client-allowed step keeps waiting (settle 20s) until
	// the test has added the endpoint.
	suite.SB.SetNodeFault(nodes[0], dataplane.FaultRefuseAll)
	t.Cleanup(func() { suite.SB.SetNodeFault(nodes[0], dataplane.FaultNone) })
	ls := suite.NewSchedule("@every 2s")
	ls.Spec.Template.Spec.Probe.SettleTimeout = &metav1.Duration{Duration: 20 * time.Second}
	suite.CreateSchedule(t, ls)

	// The first run arms the observers: each node's arm calls the one endpoint.
	arm := func(g Gomega) map[string]probe.Arm {
		cms := &corev1.ConfigMapList{}
		g.Expect(suite.K8s.List(ctx, cms, client.MatchingLabels{labsv1.LabelArm: "true", labsv1.LabelWarm: string(ls.UID)})).To(Succeed())
		g.Expect(cms.Items).To(HaveLen(1))
		out := map[string]probe.Arm{}
		for k, v := range cms.Items[0].Data {
			var a probe.Arm
			g.Expect(json.Unmarshal([]byte(v), &a)).To(Succeed())
			out[k] = a
		}
		return out
	}
	g.Eventually(func(g Gomega) { g.Expect(arm(g)).To(HaveLen(len(nodes))) }).WithTimeout(60 * time.Second).Should(Succeed())
	before := arm(g)
	second := suite.SecondBackend(t, nodes[2], "backend-warm-replica")
	var token string
	g.Eventually(func(g Gomega) {
		called := false
		for _, a := range arm(g) {
			called = called || slices.ContainsFunc(a.URLs, func(u string) bool { return strings.Contains(u, second.Status.PodIP) })
			token = a.Token
		}
		g.Expect(called).To(BeTrue(), "some node's observer calls the new endpoint")
	}).WithTimeout(20 * time.Second).Should(Succeed())
	for _, a := range before {
		g.Expect(a.Token).To(Equal(token), "the run that was armed before the endpoint came is the one re-armed")
	}
	suite.SB.SetNodeFault(nodes[0], dataplane.FaultNone)

	// That run, under way when the endpoint came, passes and covers it.
	var run *labsv1.LabRun
	g.Eventually(func(g Gomega) {
		for _, r := range suite.RunsOf(g, ls) {
			if string(r.UID) == token {
				run = r.DeepCopy()
			}
		}
		g.Expect(run).NotTo(BeNil())
		g.Expect(run.Status.CompletionTime).NotTo(BeNil())
	}).WithTimeout(60 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
	g.Expect(run.Status.Phase).To(Equal(labsv1.PhaseSucceeded), suite.NotPassed(run))
	allowed := suite.StepOf(t, run, labsv1.LabMTLS, "client-allowed")
	var endpoints []string
	for _, c := range allowed.Coverage {
		if c.Role == labsv1.RoleDestination {
			endpoints = append(endpoints, c.Endpoint)
			g.Expect(c.Verdict).To(Equal(labsv1.VerdictPass), "%+v", c)
		}
	}
	g.Expect(endpoints).To(ContainElement(HavePrefix(second.Name+" (")), "the endpoint added mid-run was probed")
}

// TestWarmObserversOfAScheduleDeletedWhileNoManagerRan: a schedule deleted while its manager was down leaves no
// event behind; the next manager finds its warm record with no schedule and removes what it kept.
func TestWarmObserversOfAScheduleDeletedWhileNoManagerRan(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	stop := suite.Start(t, suite.Options())
	ls := suite.NewSchedule("@every 2s")
	cleanup := suite.CreateSchedule(t, ls)
	succeededAfter(t, ls, time.Time{})
	// Suspended, and with no run active, no run holds the observers.
	patch := client.MergeFrom(ls.DeepCopy())
	ls.Spec.Suspend = ptr.To(true)
	g.Expect(suite.K8s.Patch(ctx, ls, patch)).To(Succeed())
	g.Eventually(func(g Gomega) {
		for _, run := range suite.RunsOf(g, ls) {
			g.Expect(run.Status.CompletionTime).NotTo(BeNil(), "run %s is still active", run.Name)
		}
	}).WithTimeout(60 * time.Second).Should(Succeed())
	g.Expect(warmPods(g, ls)).NotTo(BeEmpty())
	stop()
	g.Expect(suite.K8s.Delete(ctx, ls)).To(Succeed())

	suite.Start(t, suite.Options())
	g.Eventually(func(g Gomega) {
		g.Expect(warmPods(g, ls)).To(BeEmpty())
		cms := &corev1.ConfigMapList{}
		g.Expect(suite.K8s.List(ctx, cms, client.MatchingLabels{labsv1.LabelWarm: string(ls.UID)})).To(Succeed())
		g.Expect(cms.Items).To(BeEmpty(), "no warm record is left")
	}).WithTimeout(30 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
	cleanup() // the runs, while the second manager runs: their finalizers need it
}
