package guarantee_test

import (
	"context"
	"sort"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// teamB is a second team's namespace: its own workload web (protected by its own L4 policy, which allows its
// client), and another workload api, the bystander of a run on web.
const teamB = "team-b"

func teamBWorld(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: teamB,
		Labels: map[string]string{"istio.io/dataplane-mode": "ambient", labsv1.LabelEnabled: "true"}}}
	if err := suite.K8s.Create(ctx, ns); client.IgnoreAlreadyExists(err) != nil {
		t.Fatal(err)
	}
	var objs []client.Object
	for i, app := range []string{"web", "api"} {
		objs = append(objs,
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: teamB, Name: app}},
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: teamB, Name: app},
				Spec: corev1.ServiceSpec{Selector: map[string]string{"app": app},
					Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(80)}}}},
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: teamB, Name: app + "-0", Labels: map[string]string{"app": app}},
				Spec: corev1.PodSpec{NodeName: suite.SB.Nodes[i%len(suite.SB.Nodes)], ServiceAccountName: app,
					Containers: []corev1.Container{{Name: app, Image: "kong/httpbin:0.1.0",
						Ports: []corev1.ContainerPort{{ContainerPort: 80}}}}}})
	}
	objs = append(objs, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: teamB, Name: "client"}})
	for _, o := range objs {
		NewWithT(t).Expect(suite.K8s.Create(ctx, o)).To(Succeed(), "%T %s", o, o.GetName())
	}
	t.Cleanup(func() {
		for _, o := range objs {
			_ = suite.K8s.Delete(ctx, o, client.GracePeriodSeconds(0))
		}
		NewWithT(t).Eventually(func() bool {
			return apierrors.IsNotFound(suite.K8s.Get(ctx, client.ObjectKey{Namespace: teamB, Name: "web-0"}, &corev1.Pod{}))
		}).WithTimeout(30 * time.Second).Should(BeTrue())
	})
	suite.AddPolicy(t, teamB, "web-allow-client", nil, nil, map[string]any{
		"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
		"action":   "ALLOW",
		"rules": []any{map[string]any{"from": []any{map[string]any{"source": map[string]any{
			"principals": []any{"cluster.local/ns/team-b/sa/client"}}}}}},
	})
	NewWithT(t).Eventually(func(g Gomega) {
		for _, app := range []string{"web", "api"} {
			pod := &corev1.Pod{}
			g.Expect(suite.K8s.Get(ctx, client.ObjectKey{Namespace: teamB, Name: app + "-0"}, pod)).To(Succeed())
			g.Expect(pod.Status.Phase).To(Equal(corev1.PodRunning))
		}
	}).WithTimeout(30 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())
	suite.WaitPropagated(t, suite.TestDelay)
}

// teamBRun is team B's Lab run of the peer-authentication lab on its own workload.
func teamBRun() *labsv1.LabRun {
	run := suite.NewRun(labsv1.LabPeerAuthentication)
	run.Namespace = teamB
	run.Spec.Target.Service = "web"
	run.Spec.Client.ServiceAccount = "client"
	run.Spec.Mesh.AuthorizationPolicy = &labsv1.ObjectRef{Name: "web-allow-client"}
	return run
}

// waitWindowOpen waits until run has weakened the mesh.
func waitWindowOpen(t *testing.T, run *labsv1.LabRun) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		cur := &labsv1.LabRun{}
		g.Expect(suite.K8s.Get(context.Background(), client.ObjectKeyFromObject(run), cur)).To(Succeed())
		g.Expect(cur.Status.Exposure.Since).NotTo(BeNil(), "the run's window is open")
	}).WithTimeout(30 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())
}

// secondDuringFirstsWindow creates second once first's window is open, waits for both to end, and expects both
// to succeed.
func secondDuringFirstsWindow(t *testing.T, first, second *labsv1.LabRun) (firstDone, secondDone *labsv1.LabRun) {
	t.Helper()
	g := NewWithT(t)
	suite.Create(t, first)
	waitWindowOpen(t, first)
	suite.Create(t, second)
	firstDone, secondDone = suite.Finished(t, first), suite.Finished(t, second)
	g.Expect(firstDone.Status.Phase).To(Equal(labsv1.PhaseSucceeded), suite.NotPassed(firstDone))
	g.Expect(secondDone.Status.Phase).To(Equal(labsv1.PhaseSucceeded), suite.NotPassed(secondDone))
	return firstDone, secondDone
}

// window is when a finished run's first window opened (its first change done) and closed (its restore read
// back).
func window(t *testing.T, run *labsv1.LabRun, lab labsv1.LabName, change, restore string) (opened, closed time.Time) {
	t.Helper()
	return suite.StepOf(t, run, lab, change).CompletionTime.Time, suite.StepOf(t, run, lab, restore).CompletionTime.Time
}

// TestRunsOnAnotherWorkloadDoNotWait: a slow Lab run of one team holds the lock only on what its window reaches
// (its workload, its policy's pods, its bystander); another team's Lab run on another workload opens its own
// window meanwhile. With one lock for the whole mesh, the second run's window would open only after the first
// run's had closed.
func TestRunsOnAnotherWorkloadDoNotWait(t *testing.T) {
	teamBWorld(t)
	suite.Start(t, suite.Options())
	suite.SlowPropagation(t, 2*time.Second) // every window lasts at least this long
	g := NewWithT(t)
	slowDone, otherDone := secondDuringFirstsWindow(t, suite.NewRun(labsv1.LabPeerAuthentication), teamBRun())
	slowOpened, slowClosed := window(t, slowDone, labsv1.LabPeerAuthentication, "set-aside-policy", "restore-strict")
	otherOpened, _ := window(t, otherDone, labsv1.LabPeerAuthentication, "set-aside-policy", "restore-strict")
	g.Expect(otherOpened).To(BeTemporally(">", slowOpened))
	g.Expect(otherOpened).To(BeTemporally("<", slowClosed),
		"team B's window opened only after team A's closed: it waited for a lock on a workload it does not touch")
	suite.ExpectMeshAsFound(t)
	suite.ExpectNoLock(t)
}

// TestQueuedRunsAreServedInArrivalOrder: two runs queue behind a run on the same target; each shows its place,
// the one behind the next in line starts no pod while it waits, and they are served in the order they asked.
func TestQueuedRunsAreServedInArrivalOrder(t *testing.T) {
	suite.Start(t, suite.Options())
	suite.SlowPropagation(t, 2*time.Second) // the first run holds the lock a while
	g := NewWithT(t)
	first, second, third := suite.NewRun(labsv1.LabPeerAuthentication), suite.NewRun(labsv1.LabAuthorizationPolicy),
		suite.NewRun(labsv1.LabAuthorizationPolicy)
	suite.Create(t, first)
	queued := func(run *labsv1.LabRun, ahead int32) {
		t.Helper()
		g.Eventually(func(g Gomega) {
			cur := &labsv1.LabRun{}
			g.Expect(suite.K8s.Get(context.Background(), client.ObjectKeyFromObject(run), cur)).To(Succeed())
			g.Expect(cur.Status.Phase).To(Equal(labsv1.PhaseQueued))
			g.Expect(cur.Status.QueuePosition).To(Equal(ahead))
			g.Expect(cur.Status.LockHolder).To(Equal(first.Namespace + "/" + first.Name))
		}).WithTimeout(30 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())
	}
	waitWindowOpen(t, first)
	suite.Create(t, second)
	queued(second, 1)
	suite.Create(t, third)
	queued(third, 2)
	// Two ahead: the third run holds no probe pod while it waits; the second, next in line, has its observers.
	pods := func(run *labsv1.LabRun) []corev1.Pod {
		list := &corev1.PodList{}
		g.Expect(suite.K8s.List(context.Background(), list, client.MatchingLabels{labsv1.LabelLabRun: string(run.UID)})).To(Succeed())
		return list.Items
	}
	g.Expect(pods(third)).To(BeEmpty(), "a run two places back started pods")
	g.Eventually(func() []corev1.Pod { return pods(second) }).WithTimeout(30*time.Second).ShouldNot(BeEmpty(),
		"the next in line readies its observers")
	firstDone, secondDone, thirdDone := suite.Finished(t, first), suite.Finished(t, second), suite.Finished(t, third)
	for _, done := range []*labsv1.LabRun{firstDone, secondDone, thirdDone} {
		g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), "%s: %s", done.Name, suite.NotPassed(done))
	}
	_, firstClosed := window(t, firstDone, labsv1.LabPeerAuthentication, "set-aside-policy", "restore-strict")
	secondOpened, secondClosed := window(t, secondDone, labsv1.LabAuthorizationPolicy, "set-aside-policy", "reapply-policy")
	thirdOpened, _ := window(t, thirdDone, labsv1.LabAuthorizationPolicy, "set-aside-policy", "reapply-policy")
	g.Expect(secondOpened).To(BeTemporally(">", firstClosed))
	g.Expect(thirdOpened).To(BeTemporally(">", secondClosed), "the third run was served before the second")
	suite.ExpectMeshAsFound(t)
	suite.ExpectNoLock(t)
}

// TestLockIsHeldOnlyThroughTheWindow: a run gives the lock back at the end of the lab whose window it restored,
// and asks again for its next window, behind whoever asked meanwhile: a run queued behind it opens its window
// between the first run's two windows, not after the whole first run.
func TestLockIsHeldOnlyThroughTheWindow(t *testing.T) {
	suite.Start(t, suite.Options())
	suite.SlowPropagation(t, time.Second) // the first window lasts a while
	g := NewWithT(t)
	first := suite.NewRun(labsv1.LabAuthorizationPolicy, labsv1.LabPeerAuthentication)
	suite.Create(t, first)
	waitWindowOpen(t, first)
	second := suite.NewRun(labsv1.LabAuthorizationPolicy)
	suite.Create(t, second)
	firstDone, secondDone := suite.Finished(t, first), suite.Finished(t, second)
	g.Expect(firstDone.Status.Phase).To(Equal(labsv1.PhaseSucceeded), suite.NotPassed(firstDone))
	g.Expect(secondDone.Status.Phase).To(Equal(labsv1.PhaseSucceeded), suite.NotPassed(secondDone))
	firstLabEnd := suite.StepOf(t, firstDone, labsv1.LabAuthorizationPolicy, "attacker-denied").CompletionTime.Time
	secondOpened, secondClosed := window(t, secondDone, labsv1.LabAuthorizationPolicy, "set-aside-policy", "reapply-policy")
	firstAgain, _ := window(t, firstDone, labsv1.LabPeerAuthentication, "set-aside-policy", "restore-strict")
	g.Expect(secondOpened).To(BeTemporally(">", firstLabEnd), "the second run's window opened inside the first's lab")
	g.Expect(secondOpened).To(BeTemporally("<", firstAgain),
		"the second run waited for the whole first run, not for its window")
	g.Expect(firstAgain).To(BeTemporally(">", secondClosed), "the first run's next window did not wait its turn")
	suite.ExpectMeshAsFound(t)
	suite.ExpectNoLock(t)
}

// TestHoldWaitsNoLongerThanPodStartGraceForObservers: once served, a run holds the lock; observers that do not
// start within the pod start grace end the step before any change, whatever the step's budget, and the lock is
// given back.
func TestHoldWaitsNoLongerThanPodStartGraceForObservers(t *testing.T) {
	suite.SB.SetPodStartLatency(3 * time.Second)
	t.Cleanup(func() { suite.SB.SetPodStartLatency(0) })
	o := suite.Options()
	o.PodStartGrace = time.Second
	suite.Start(t, o)
	g := NewWithT(t)
	run := suite.NewRun(labsv1.LabAuthorizationPolicy)
	suite.Create(t, run)
	done := suite.Finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed))
	st := suite.StepOf(t, done, labsv1.LabAuthorizationPolicy, "set-aside-policy")
	g.Expect(st.Verdict).To(Equal(labsv1.VerdictError), st.Message)
	g.Expect(st.Message).To(ContainSubstring("were not running and watching within 1s (--pod-start-grace)"))
	g.Expect(done.Status.Journal).To(BeEmpty(), "the mesh was changed")
	suite.ExpectMeshAsFound(t)
	suite.ExpectNoLock(t)
}

// TestMaxActiveRunsQueuesTheRest: with --max-active-runs 2, of three runs created at once two are worked on and
// the third waits Queued, in first place, holding no pod, until one of them ends.
func TestMaxActiveRunsQueuesTheRest(t *testing.T) {
	suite.SB.SetPodStartLatency(4 * time.Second) // each run lasts a while
	t.Cleanup(func() { suite.SB.SetPodStartLatency(0) })
	o := suite.Options()
	o.MaxActiveRuns = 2
	suite.Start(t, o)
	g := NewWithT(t)
	var runs []*labsv1.LabRun
	for range 3 {
		run := suite.NewRun(labsv1.LabMTLS)
		run.Spec.Mode = labsv1.ModeVerify
		suite.Create(t, run)
		runs = append(runs, run)
	}
	g.Eventually(func(g Gomega) {
		var active, waiting []labsv1.LabRun
		for _, run := range runs {
			cur := &labsv1.LabRun{}
			g.Expect(suite.K8s.Get(context.Background(), client.ObjectKeyFromObject(run), cur)).To(Succeed())
			switch {
			case cur.Status.Reason == labsv1.ReasonWaitingForSlot:
				waiting = append(waiting, *cur)
			case cur.Status.ActiveSince != nil && cur.Status.CompletionTime == nil:
				active = append(active, *cur)
			}
		}
		g.Expect(active).To(HaveLen(2))
		g.Expect(waiting).To(HaveLen(1))
		g.Expect(waiting[0].Status.Phase).To(Equal(labsv1.PhaseQueued))
		g.Expect(waiting[0].Status.QueuePosition).To(BeEquivalentTo(1))
		g.Expect(waiting[0].Status.Message).To(ContainSubstring("--max-active-runs 2"))
		pods := &corev1.PodList{}
		g.Expect(suite.K8s.List(context.Background(), pods, client.MatchingLabels{labsv1.LabelLabRun: string(waiting[0].UID)})).To(Succeed())
		g.Expect(pods.Items).To(BeEmpty(), "a queued run started pods")
	}).WithTimeout(30 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())
	var done []*labsv1.LabRun
	for _, run := range runs {
		d := suite.Finished(t, run)
		g.Expect(d.Status.Phase).To(Equal(labsv1.PhaseSucceeded), suite.NotPassed(d))
		g.Expect(d.Status.ActiveSince).NotTo(BeNil())
		done = append(done, d)
	}
	sort.Slice(done, func(i, j int) bool { return done[i].Status.ActiveSince.Before(done[j].Status.ActiveSince) })
	firstEnd := done[0].Status.CompletionTime.Time
	if done[1].Status.CompletionTime.Before(done[0].Status.CompletionTime) {
		firstEnd = done[1].Status.CompletionTime.Time
	}
	g.Expect(done[2].Status.ActiveSince.Time).To(BeTemporally(">=", firstEnd), "the third run started before one ended")
}

// TestBaselineIsNotJudgedInAnotherRunsWindow: a lab that changes the mesh judges its baseline (STRICT, plaintext
// refused) under its lock too. A second run on the same target, created while the first run's window is open,
// waits before its baseline instead of finding the target PERMISSIVE by the first run's hand and failing.
func TestBaselineIsNotJudgedInAnotherRunsWindow(t *testing.T) {
	suite.Start(t, suite.Options())
	suite.SlowPropagation(t, 2*time.Second) // the first window stays open a while
	g := NewWithT(t)
	firstDone, secondDone := secondDuringFirstsWindow(t, suite.NewRun(labsv1.LabPeerAuthentication), suite.NewRun(labsv1.LabPeerAuthentication))
	_, firstClosed := window(t, firstDone, labsv1.LabPeerAuthentication, "set-aside-policy", "restore-strict")
	baseline := suite.StepOf(t, secondDone, labsv1.LabPeerAuthentication, "baseline-strict")
	g.Expect(baseline.StartTime.Time).To(BeTemporally(">", firstClosed), "the baseline was judged inside another run's window")
	suite.ExpectMeshAsFound(t)
	suite.ExpectNoLock(t)
}
